// A Node backend calling a cloudfn function with the unchanged @cloudbase/node-sdk:
// only `serviceUrl` points at cloudfn.
//   node callFunction.js [NAME] [DATA_JSON]      (defaults: echo '{"from":"node"}')
const tcb = require('@cloudbase/node-sdk');

const app = tcb.init({
  env: process.env.CLOUDFN_ENV || 'prod-01',
  serviceUrl: process.env.CLOUDFN_URL || 'http://127.0.0.1:8080/admin',
  secretId: process.env.SECRET_ID,
  secretKey: process.env.SECRET_KEY,
});

const [name = 'echo', data = '{"from":"node"}'] = process.argv.slice(2);
app
  .callFunction({ name, data: JSON.parse(data) })
  .then((res) => console.log(JSON.stringify(res.result)))
  .catch((e) => { console.log(JSON.stringify({ code: e.code, message: e.message })); process.exit(1); });
