"""Fixtures shared by the core tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from srode_plugins import compat

# The test modules import basicsr at module level: its fixes must be in place first (the CLI, the engine and
# srode_plugins.api apply them at their entry points; test modules are imported before any of those run).
compat.apply()

REPO_ROOT = Path(__file__).resolve().parents[1]

RunPython = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def run_python() -> RunPython:
    """Run `python ARGS...` (e.g. `["-c", code]`) in a fresh interpreter of this environment, from the repo root.

    Returns the CompletedProcess with text stdout/stderr; `env` entries are added to the current environment.
    """

    def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "OMP_NUM_THREADS": "2", **(env or {})}
        return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=full_env, capture_output=True, text=True,
                              timeout=timeout)

    return run
