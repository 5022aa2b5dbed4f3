#!/usr/bin/env bash
# Runs every test: unit tests, SDK doc tests, the integration tests in tests/ (real guests
# built from functions/, real data dirs, the real cloudfn binary, a real HTTP server on
# 127.0.0.1, and the real @cloudbase/node-sdk under Node.js), the example functions' own tests,
# and the function-testing tutorial (scripts/tutorial.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The /admin tests drive the real @cloudbase/node-sdk (pinned in tests/node/package-lock.json).
npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
cargo test --workspace "$@"
# The example functions' own tests (cloudfn-testing on the build machine), and
# docs/testing-functions.md step by step; both on the same target dir, so the host compiles once.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo test --manifest-path functions/Cargo.toml -p echo -p users_add -p cloudbase_auth
scripts/tutorial.sh
