#!/usr/bin/env bash
# Runs every test: unit tests, SDK doc tests, the integration tests in tests/ (real guests
# built from functions/, real data dirs, the real cloudfn binary, a real HTTP server on
# 127.0.0.1, the real @cloudbase/node-sdk under Node.js, and the web console in headless
# Chromium, its screenshots left in target/console-screenshots), the example functions' own tests,
# the function-testing tutorial (scripts/tutorial.sh), and the PostgreSQL store: the store
# suite (host/store/tests/suite.rs) and the multi-host tests (tests/multihost.rs) each start a
# private PostgreSQL from the system's binaries (initdb into a temp dir, a loopback port).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/steps.sh
step "test: setup" scripts/setup.sh
# A distribution package a test needs, installed when missing (as root, with apt).
install_package() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing the distribution's $1 package" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
  else
    echo "test: $2" >&2
    exit 2
  fi
}
# The PostgreSQL server binaries (initdb, pg_ctl, postgres).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  && ! [ -x "$(pg_config --bindir 2>/dev/null)/initdb" ]; then
  step "test: apt-get postgresql" install_package postgresql "PostgreSQL's server binaries are missing: sudo apt-get install -y postgresql"
fi
# The web console's browser tests (tests/console.rs) drive the distribution's Chromium.
if ! command -v chromium >/dev/null && [ -z "${CHROMIUM:-}" ]; then
  step "test: apt-get chromium" install_package chromium "Chromium is missing: sudo apt-get install -y chromium (or set CHROMIUM=/path)"
fi
export CHROMIUM=${CHROMIUM:-$(command -v chromium)}
# The /admin tests drive the real @cloudbase/node-sdk (pinned in tests/node/package-lock.json),
# and the console tests playwright-core (no browser download: it drives the Chromium above).
# Installed again only when the lockfile changed since the last install (a copy kept in
# node_modules says which it was).
installed_lock=tests/node/node_modules/.cloudfn-installed-lock.json
if ! cmp -s tests/node/package-lock.json "$installed_lock"; then
  step "test: npm ci (tests/node)" npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
  cp tests/node/package-lock.json "$installed_lock"
fi
if cargo nextest --version >/dev/null 2>&1; then
  # cargo-nextest (.config/nextest.toml): each test in its own process, all binaries' tests
  # scheduled together, a hung test named and ended. It runs no doc tests: cargo test does.
  step "test: build host workspace tests + guests" cargo nextest run --workspace --no-run "$@"
  step "test: run host workspace tests (nextest)" cargo nextest run --workspace "$@"
  step "test: doc tests" cargo test --workspace --doc "$@"
else
  echo "test: cargo-nextest not found (cargo install cargo-nextest); running with cargo test" >&2
  step "test: build host workspace tests + guests" cargo test --workspace --no-run "$@"
  step "test: run host workspace tests" cargo test --workspace "$@"
fi
# The example functions' own tests (cloudfn-testing on the build machine), and
# docs/testing-functions.md step by step; both on the same target dir, so the host compiles once.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
step "test: example functions' tests: build, reusing the host's" scripts/check-shared-deps.sh
step "test: example functions' tests" cargo test --manifest-path functions/Cargo.toml -p echo -p users_add -p cloudbase_auth
step "test: tutorial" scripts/tutorial.sh
