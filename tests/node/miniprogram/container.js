'use strict';
// Seed 003's mini-program code (wx.cloud.callContainer, and `new wx.cloud.Cloud` for a shared
// env) run under Node with a `wx` over real HTTP (./wx.js); only the init line differs.
// Env: CLOUDFN_BASE, WX_APPID, WX_OPENID, OWN_ENV (optional), RESOURCE_APPID, RESOURCE_ENV.
// Prints {own, again, byCallback, noService, unknown, init, shared} as JSON; each is {ok} or
// {errCode, errMsg}.
require('./wx');

require('../../../clients/wx-cloud').init({ env: process.env.OWN_ENV, baseUrl: process.env.CLOUDFN_BASE });

const outcome = (p) => p.then((ok) => ({ ok }), (e) => ({ errCode: e.errCode, errMsg: e.errMsg }));

async function main() {
  const out = {};
  if (process.env.OWN_ENV) {
    // 确认已经在 onLaunch 中调用过 wx.cloud.init 初始化环境
    out.own = await outcome(wx.cloud.callContainer({
      config: {
        env: process.env.OWN_ENV, // 微信云托管的环境ID
      },
      path: '/api/count', // 填入业务自定义路径和参数
      method: 'POST', // 按照自己的业务开发，选择对应的方法
      header: {
        'X-WX-SERVICE': 'wx_counter', // 服务名称
      },
      data: { action: 'inc' },
    }));
    out.again = await outcome(wx.cloud.callContainer({
      path: '/api/count', method: 'POST', header: { 'X-WX-SERVICE': 'wx_counter' }, data: { action: 'inc' },
    }));
    out.byCallback = await outcome(new Promise((resolve, reject) => {
      wx.cloud.callContainer({ path: '/api/count', header: { 'X-WX-SERVICE': 'wx_counter' }, success: resolve, fail: reject });
    }));
    out.noService = await outcome(wx.cloud.callContainer({ path: '/api/count', header: {} }));
    out.unknown = await outcome(wx.cloud.callContainer({ path: '/', header: { 'X-WX-SERVICE': 'nope' } }));
  }

  // 资源复用: 小程序A 的环境授权给 小程序B
  const c1 = new wx.cloud.Cloud({
    resourceAppid: process.env.RESOURCE_APPID, // 环境所属的账号appid
    resourceEnv: process.env.RESOURCE_ENV, // 微信云托管的环境ID
  });
  out.init = await outcome(c1.init());
  out.shared = await outcome(c1.callContainer({
    config: {
      env: process.env.RESOURCE_ENV,
    },
    path: '/api/wx_openid',
    method: 'GET',
    header: {
      'X-WX-SERVICE': 'wx_counter',
    },
  }));
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ crashed: String((e && e.stack) || e) }) + '\n');
  process.exitCode = 1;
});
