#!/usr/bin/env bash
# The seed scenario of the README, runnable as printed there (tests/sharing.rs runs it): app A
# shares env prod-01 with app B of the same company; B's user calls A's function; A's
# cloudbase_auth grants with custom claims; a security rule checks them. Over
# /tcb/invokecloudfunction, over /admin with @cloudbase/node-sdk, and locally with the CLI.
#
# Needs a built cloudfn and its guests (scripts/test.sh or scripts/demo.sh builds them), curl,
# and `npm ci --prefix tests/node`. Everything runs on 127.0.0.1 in a temporary data dir.
set -euo pipefail
cd "$(dirname "$0")/.."
CLOUDFN=${CLOUDFN:-target/debug/cloudfn}
WASM=${WASM:-target/wasm-guests/wasm32-wasip2/release}
DATA=$(mktemp -d)
cf() { "$CLOUDFN" --data-dir "$DATA" "$@"; }
field() { sed -n "s/^$2: *//p" "$DATA/$1.txt"; }

# 1. Two apps of one company; A turns sharing on and owns prod-01.
cf app create wxA --subject "Acme" > "$DATA/wxA.txt"
cf app create wxB --subject "Acme" > "$DATA/wxB.txt"
cf app create wxC --subject "Acme" > "$DATA/wxC.txt"
cf app sharing wxA on
cf env create prod-01 --owner wxA

# 2. A's functions: cloudbase_auth allows wxB with role "partner"; users_add calls echo.
cf deploy --env prod-01 --name cloudbase_auth "$WASM/cloudbase_auth.wasm" \
  --var allowed_appids=wxB --var roles=wxB=partner
cf deploy --env prod-01 --name users_add "$WASM/users_add.wasm"
cf deploy --env prod-01 --name echo "$WASM/echo.wasm"

# 3. A security rule over cloudbase_auth's claims, and the share itself.
cat > "$DATA/rules.json" <<'RULES'
{
  "*":         {"invoke": "auth != null"},
  "users_add": {"invoke": "auth.custom.role == 'partner'"}
}
RULES
cf rules set --env prod-01 "$DATA/rules.json"
cf share add --env prod-01 --to wxB --perm functions:invoke --functions '*'
cf share add --env prod-01 --to wxC --perm functions:invoke --functions echo

# 4. Serve.
"$CLOUDFN" --data-dir "$DATA" serve --listen "127.0.0.1:${PORT:-8080}" --admin-listen "127.0.0.1:${ADMIN_PORT:-8081}" \
  --admin-token "sharing-admin-token" > "$DATA/serve.out" 2> "$DATA/serve.err" &
SERVER=$!
# The server itself, not a subshell, is $SERVER (a backgrounded shell function would be a
# subshell, and killing it would leave cloudfn running); wait until it has drained and exited.
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$DATA"' EXIT
until grep -q '^Serving HTTP on' "$DATA/serve.out"; do sleep 0.1; done
BASE=$(sed -n 's#^Serving HTTP on \(http://[^/]*\)/$#\1#p' "$DATA/serve.out")
token() {
  curl -s "$BASE/cgi-bin/token?grant_type=client_credential&appid=$1&secret=$(field "$1" secret)" \
    | sed -E 's/.*"access_token":"([^"]+)".*/\1/'
}

# 5. B's server, for its user o-b-1: cloud.init(), then A's users_add. The function sees
#    FROM_APPID wxB and FROM_OPENID o-b-1; the nested echo sees SOURCE wx_http,scf.
TOKEN_B=$(token wxB)
curl -s -X POST -H 'X-WX-OPENID: o-b-1' "$BASE/tcb/init?access_token=$TOKEN_B&env=prod-01"
echo
curl -s -X POST -H 'X-WX-OPENID: o-b-1' \
  "$BASE/tcb/invokecloudfunction?access_token=$TOKEN_B&env=prod-01&name=users_add" -d '{"name":"Ada"}'
echo

# 6. wxC shares only echo and cloudbase_auth denies it anyway: its errCode comes back as is.
TOKEN_C=$(token wxC)
curl -s -X POST "$BASE/tcb/invokecloudfunction?access_token=$TOKEN_C&env=prod-01&name=echo" -d '{}'
echo

# 7. B's Node backend through /admin with @cloudbase/node-sdk.
CLOUDFN_URL="$BASE/admin" CLOUDFN_ENV=prod-01 SECRET_ID=$(field wxB secretId) \
  SECRET_KEY=$(field wxB secretKey) TENCENTCLOUD=true NODE_PATH=tests/node/node_modules \
  node -r ./tests/node/guard.js examples/node/callFunction.js users_add '{"name":"Bo"}'

# 8. The same call locally, no server involved: cloudfn invoke as B's user.
cf invoke --env prod-01 --name users_add --from-appid wxB --from-openid o-b-1 \
  --event '{"name":"Cy"}' --quiet
