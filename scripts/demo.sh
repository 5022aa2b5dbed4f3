#!/usr/bin/env bash
# Builds cloudfn, fills ./cloudfn-data with the embedded demo (example apps, envs and
# functions), makes a first call, then serves it: public endpoints on 127.0.0.1:8080, admin API
# and the web console on 127.0.0.1:8081, with demo credentials, a curl session and the
# console's admin token printed. Ctrl-C stops it.
# With arguments, runs `cloudfn ARGS…` on the same data dir instead (e.g. `invoke …`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --quiet -p cloudfn-cli
if [ $# -gt 0 ]; then exec target/debug/cloudfn "$@"; fi
target/debug/cloudfn demo
exec target/debug/cloudfn serve --demo
