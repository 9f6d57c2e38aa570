"""The discovery commands answer without importing torch, BasicSR or any plugin component module."""

from __future__ import annotations

import json
from typing import Any

import pytest

from srode_plugins import __version__, cli

# Runs main(ARGV) in a fresh interpreter, then reports what got imported as one JSON line.
PROBE = """
import json, sys
from srode_plugins.cli import main
from srode_plugins.discovery import catalog
try:
    code = main({argv!r})
except SystemExit as exc:  # argparse's --help
    code = exc.code
component_modules = {{c.module for info in catalog().plugins.values() for comps in info.components.values()
                     for c in comps}}
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "basicsr") or m in component_modules)
print(json.dumps({{"code": code, "heavy": heavy}}))
"""


@pytest.mark.parametrize("argv", [["--help"], ["plugins", "list"], ["options", "list"], []],
                         ids=["help", "plugins-list", "options-list", "no-arguments"])
def test_discovery_commands_import_neither_torch_nor_basicsr_nor_plugin_components(
        run_python: Any, argv: list[str]) -> None:
    result = run_python(["-c", PROBE.format(argv=argv)])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["code"] in (0, 1)  # `plugins list` answers 1 when an installed plugin is broken


def test_python_dash_m_srode_plugins_is_the_basicsr_command(run_python: Any) -> None:
    result = run_python(["-m", "srode_plugins", "--help"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: basicsr ")
    for command in ("train", "test", "infer", "demo", "plugins", "options", "data"):
        assert command in result.stdout
    version = run_python(["-m", "srode_plugins", "--version"])
    assert (version.returncode, version.stdout.strip()) == (0, f"srode-plugins {__version__}")


def test_a_user_error_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plugins", "check", "no-such-plugin"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no installed plugin named 'no-such-plugin'. Installed: ")
    assert "Traceback" not in err


def test_an_unknown_command_is_an_argparse_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["trian"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'trian'" in capsys.readouterr().err
