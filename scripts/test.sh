#!/usr/bin/env bash
# Runs every test: unit tests, SDK doc tests, and the integration tests in tests/ (real guests
# built from functions/, real data dirs, the real cloudfn binary).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace "$@"
