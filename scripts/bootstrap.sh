#!/usr/bin/env bash
# Sets up ./.venv with the srode core and every first-party plugin, then runs `basicsr demo`
# (train a small model on the embedded demo data and compare it with bicubic).
#   bash scripts/bootstrap.sh            set up + demo
#   bash scripts/bootstrap.sh --no-demo  set up only (what CI does)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

pick_python() {
  # basicsr 1.4.2 builds only on Python 3.10-3.12.
  for candidate in "${PYTHON:-}" python3.12 python3.11 python3.10 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: srode needs Python 3.10, 3.11 or 3.12 (basicsr 1.4.2 does not build on 3.13); set PYTHON=..." >&2
  return 1
}

PY=$(pick_python)
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel
# torch/torchvision first: basicsr's sdist build and every plugin need them. The default wheels carry CUDA
# and run fine on a CPU-only machine.
.venv/bin/python -m pip install --quiet torch torchvision
.venv/bin/python -m pip install --quiet -e ".[dev]" \
  -e plugins/srode-plugin-baselines \
  -e plugins/srode-plugin-node \
  -e plugins/srode-plugin-rk4gan \
  -e plugins/srode-plugin-resshift
.venv/bin/basicsr plugins list

if [ "${1:-}" != "--no-demo" ]; then
  .venv/bin/basicsr demo
fi
