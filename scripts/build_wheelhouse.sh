#!/usr/bin/env bash
# Builds a wheelhouse: one wheel for the srode core (srode-plugins) and one per first-party plugin, checked
# with `twine check --strict`. Users then install a family by name, and pip pulls the core in:
#   pip install --find-links dist srode-plugin-resshift
#
#   bash scripts/build_wheelhouse.sh                          core + every plugin into dist/
#   bash scripts/build_wheelhouse.sh srode-plugin-resshift    core + the named plugin(s) only
#   bash scripts/build_wheelhouse.sh --out DIR [PLUGIN...]    into DIR instead of dist/
# Builds offline with the venv's own setuptools (PYTHON=... picks another interpreter; default .venv/bin/python).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=${PYTHON:-.venv/bin/python}
OUT=dist
plugins=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=${2:?--out needs a folder}; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) plugins+=("$1"); shift ;;
  esac
done
if [ ${#plugins[@]} -eq 0 ]; then
  for dir in plugins/srode-plugin-*/; do plugins+=("$(basename "$dir")"); done
fi

sources=(.)
for plugin in "${plugins[@]}"; do
  if [ ! -f "plugins/$plugin/pyproject.toml" ]; then
    echo "error: plugin '$plugin' not found (no plugins/$plugin/pyproject.toml); choose from: $(ls plugins | tr '\n' ' ')" >&2
    exit 2
  fi
  sources+=("plugins/$plugin")
done

mkdir -p "$OUT"
rm -f "$OUT"/srode_plugin*.whl  # the core and plugins only: a rebuild replaces them, other wheels stay
# --no-deps: only our own wheels (pip resolves torch, basicsr, ... at install time);
# --no-build-isolation: build with this venv's setuptools, without fetching build requirements.
"$PY" -m pip wheel --no-deps --no-build-isolation --quiet --wheel-dir "$OUT" "${sources[@]}"
"$PY" -m twine check --strict "$OUT"/srode_plugin*.whl
ls -1 "$OUT"/srode_plugin*.whl
