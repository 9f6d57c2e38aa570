#!/usr/bin/env bash
# Re-creates options/ as symlinks to the option files shipped inside the plugins (the single source of truth):
# options/<file>.yml for real-data layouts, options/demo/<file>.yml for the embedded-demo variants.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rm -rf options && mkdir -p options/demo
for file in plugins/*/srode_*/options/*.yml; do
  name=$(basename "$file")
  if [[ "$name" == *demo* ]]; then
    ln -s "../../$file" "options/demo/$name"
  else
    ln -s "../$file" "options/$name"
  fi
done
ls options options/demo | wc -l
