#!/usr/bin/env bash
# Builds cloudfn, fills ./cloudfn-data with the embedded demo (example apps, envs and
# functions) and makes a first call. Extra arguments go to `cloudfn`, e.g. `invoke …`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ $# -eq 0 ]; then set -- demo; fi
exec cargo run --quiet -p cloudfn-host -- "$@"
