'use strict';
// A `wx` global for running mini-program code under Node, over real HTTP: `wx.request` with
// Node's http module, `wx.login` answering codes the test's fake platform knows
// (`ok-OPENID-N`, or WX_CODE verbatim), storage in memory, `wx.getAccountInfoSync` naming
// the app in WX_APPID.
const http = require('http');

const storage = new Map();
let logins = 0;

global.wx = {
  getAccountInfoSync: () => ({ miniProgram: { appId: process.env.WX_APPID } }),
  login({ success, fail }) {
    logins += 1;
    const code = process.env.WX_CODE || `ok-${process.env.WX_OPENID}-${process.pid}-${logins}`;
    setImmediate(() => (code ? success({ code, errMsg: 'login:ok' }) : fail({ errMsg: 'login:fail' })));
  },
  request({ url, method, data, header, success, fail }) {
    const body = data === undefined ? '' : typeof data === 'string' ? data : JSON.stringify(data);
    const req = http.request(url, { method: method || 'GET', headers: Object.assign({ 'content-length': Buffer.byteLength(body) }, header) }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed = text;
        try { parsed = JSON.parse(text); } catch (_) { /* the text as is, like wx */ }
        success({ statusCode: res.statusCode, data: parsed, header: res.headers });
      });
    });
    req.on('error', (e) => fail({ errMsg: `request:fail ${e.message}` }));
    req.end(body);
  },
  getStorageSync: (k) => (storage.has(k) ? storage.get(k) : ''),
  setStorageSync: (k, v) => storage.set(k, JSON.parse(JSON.stringify(v))),
  removeStorageSync: (k) => storage.delete(k),
  /** For the test: how many times wx.login ran. */
  _logins: () => logins,
};
