'use strict';
// cloudfn's `wx.cloud` for mini-programs: the surface a mini-program calls its cloud
// functions and HTTP functions through (`init`, `callFunction`, `callContainer`,
// `new Cloud({resourceAppid, resourceEnv}).init()`),
// served by a cloudfn host instead of the platform. Built on `wx.login` and `wx.request` only;
// no dependencies.
//
// A mini-program changes one line: `wx.cloud.init({env})` becomes
//   require('./cloudfn-wx-cloud').init({ env, baseUrl: 'https://fn.example.com' })
// which also puts this module in `wx.cloud`, so every `wx.cloud.callFunction(...)` and
// `new wx.cloud.Cloud(...)` after it goes to cloudfn.
//
// Login: `wx.login()` gives a one-time code; cloudfn exchanges it with the platform and
// answers a session (the platform's session_key stays on the host). The session is kept in
// storage, refreshed when less than a quarter of its life is left, and replaced by a new
// login when the host refuses it (expired, revoked) — the call is then retried once.

const STORAGE_KEY = 'cloudfn.session';
/// Session errcodes after which a new login may help: missing, invalid/revoked, expired.
const SESSION_ERRORS = [41001, 40014, 42001];

const defaults = { env: undefined, baseUrl: undefined, appid: undefined };
let memory = null; // the session when wx has no storage
let pendingLogin = null; // one login at a time, shared by concurrent calls

function wxApi() {
  if (typeof wx === 'undefined') throw new Error('cloudfn-wx-cloud needs the mini-program `wx` API');
  return wx; // eslint-disable-line no-undef
}

function fail(api, errCode, message) {
  const err = new Error(`${api}:fail ${message}`);
  err.errCode = errCode;
  err.errMsg = err.message;
  return err;
}

/// Settles a promise and, like every wx API, the success/fail/complete callbacks if given.
function settle(promise, options) {
  if (!options || !(options.success || options.fail || options.complete)) return promise;
  promise.then(
    (res) => { if (options.success) options.success(res); if (options.complete) options.complete(res); },
    (err) => { if (options.fail) options.fail(err); if (options.complete) options.complete(err); },
  );
  return undefined;
}

function post(baseUrl, path, body, session) {
  const header = { 'content-type': 'application/json' };
  if (session) header.Authorization = `Bearer ${session}`;
  return new Promise((resolve, reject) => {
    wxApi().request({
      url: baseUrl.replace(/\/+$/, '') + path,
      method: 'POST',
      data: body,
      header,
      dataType: 'json',
      success: (res) => {
        let data = res.data;
        if (typeof data === 'string') {
          try { data = JSON.parse(data); } catch (_) { /* left as text */ }
        }
        if (data && typeof data === 'object') resolve(data);
        else reject(new Error(`cloudfn answered HTTP ${res.statusCode} without JSON`));
      },
      fail: (e) => reject(new Error((e && e.errMsg) || 'request failed')),
    });
  });
}

function appidOf(config) {
  if (config.appid) return config.appid;
  const w = wxApi();
  if (typeof w.getAccountInfoSync === 'function') {
    const info = w.getAccountInfoSync();
    if (info && info.miniProgram && info.miniProgram.appId) return info.miniProgram.appId;
  }
  throw fail('cloud.init', -1, 'no appid: pass init({appid}) or run inside a mini-program');
}

function loadSession(appid) {
  const w = wxApi();
  let s = memory;
  if (typeof w.getStorageSync === 'function') {
    try { s = w.getStorageSync(STORAGE_KEY) || null; } catch (_) { s = memory; }
  }
  return s && s.appid === appid ? s : null;
}

function saveSession(s) {
  memory = s;
  const w = wxApi();
  if (typeof w.setStorageSync === 'function') {
    try { w.setStorageSync(STORAGE_KEY, s); } catch (_) { /* memory keeps it */ }
  }
}

function clearSession() {
  memory = null;
  const w = wxApi();
  if (typeof w.removeStorageSync === 'function') {
    try { w.removeStorageSync(STORAGE_KEY); } catch (_) { /* nothing kept */ }
  }
}

function keep(appid, reply) {
  const now = Date.now();
  const s = {
    appid,
    session: reply.session,
    openid: reply.openid,
    issuedAt: now,
    expiresAt: now + reply.expires_in * 1000,
  };
  saveSession(s);
  return s;
}

function wxLogin() {
  return new Promise((resolve, reject) => {
    wxApi().login({
      success: (res) => (res && res.code ? resolve(res.code) : reject(fail('wx.login', -1, 'no code'))),
      fail: (e) => reject(fail('wx.login', -1, (e && e.errMsg) || 'failed')),
    });
  });
}

/// A fresh login: `wx.login()`, then the code for a session.
function login(config) {
  if (pendingLogin) return pendingLogin;
  const appid = appidOf(config);
  pendingLogin = (async () => {
    const code = await wxLogin();
    const reply = await post(config.baseUrl, '/auth/code2session', { appid, code });
    if (reply.errcode) throw fail('cloud.login', reply.errcode, reply.errmsg);
    return keep(appid, reply);
  })();
  const done = () => { pendingLogin = null; };
  pendingLogin.then(done, done);
  return pendingLogin;
}

/// A session good for a call: the kept one, refreshed when most of its life is gone, or a new
/// login.
async function session(config) {
  const appid = appidOf(config);
  const s = loadSession(appid);
  const now = Date.now();
  if (!s || now >= s.expiresAt) return login(config);
  if (now < s.expiresAt - (s.expiresAt - s.issuedAt) / 4) return s;
  const reply = await post(config.baseUrl, '/auth/refresh', {}, s.session).catch(() => null);
  if (reply && !reply.errcode) return keep(appid, reply);
  return login(config);
}

/// POSTs a client API with the session; a session error gets one new login and one retry.
async function clientCall(config, path, body) {
  let s = await session(config);
  let reply = await post(config.baseUrl, path, body, s.session);
  if (SESSION_ERRORS.includes(reply.errCode)) {
    clearSession();
    s = await login(config);
    reply = await post(config.baseUrl, path, body, s.session);
  }
  return reply;
}

function resolved(config) {
  const c = Object.assign({}, defaults);
  for (const [k, v] of Object.entries(config || {})) if (v !== undefined) c[k] = v;
  if (!c.baseUrl) throw fail('cloud.init', -1, 'no baseUrl: pass init({env, baseUrl})');
  return c;
}

async function callFunctionWith(config, options) {
  const api = 'cloud.callFunction';
  if (!options || !options.name) throw fail(api, 40101, 'missing parameter name');
  const env = (options.config && options.config.env) || config.env;
  if (!env) throw fail(api, 40101, 'missing parameter env: pass init({env}) or config.env');
  const body = { env, name: options.name, data: options.data === undefined ? {} : options.data };
  if (config.resourceAppid) body.resourceAppid = config.resourceAppid;
  const reply = await clientCall(config, '/client/callFunction', body);
  if (reply.errCode) {
    const err = new Error(`errCode: ${reply.errCode} | errMsg: ${reply.errMsg}`);
    err.errCode = reply.errCode;
    err.errMsg = reply.errMsg;
    throw err;
  }
  return { result: reply.result, requestID: reply.requestID, errMsg: reply.errMsg };
}

/// callContainer's most time (seed 003: 15 s).
const CONTAINER_TIMEOUT = 15000;

/// One `wx.request` to an HTTP function through the callContainer gateway, as `session`.
function containerRequest(config, options, env, session) {
  const header = Object.assign({}, options.header || {});
  header['X-WX-ENV'] = env;
  header.Authorization = `Bearer ${session}`;
  if (options.data !== undefined && !Object.keys(header).some((k) => k.toLowerCase() === 'content-type')) {
    header['content-type'] = 'application/json';
  }
  const path = options.path.startsWith('/') ? options.path : `/${options.path}`;
  return new Promise((resolve, reject) => {
    wxApi().request({
      url: config.baseUrl.replace(/\/+$/, '') + path,
      method: (options.method || 'GET').toUpperCase(),
      data: options.data,
      header,
      dataType: options.dataType || 'json',
      responseType: options.responseType,
      timeout: Math.min(options.timeout || CONTAINER_TIMEOUT, CONTAINER_TIMEOUT),
      success: resolve,
      fail: (e) => reject(new Error((e && e.errMsg) || 'request failed')),
    });
  });
}

/// The header of `res` named `name` (any case).
function headerOf(res, name) {
  const h = res.header || {};
  const key = Object.keys(h).find((k) => k.toLowerCase() === name);
  return key === undefined ? undefined : h[key];
}

async function callContainerWith(config, options) {
  const api = 'cloud.callContainer';
  if (!options || typeof options.path !== 'string') throw fail(api, 40101, 'missing parameter path');
  const service = Object.keys(options.header || {}).find((k) => k.toLowerCase() === 'x-wx-service');
  if (!service) throw fail(api, 40101, 'missing header X-WX-SERVICE');
  const env = (options.config && options.config.env) || config.env;
  if (!env) throw fail(api, 40101, 'missing parameter env: pass init({env}) or config.env');
  let s = await session(config);
  let res = await containerRequest(config, options, env, s.session);
  const gatewayError = () => headerOf(res, 'x-cloudfn-error') !== undefined;
  if (gatewayError() && SESSION_ERRORS.includes(res.data && res.data.errcode)) {
    clearSession();
    s = await login(config);
    res = await containerRequest(config, options, env, s.session);
  }
  if (gatewayError()) {
    const data = res.data || {};
    throw fail(api, data.errcode, `${data.errmsg} (HTTP ${res.statusCode})`);
  }
  return {
    data: res.data,
    statusCode: res.statusCode,
    header: res.header,
    callID: headerOf(res, 'x-cloudfn-request-id'),
    errMsg: `${api}:ok`,
  };
}

/// `new wx.cloud.Cloud({resourceAppid, resourceEnv})`: another app's shared env. `init()` runs
/// the owner's `cloudbase_auth` for this user; calls wait for it.
class Cloud {
  constructor(options) {
    const o = options || {};
    this.config = {
      resourceAppid: o.resourceAppid,
      env: o.resourceEnv,
      baseUrl: o.baseUrl,
      appid: o.appid,
    };
    this.ready = null;
  }

  init(options) {
    const run = async () => {
      const config = resolved(this.config);
      const reply = await clientCall(config, '/client/init', {
        resourceAppid: config.resourceAppid,
        resourceEnv: config.env,
      });
      if (reply.errCode) {
        const err = new Error(`errCode: ${reply.errCode} | errMsg: ${reply.errMsg}`);
        err.errCode = reply.errCode;
        err.errMsg = reply.errMsg;
        throw err;
      }
      return { errMsg: reply.errMsg };
    };
    this.ready = run();
    // A failed init may be retried.
    this.ready.catch(() => { this.ready = null; });
    return settle(this.ready, options);
  }

  callFunction(options) {
    const call = async () => {
      await (this.ready || this.init());
      return callFunctionWith(resolved(this.config), options);
    };
    return settle(call(), options);
  }

  /// An HTTP function of the shared env (seed 003's `c1.callContainer`).
  callContainer(options) {
    const call = async () => {
      await (this.ready || this.init());
      return callContainerWith(resolved(this.config), options);
    };
    return settle(call(), options);
  }
}

const cloud = {
  /// `wx.cloud.init({env, baseUrl, appid?})`; also installs this module as `wx.cloud`
  /// (pass `install: false` not to).
  init(options) {
    const o = options || {};
    Object.assign(defaults, { env: o.env, baseUrl: o.baseUrl, appid: o.appid });
    if (o.install !== false && typeof wx !== 'undefined') wxApi().cloud = cloud;
    return cloud;
  },
  callFunction(options) {
    return settle((async () => callFunctionWith(resolved(), options))(), options);
  },
  /// `wx.cloud.callContainer({config: {env}, path, method, header: {'X-WX-SERVICE': NAME},
  /// data})`: an HTTP function; resolves `{data, statusCode, header, callID, errMsg}`.
  callContainer(options) {
    return settle((async () => callContainerWith(resolved(), options))(), options);
  },
  /// Logs in now (otherwise the first call does); resolves `{openid}`.
  login() {
    return login(resolved()).then((s) => ({ openid: s.openid }));
  },
  /// Forgets the kept session; the next call logs in again.
  logout() {
    clearSession();
  },
  Cloud: class extends Cloud {
    constructor(options) {
      super(Object.assign({ baseUrl: defaults.baseUrl, appid: defaults.appid }, options || {}));
    }
  },
};

module.exports = cloud;
