"""CLI start-up: `basicsr plugins list` wall time vs `python -c "import basicsr"`, same interpreter, back to back.

`basicsr env` must cost no more than `plugins list` plus the torch import: the last line checks that budget.

.venv/bin/python benchmarks/core_cli_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "basicsr --help": [sys.executable, "-m", "srode_plugins", "--help"],
    "basicsr plugins list": [sys.executable, "-m", "srode_plugins", "plugins", "list"],
    "basicsr options list": [sys.executable, "-m", "srode_plugins", "options", "list"],
    "basicsr env": [sys.executable, "-m", "srode_plugins", "env"],
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
    'python -c "import basicsr" (with compat)': [sys.executable, "-c",
                                                  "from srode_plugins import compat; compat.apply()"],
}


def median_seconds(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = {name: median_seconds(cmd, args.repeat) for name, cmd in COMMANDS.items()}
    baseline = results['python -c "import basicsr" (with compat)']
    print(f"median of {args.repeat} runs")
    print("| command | seconds | vs import basicsr |")
    print("|---|---|---|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.3f} | {seconds / baseline:.3f}x |")
    budget = results["basicsr plugins list"] + results['python -c "import torch"']
    print(f"basicsr env: {results['basicsr env']:.3f} s vs budget (plugins list + import torch) {budget:.3f} s: "
          f"{results['basicsr env'] / budget:.2f}x")


if __name__ == "__main__":
    main()
