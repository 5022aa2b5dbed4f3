// Type-checked (never run) by tests/client.rs with `tsc --noEmit --strict`: the wx.cloud SDK's
// types accept what a mini-program writes and refuse what it must not.
import cloud = require('../../../clients/wx-cloud');

cloud.init({ env: 'prod', baseUrl: 'https://fn.example.com' });

export async function page(): Promise<string> {
  const own = await cloud.callFunction<{ n: number }>({ name: 'echo', data: { a: 1 } });
  const n: number = own.result.n;
  const c1 = new cloud.Cloud({ resourceAppid: 'wxA', resourceEnv: 'prod' });
  const ready: { errMsg: string } = await c1.init();
  const shared = await c1.callFunction({ name: 'echo', data: {}, config: { env: 'prod' } });
  cloud.callFunction({
    name: 'echo',
    success: (res) => res.requestID,
    fail: (err) => err.errCode,
  });
  const me: { openid: string } = await cloud.login();
  cloud.logout();
  // @ts-expect-error the function's name is required
  await cloud.callFunction({ data: {} });
  // @ts-expect-error a shared env needs its owner's appid
  new cloud.Cloud({ resourceEnv: 'prod' });
  return `${n} ${ready.errMsg} ${shared.requestID} ${me.openid}`;
}
