'use strict';
// Keeps the SDK on loopback: it looks up Tencent's metadata host on every call, and tests
// must send nothing off this machine.
// Preload (node -r ./guard.js) for test runs: refuse DNS for any host other than localhost,
// and log the attempt to stderr, so that the SDK only ever talks to 127.0.0.1.
const dns = require('dns');
const orig = dns.lookup;
dns.lookup = function (host, opts, cb) {
  if (typeof opts === 'function') { cb = opts; opts = {}; }
  if (host === 'localhost' || host === '127.0.0.1') return orig.call(dns, host, opts, cb);
  process.stderr.write('[guard] blocked dns.lookup(' + host + ')\n');
  const e = new Error('getaddrinfo ENOTFOUND ' + host); e.code = 'ENOTFOUND'; e.hostname = host;
  process.nextTick(cb, e);
};
