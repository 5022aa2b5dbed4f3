'use strict';
// Seed 001's mini-program code run under Node with a `wx` over real HTTP (./wx.js). Only the
// init line differs from the seed: `wx.cloud.init({env})` becomes cloudfn-wx-cloud's init.
// Env: CLOUDFN_BASE, WX_APPID, WX_OPENID, OWN_ENV (optional), RESOURCE_APPID, RESOURCE_ENV,
// AFTER_FILE (optional: once it exists, call again, for a test that revokes sessions between).
// Prints {own, ownByCallback, init, shared, again, logins} as JSON; each is {ok} or {errCode, errMsg}.
require('./wx');
const fs = require('fs');

require('../../../clients/wx-cloud').init({ env: process.env.OWN_ENV, baseUrl: process.env.CLOUDFN_BASE });

const outcome = (p) => p.then((ok) => ({ ok }), (e) => ({ errCode: e.errCode, errMsg: e.errMsg }));

async function main() {
  const out = {};
  if (process.env.OWN_ENV) {
    out.own = await outcome(wx.cloud.callFunction({ name: 'echo', data: { hello: 'own env' } }));
    out.ownByCallback = await outcome(new Promise((resolve, reject) => {
      wx.cloud.callFunction({ name: 'echo', data: { by: 'callback' }, success: resolve, fail: reject });
    }));
  }

  // 声明新的 cloud 实例
  var c1 = new wx.cloud.Cloud({
    // 资源方 AppID
    resourceAppid: process.env.RESOURCE_APPID,
    // 资源方环境 ID
    resourceEnv: process.env.RESOURCE_ENV,
  });

  // 跨账号调用，必须等待 init 完成
  out.init = await outcome(c1.init());

  // 完成后正常使用资源方的已授权的云资源
  out.shared = await outcome(c1.callFunction({
    name: 'echo',
    data: { hello: 'shared env' },
  }));

  if (process.env.AFTER_FILE) {
    process.stdout.write('WAITING\n');
    const until = Date.now() + 20000;
    while (!fs.existsSync(process.env.AFTER_FILE) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
    }
    out.again = await outcome(c1.callFunction({ name: 'echo', data: { hello: 'again' } }));
  }
  out.logins = wx._logins();
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ crashed: String((e && e.stack) || e) }) + '\n');
  process.exitCode = 1;
});
