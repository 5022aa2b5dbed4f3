// A Node backend calling a cloudfn function with the unchanged @cloudbase/node-sdk:
// only `serviceUrl` points at cloudfn.
const tcb = require('@cloudbase/node-sdk');

const app = tcb.init({
  env: 'prod-01',
  serviceUrl: process.env.CLOUDFN_URL || 'http://127.0.0.1:8080/admin',
  secretId: process.env.SECRET_ID,
  secretKey: process.env.SECRET_KEY,
});

app
  .callFunction({ name: 'echo', data: { from: 'node' } })
  .then((res) => console.log(JSON.stringify(res.result.event)))
  .catch((e) => { console.error(e.code, e.message); process.exit(1); });
