#!/usr/bin/env bash
# The benchmark command (docs/performance.md): builds release binaries and runs, in one sitting,
#   http   the side-by-side table (bare hyper, Node.js, wasmtime serve, cloudfn rows),
#   deploy calls' p99 while new versions are deployed,
#   scale  1,000 functions across 100 envs (start time, RSS, first call of each),
#   micro  the criterion micro-benchmarks (host/bench/benches/calls.rs),
#   hostile a benign tenant's p99 under each hostile-tenant attack against its solo p99
#          (docs/security.md),
#   hosts  1, 2 and 3 hosts on one PostgreSQL store (a private cluster from the system's
#          binaries, as the tests start it) beside one host on a SQLite data dir,
#   allocs heap allocations per call, counted in-process (same-app, cross-app, Host::invoke),
#   js     users_add in JavaScript beside users_add in Rust: build, size, compile, first call
#          after a restart, calls under load.
#   compare REF  the cloudfn rows of http for REF's build and this tree's, alternately in one
#          sitting, with head ÷ base (REF's binary is built once into target/bench-compare;
#          flags after REF go to `cloudfn-bench compare`, e.g. --rounds 6 --only "same app").
# Usage: scripts/bench.sh [--wasmtime] [http|deploy|scale|micro|hostile|hosts|allocs|js ...]   (default: all)
#        scripts/bench.sh compare REF [--rounds N] [--duration SECS] [--only ROW]
# --wasmtime installs wasmtime-cli 48 into target/bench-tools first when missing: a ~18 min
# build, once. Without it the wasmtime serve row is skipped unless that binary is already there.
# Every load targets 127.0.0.1 and is bounded in time (~4 min for http with the defaults).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

compare_ref=""
if [ "${1:-}" = compare ]; then
  compare_ref=${2:?usage: scripts/bench.sh compare REF [cloudfn-bench compare flags]}
  shift 2
fi
install_wasmtime=false
parts=()
if [ -z "$compare_ref" ]; then
  for arg in "$@"; do
    case "$arg" in
      --wasmtime) install_wasmtime=true ;;
      http|deploy|scale|micro|hostile|hosts|allocs|js) parts+=("$arg") ;;
      *) echo "usage: scripts/bench.sh [--wasmtime] [http|deploy|scale|micro|hostile|hosts|allocs|js ...] | compare REF [flags]" >&2; exit 2 ;;
    esac
  done
  [ ${#parts[@]} -eq 0 ] && parts=(http deploy scale micro hostile hosts allocs js)
fi

if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk (the load generator)" >&2
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
  $SUDO apt-get install -y wrk >/dev/null || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y wrk >/dev/null; }
fi

WASMTIME=target/bench-tools/bin/wasmtime
if $install_wasmtime && [ ! -x "$WASMTIME" ]; then
  echo "bench: building wasmtime-cli 48.0.8 into target/bench-tools (~18 min, once)" >&2
  cargo install wasmtime-cli --version 48.0.8 --locked --root target/bench-tools
fi

if [ -n "$compare_ref" ]; then
  rev=$(git rev-parse --verify "$compare_ref^{commit}")
  base=target/bench-compare/${rev:0:12}
  if [ ! -x "$base/cloudfn" ]; then
    echo "bench: building $compare_ref (${rev:0:12}) into $base" >&2
    rm -rf "$base" && mkdir -p "$base"
    git worktree add --detach "$base/src" "$rev" >/dev/null
    # A target dir of its own, shared by every base: the two trees have crates of one name
    # (the guests), which must not take each other's builds.
    CARGO_TARGET_DIR=$PWD/target/bench-compare/target \
      cargo build --release -p cloudfn-cli --manifest-path "$base/src/Cargo.toml"
    cp target/bench-compare/target/release/cloudfn "$base/cloudfn"
    git worktree remove --force "$base/src"
  fi
  cargo build --release -p cloudfn-cli -p cloudfn-bench
  echo "bench: $(nproc) CPUs, $(uname -sr), $(rustc --version); base $compare_ref = ${rev:0:12}, head $(git rev-parse --short=12 HEAD)$(git diff --quiet HEAD || echo ' + uncommitted changes')" >&2
  exec target/release/cloudfn-bench compare --base "$base/cloudfn" "$@"
fi

cargo build --release -p cloudfn-cli -p cloudfn-bench
echo "bench: $(nproc) CPUs, $(uname -sr), $(rustc --version), node $(node --version)" >&2

http_args=()
if [ -x "$WASMTIME" ]; then
  (cd host/bench/http-hello && cargo build --release --target wasm32-wasip2 --target-dir ../../../target/wasm-guests)
  http_args=(--wasmtime "$WASMTIME" --http-hello target/wasm-guests/wasm32-wasip2/release/http_hello.wasm)
  echo "bench: $("$WASMTIME" --version)" >&2
fi

for part in "${parts[@]}"; do
  case "$part" in
    http) target/release/cloudfn-bench http "${http_args[@]}" ;;
    deploy) target/release/cloudfn-bench deploy ;;
    scale) target/release/cloudfn-bench scale ;;
    micro) cargo bench -p cloudfn-bench --bench calls ;;
    hostile) target/release/cloudfn-bench hostile ;;
    hosts) target/release/cloudfn-bench hosts ;;
    allocs) target/release/cloudfn-bench allocs ;;
    js) target/release/cloudfn-bench js ;;
  esac
done
