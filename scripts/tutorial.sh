#!/usr/bin/env bash
# Runs docs/testing-functions.md step by step on fresh crates in a temporary directory, taking
# the page's marked code blocks as they are: `cloudfn new`, the crate's own `cargo test`
# (granted and refused cross-app calls), a test added from the page, `cloudfn build`, a file
# run, the `--auth` template and its tests, the fixture file, and a `cloudfn dev` session
# (deploy, call, edit, redeploy, call). Run by scripts/test.sh; needs target/debug/cloudfn
# (it builds it). Everything it serves listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
doc=$repo/docs/testing-functions.md
# One target dir with the repository's tests, so the host compiles once.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
export NO_COLOR=1
cargo build -q -p cloudfn-cli
bin=$CARGO_TARGET_DIR/debug/cloudfn
# `cloudfn build` and `dev` build the crates where the crates' own tests do (cloudfn-testing
# builds into wasm-test-builds under the target dir): the SDK and serde compile once for all.
guests_dir=$CARGO_TARGET_DIR/wasm-test-builds
cloudfn() { CARGO_TARGET_DIR=$guests_dir "$bin" "$@"; }

work=$(mktemp -d)
dev=
cleanup() {
  if [ -n "$dev" ]; then
    kill "$dev" 2>/dev/null || true
    wait "$dev" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
step() { echo; echo "== tutorial: $*"; }
fail() { echo "tutorial: $*" >&2; exit 1; }
# The fenced block after the page's `<!-- tutorial: VERB PATH -->` marker.
block() {
  awk -v marker="<!-- tutorial: $1 -->" '
    $0 == marker { found = 1; next }
    found && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }' "$doc"
}

# A new crate resolves its dependencies afresh; given the repository's lockfile, it resolves to
# the versions the host workspace compiled, and reuses them from the shared target dir instead of
# building wasmtime again (a user's own crate has its own lockfile and target dir).
share_lock() {
  cp "$repo/Cargo.lock" "$1/Cargo.lock"
  # The repository's dependency profile in place of the template's (every dependency at
  # opt-level 1), so that the crate's tests build only the crate itself.
  sed -i '/^\[profile.dev.package."\*"\]/,/^$/d' "$1/Cargo.toml"
  sed -n '/^\[profile.dev.package."\*"\]/,/^# END hot dependencies/p' "$repo/Cargo.toml" >> "$1/Cargo.toml"
}

step "1. cloudfn new greeter"
cloudfn new greeter
share_lock greeter

step "2. its tests: a granted and a refused cross-app call"
out=$(cd greeter && cargo test 2>&1) || { echo "$out"; fail "the new crate's tests failed"; }
echo "$out" | grep -E '^test |test result'
echo "$out" | grep -q 'test a_granted_app_calls_across_apps ... ok' || fail "no granted-call test"
echo "$out" | grep -q 'test an_app_cloudbase_auth_does_not_grant_is_refused ... ok' || fail "no refused-call test"

step "3. a test of your own: the env's rules"
block "append greeter/tests/function.rs" > added.rs
[ -s added.rs ] || fail "no test to append in $doc"
{ echo; cat added.rs; } >> greeter/tests/function.rs
out=$(cd greeter && cargo test 2>&1) || { echo "$out"; fail "the added test failed"; }
echo "$out" | grep -q 'test only_partners_pass_the_rules ... ok' || { echo "$out"; fail "the added test did not run"; }
echo "$out" | grep -q 'test result: ok. 5 passed' || { echo "$out"; fail "expected 5 passing tests"; }
echo "5 tests pass"

step "4. cloudfn build, and a run of the file"
out=$(cloudfn build greeter)
echo "$out"
wasm=$(echo "$out" | sed -nE 's/^built (.*\.wasm) \(.*/\1/p')
[ -f "$wasm" ] || fail "no component at '$wasm'"
out=$(cloudfn invoke "$wasm" --appid wxA --openid o1 --event '{"name":"Ada"}')
echo "$out"
echo "$out" | grep -q '"greeting":"hello, Ada"' || fail "the file run did not greet"

step "5. cloudfn new cloudbase_auth --auth, and its tests"
cloudfn new cloudbase_auth --auth
share_lock cloudbase_auth
out=$(cd cloudbase_auth && cargo test 2>&1) || { echo "$out"; fail "the auth crate's tests failed"; }
echo "$out" | grep -E '^test |test result'

step "6. the fixture file"
block "write fixture.toml" > fixture.toml
[ -s fixture.toml ] || fail "no fixture in $doc"
out=$(cloudfn invoke --fixture fixture.toml --env prod --name greeter --from-appid wxB --from-openid o1 --event '{"name":"Bo"}' 2>/dev/null)
echo "as wxB: $out"
echo "$out" | grep -q '"greeting":"hello, Bo"' || fail "wxB was not granted"
# A refused call exits non-zero, with the protocol error on stdout.
out=$(cloudfn invoke --fixture fixture.toml --env prod --name greeter --from-appid wxC --from-openid o1 --event '{"name":"Cy"}' 2>/dev/null) \
  && fail "the refused call exited 0"
echo "as wxC: $out"
echo "$out" | grep -q '"errcode":-403001' || fail "wxC was not refused by cloudbase_auth"

step "7. cloudfn dev: deploy, call, edit, redeploy"
# Ports chosen by the system (the page uses the defaults, 8080/8081). The binary itself in the
# background (not the shell function), so `kill $dev` stops cloudfn and not a subshell.
CARGO_TARGET_DIR=$guests_dir "$bin" --data-dir "$work/data" dev --env dev greeter \
  --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 > dev.out 2>&1 &
dev=$!
wait_for() {
  for _ in $(seq 1 1200); do
    grep -q "$1" dev.out && return 0
    kill -0 "$dev" 2>/dev/null || { cat dev.out; fail "cloudfn dev exited"; }
    sleep 0.2
  done
  cat dev.out; fail "no '$1' from cloudfn dev in 240 s"
}
wait_for "watching 1 crate"
admin=$(sed -nE 's#^Admin API on (http://[^/]+)/#\1#p' dev.out)
token=$(sed -nE 's/^admin token \(shown once\): //p' dev.out)
call() {
  cloudfn --server "$admin" --admin-token "$token" invoke --env dev --name greeter \
    --appid wxdev --openid o1 --event "{\"name\":\"$1\"}" -q
}
out=$(call Ada); echo "$out"
echo "$out" | grep -q '"greeting":"hello, Ada"' || fail "dev did not serve the function"
wait_for "greeting Ada"
sed -i 's/"hello, {name}"/"hi, {name}"/' greeter/src/lib.rs
wait_for "deployed dev/greeter version 2"
out=$(call Bo); echo "$out"
echo "$out" | grep -q '"greeting":"hi, Bo"' || fail "the edit was not redeployed"
grep -E '^\[cloudfn dev\]|^\[call\]|^    \[' dev.out
echo
echo "tutorial: every step passed"
