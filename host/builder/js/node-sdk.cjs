// cloudfn's @cloudbase/node-sdk for JavaScript cloud functions: `tcb.init()` and the app's
// `callFunction` and `auth().getUserInfo()`, shaped as the real SDK shapes them; every other
// API throws an error naming it.
'use strict'
const rt = require('./runtime.mjs')

/** How the real SDK names the host's refusals (`code` of its errors). */
function codeOf(errcode) {
  switch (errcode) {
    case -504002: return 'FUNCTION_INVOCATION_FAILED'
    case -501009: return 'FUNCTION_NOT_FOUND'
    case -501002: return 'FUNCTION_TIME_LIMIT_EXCEEDED'
    case -501007: return 'FUNCTION_PARAM_INVALID'
    case -501000: return 'INVALID_ENV'
    case -501019: return 'EXCEED_AUTHORITY'
    default: return String(errcode)
  }
}

function app() {
  const self = {
    callFunction(options) {
      const { name, data } = options || {}
      const requestId = rt.context().requestId
      return rt.call(name, data).then(
        (result) => ({ requestId, result }),
        (e) => {
          const err = new Error(e.errmsg)
          err.code = codeOf(e.errcode)
          err.requestId = requestId
          throw err
        },
      )
    },
    auth() {
      return rt.strict({
        getUserInfo() {
          const c = rt.context()
          return {
            openId: c.openid || c.fromOpenid || '',
            appId: c.appid || c.fromAppid || '',
            uid: '',
            customUserId: '',
            isAnonymous: false,
          }
        },
      }, '@cloudbase/node-sdk', 'app.auth().')
    },
  }
  return rt.strict(self, '@cloudbase/node-sdk', 'app.')
}

const tcb = {
  SYMBOL_CURRENT_ENV: Symbol.for('SYMBOL_CURRENT_ENV'),
  SYMBOL_DEFAULT_ENV: Symbol.for('SYMBOL_DEFAULT_ENV'),
  init: () => app(),
}

module.exports = rt.strict(tcb, '@cloudbase/node-sdk', 'tcb.')
