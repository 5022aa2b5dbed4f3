#!/usr/bin/env bash
# The README's walkthrough, runnable as printed there (tests/cli.rs runs it too): register an
# app, create an env, deploy a function, serve, get a token and invoke with curl, then call the
# same function from Node with @cloudbase/node-sdk.
#
# Needs a built cloudfn (scripts/test.sh or scripts/demo.sh builds it), curl, and for the Node
# step `npm ci --prefix tests/node`. Everything runs on 127.0.0.1 in a temporary data dir.
set -euo pipefail
cd "$(dirname "$0")/.."
CLOUDFN=${CLOUDFN:-target/debug/cloudfn}
WASM=${WASM:-target/wasm-guests/wasm32-wasip2/release}
DATA=$(mktemp -d)
cf() { "$CLOUDFN" --data-dir "$DATA" "$@"; }

# 1. An app (its credentials are printed once), an env it owns, a function in the env.
cf app create wxA --subject "Acme" > "$DATA/wxA.txt"
SECRET=$(sed -n 's/^secret: *//p' "$DATA/wxA.txt")
SECRET_ID=$(sed -n 's/^secretId: *//p' "$DATA/wxA.txt")
SECRET_KEY=$(sed -n 's/^secretKey: *//p' "$DATA/wxA.txt")
cf env create prod-01 --owner wxA
cf deploy --env prod-01 --name echo "$WASM/echo.wasm"

# 2. Serve (public endpoints on :8080, admin API on :8081 by default).
"$CLOUDFN" --data-dir "$DATA" serve --listen "127.0.0.1:${PORT:-8080}" --admin-listen "127.0.0.1:${ADMIN_PORT:-8081}" \
  --admin-token "walkthrough-admin-token" > "$DATA/serve.out" 2> "$DATA/serve.err" &
SERVER=$!
# The server itself, not a subshell, is $SERVER (a backgrounded shell function would be a
# subshell, and killing it would leave cloudfn running); wait until it has drained and exited.
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$DATA"' EXIT
until grep -q '^Serving HTTP on' "$DATA/serve.out"; do sleep 0.1; done
BASE=$(sed -n 's#^Serving HTTP on \(http://[^/]*\)/$#\1#p' "$DATA/serve.out")
ADMIN=$(sed -n 's#^Admin API on \(http://[^/]*\)/$#\1#p' "$DATA/serve.out")

# 3. A token, then a call, exactly as a WeChat HTTP-API client does.
TOKEN=$(curl -s "$BASE/cgi-bin/token?grant_type=client_credential&appid=wxA&secret=$SECRET" \
  | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
curl -s -X POST -H 'X-WX-OPENID: o-user-1' \
  "$BASE/tcb/invokecloudfunction?access_token=$TOKEN&env=prod-01&name=echo" -d '{"hello":"world"}'
echo

# 4. The same function from a Node backend (examples/node/callFunction.js).
CLOUDFN_URL="$BASE/admin" SECRET_ID=$SECRET_ID SECRET_KEY=$SECRET_KEY TENCENTCLOUD=true \
  NODE_PATH=tests/node/node_modules node -r ./tests/node/guard.js examples/node/callFunction.js

# 5. The calls' activation records.
sleep 0.3
cf --server "$ADMIN" --admin-token walkthrough-admin-token logs --env prod-01
