#!/usr/bin/env bash
# Checks that the example functions' host-side tests (functions/, on the build machine), and the
# demo's build of the binary, reuse the host workspace's compiled dependencies: every registry
# crate they build must be the very unit the host workspace's test build made (same version,
# features and profile, so the same file in the shared target dir), or wasmtime is built a
# second time (minutes of every test run). The repository's own crates (path dependencies) are built again: cargo tells them
# apart by their path from the workspace root. Run by scripts/test.sh after the host
# workspace's build, so both builds here are up to date and only list their files.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
# The files of the registry crates a build makes, one a line.
registry_files() {
  grep '"reason":"compiler-artifact"' | grep '"package_id":"registry+' |
    grep -o '"filenames":\[[^]]*\]' | grep -o '"[^"]*\.\(rlib\|rmeta\|so\)"' | sort -u
}
# The dependency profile, word for word (it decides each crate's opt-level, and so its file).
profile() { sed -n '/^\[profile.dev.package."\*"\]/,/^# END hot dependencies/p' "$1"; }
if ! diff <(profile Cargo.toml) <(profile functions/Cargo.toml) >&2; then
  echo "check-shared-deps: functions/Cargo.toml's [profile.dev.package] sections differ from Cargo.toml's (above)" >&2
  exit 1
fi
host=$(mktemp)
trap 'rm -f "$host"' EXIT
cargo test --workspace --no-run --message-format=json 2>/dev/null | registry_files > "$host"
extra=$(cargo test --manifest-path functions/Cargo.toml -p echo -p users_add -p cloudbase_auth \
  --no-run --message-format=json 2>/dev/null | registry_files | comm -13 "$host" - |
  sed 's#.*/deps/##; s#"$##')
if [ -n "$extra" ]; then
  echo "check-shared-deps: the example functions' tests build registry crates the host" >&2
  echo "workspace's tests do not (other versions, features or profile settings):" >&2
  echo "$extra" | sed 's/^/  /' >&2
  echo "(the same versions: cp Cargo.lock functions/Cargo.lock && cargo metadata --manifest-path functions/Cargo.toml >/dev/null;" >&2
  echo " the same features: see the notes in host/testing/Cargo.toml)" >&2
  exit 1
fi
echo "check-shared-deps: the examples' tests reuse the host workspace's compiled dependencies"
# The demo's build (`cargo build -p cloudfn-cli`, also the tutorial's) must be the tests' build
# too: the binary depends on neither cloudfn-testing nor the benches, so cloudfn-builder carries
# the features they turn on (see its Cargo.toml).
extra=$(cargo build -p cloudfn-cli --message-format=json 2>/dev/null | registry_files |
  comm -13 "$host" - | sed 's#.*/deps/##; s#"$##')
if [ -n "$extra" ]; then
  echo "check-shared-deps: \`cargo build -p cloudfn-cli\` builds registry crates the host" >&2
  echo "workspace's tests do not (other features; see host/builder/Cargo.toml):" >&2
  echo "$extra" | sed 's/^/  /' >&2
  exit 1
fi
echo "check-shared-deps: the demo's build reuses them too"
