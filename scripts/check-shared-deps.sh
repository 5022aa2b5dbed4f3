#!/usr/bin/env bash
# Builds the example functions' host-side tests (functions/, on the build machine) after the
# host workspace's, and fails if that compiled any crate from the registry: their
# dependency graph must be the host workspace's own (every crate at the same version, with the
# same features and profile), so they reuse its compiled wasmtime from the shared target dir
# instead of building a second one (minutes of every test run). The repository's own crates
# (path dependencies) are built again: cargo tells them apart by their path from the workspace
# root. Run by scripts/test.sh after the host workspace's build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
rebuilt=$(cargo test --manifest-path functions/Cargo.toml -p echo -p users_add -p cloudbase_auth \
  --no-run --message-format=json 2>/dev/null |
  grep '"reason":"compiler-artifact"' | grep '"fresh":false' |
  grep -o '"package_id":"[^"]*"' | grep -v '"package_id":"path+' | sed 's/"package_id":"\(.*\)"/\1/' || true)
if [ -n "$rebuilt" ]; then
  echo "check-shared-deps: the example functions' tests compiled crates the host workspace had" >&2
  echo "already compiled, with other versions, features or profile settings:" >&2
  echo "$rebuilt" | sed 's/^/  /' >&2
  echo "(the same versions: cp Cargo.lock functions/Cargo.lock && cargo metadata --manifest-path functions/Cargo.toml >/dev/null;" >&2
  echo " the same features: see the notes in host/testing/Cargo.toml)" >&2
  exit 1
fi
echo "check-shared-deps: the examples' tests reuse the host workspace's compiled dependencies"
