#!/usr/bin/env bash
# Runs every test: unit tests, SDK doc tests, and the integration tests in tests/ (real guests
# built from functions/, real data dirs, the real cloudfn binary, a real HTTP server on
# 127.0.0.1, and the real @cloudbase/node-sdk under Node.js).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The /admin tests drive the real @cloudbase/node-sdk (pinned in tests/node/package-lock.json).
npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
cargo test --workspace "$@"
