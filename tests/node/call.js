'use strict';
// Calls a function through the real @cloudbase/node-sdk, as a Node backend would, or with
// FN_SDK=wx-server-sdk through the real wx-server-sdk (`cloud.init` + `cloud.callFunction`, as
// code in a cloud function does).
// Usage: CLOUDFN_URL=http://127.0.0.1:PORT/admin CLOUDFN_ENV=env SECRET_ID=… SECRET_KEY=… \
//        FN_NAME=echo [FN_DATA='{"a":1}' | FN_DATA_PAD=BYTES] [FN_QUALIFIER=1] [FN_SDK=wx-server-sdk] \
//        node -r ./guard.js call.js
// Prints JSON.stringify(res) on success (exit 0), or {code, message, requestId} (exit 1).
const tcb = require('@cloudbase/node-sdk');

function out(obj, code) {
  process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(code));
}

async function main() {
  const { CLOUDFN_URL, CLOUDFN_ENV, SECRET_ID, SECRET_KEY, FN_NAME, FN_DATA, FN_QUALIFIER } = process.env;
  const options = { env: CLOUDFN_ENV, serviceUrl: CLOUDFN_URL, secretId: SECRET_ID, secretKey: SECRET_KEY };
  let app;
  if (process.env.FN_SDK === 'wx-server-sdk') {
    app = require('wx-server-sdk');
    app.init(options);
  } else {
    app = tcb.init(options);
  }
  const req = { name: FN_NAME };
  if (FN_DATA !== undefined && FN_DATA !== '') req.data = JSON.parse(FN_DATA);
  // FN_DATA_PAD=N: an event of N bytes and more (too large for an environment variable).
  if (process.env.FN_DATA_PAD) req.data = { pad: 'a'.repeat(Number(process.env.FN_DATA_PAD)) };
  if (FN_QUALIFIER) req.qualifier = FN_QUALIFIER;
  const res = await app.callFunction(req);
  out(res, 0);
}

process.on('unhandledRejection', (e) => {
  out({ code: (e && e.code) || 'UNHANDLED', message: String((e && e.message) || e) }, 1);
});

main().catch((e) => {
  out({ code: e && e.code !== undefined ? e.code : null, message: e && e.message, requestId: e && e.requestId }, 1);
});
