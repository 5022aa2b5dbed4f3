// What the SDK shims share: the call in progress (its WXContext, set by the adapter before the
// function's `main` runs) and cloudfn's host interfaces. Bundled into every JavaScript cloud
// function by `cloudfn build`; not an API of its own.
import { callFunction as hostCall } from 'cloudfn:function/invoke@0.1.0'
import { log as hostLog } from 'cloudfn:function/log@0.1.0'
import { getVars } from 'cloudfn:function/config@0.1.0'

let current = null

/** Called by the adapter at the start of each call. */
export function begin(context) {
  current = context
  const env = {}
  for (const [k, v] of getVars()) env[k] = v
  // What SCF sets for a CloudBase function, beside the function's own variables.
  env.TCB_ENV = env.SCF_NAMESPACE = context.env
  env.TCB_SOURCE = context.source
  env.SCF_FUNCTIONNAME = context.functionName
  globalThis.process = globalThis.process || {}
  globalThis.process.env = env
}

/** The WIT `wx-context` of the call in progress. */
export function context() {
  if (current === null) {
    throw new Error('the WXContext is only known while a call runs (inside exports.main), not at load time')
  }
  return current
}

/** `getWXContext()` as wx-server-sdk shapes it: only the fields the call has, ENV and SOURCE last. */
export function wxContext() {
  const c = context()
  const out = {}
  const put = (k, v) => { if (v !== undefined && v !== null && v !== '') out[k] = v }
  if (c.clientIp && c.clientIp.includes(':')) put('CLIENTIPV6', c.clientIp)
  else put('CLIENTIP', c.clientIp)
  put('APPID', c.appid)
  put('OPENID', c.openid)
  put('UNIONID', c.unionid)
  put('FROM_APPID', c.fromAppid)
  put('FROM_OPENID', c.fromOpenid)
  put('FROM_UNIONID', c.fromUnionid)
  out.ENV = c.env
  out.SOURCE = c.source
  return out
}

/**
 * Calls function `name` of the same env with `data`; resolves to its result, or rejects with
 * `{errcode, errmsg}` from the host (protocol §3 codes).
 */
export function call(name, data) {
  if (typeof name !== 'string' || name === '') {
    return Promise.reject({ errcode: -501007, errmsg: 'callFunction: name must be a non-empty string' })
  }
  try {
    const out = hostCall(name, JSON.stringify(data === undefined ? {} : data))
    return Promise.resolve(JSON.parse(out))
  } catch (e) {
    // componentize-js throws the `err` of a WIT result as a ComponentError carrying `payload`.
    const p = (e && e.payload) || e
    return Promise.reject({ errcode: p.errcode ?? -1, errmsg: String(p.errmsg ?? p.message ?? p) })
  }
}

/** Writes one structured line into the call's logs. */
export function log(level, args) {
  const text = args
    .map((a) => (typeof a === 'string' ? a : safeJson(a)))
    .join(' ')
  hostLog(level, text)
}

function safeJson(v) {
  if (v instanceof Error) return v.stack || String(v)
  try {
    return JSON.stringify(v)
  } catch {
    return String(v)
  }
}

/**
 * `target`, where any other property is an API cloudfn does not provide: reading it throws an
 * error that names it, rather than leaving `undefined is not a function` to the caller.
 */
export function strict(target, sdk, prefix) {
  // Asked by module interop, promise resolution and inspection; never an SDK API.
  const quiet = new Set(['__esModule', 'then', 'default', 'toJSON', 'constructor', 'inspect', 'prototype', 'length', 'name'])
  return new Proxy(target, {
    get(t, key) {
      if (key in t || typeof key === 'symbol' || quiet.has(key)) return t[key]
      throw new Error(`${sdk}: ${prefix}${String(key)} is not supported in cloudfn JavaScript functions ` +
        '(supported: ' + Object.keys(t).filter((k) => !k.startsWith('_')).join(', ') + ')')
    },
  })
}
