// cloudfn's wx-server-sdk for JavaScript cloud functions: what `require('wx-server-sdk')`
// gives a function built by `cloudfn build`. The parts a cloud function needs from its host are
// here, shaped as the real SDK shapes them; every other API throws an error naming it.
'use strict'
const rt = require('./runtime.mjs')

const ERR_TEXT = { '-404011': 'cloud function execution error' }

/** wx-server-sdk's CloudSDKError: `errCode`, `errMsg`, and a message made of both. */
class CloudSDKError extends Error {
  constructor(errCode, errMsg) {
    super(errMsg)
    this.errCode = errCode
    this.errMsg = errMsg
    // On the instance, as the SDK does: Error's constructor made `message` an own property.
    Object.defineProperty(this, 'message', {
      get() {
        return `errCode: ${this.errCode} ${ERR_TEXT[this.errCode] || ''} | errMsg: ${this.errMsg}`
      },
      set(msg) {
        this.errMsg = msg
      },
    })
  }
}

function callFunction(options) {
  const { name, data } = options || {}
  const requestID = rt.context().requestId
  return rt.call(name, data).then(
    (result) => ({ result, requestID, errMsg: 'cloud.callFunction:ok' }),
    (e) => {
      // A function that ran and failed is the SDK's -404011; the host's other refusals keep
      // their own code, as the platform passes them on.
      const errCode = e.errcode === -504002 ? -404011 : e.errcode
      throw new CloudSDKError(errCode, `cloud.callFunction:fail requestID ${requestID}, ` +
        `cloud function service error code ${e.errcode}, error message ${e.errmsg}`)
    },
  )
}

function logger() {
  const at = (level) => (...args) => rt.log(level, args)
  return { log: at('info'), info: at('info'), warn: at('warn'), error: at('error') }
}

const cloud = {
  DYNAMIC_CURRENT_ENV: Symbol.for('DYNAMIC_CURRENT_ENV'),
  SYMBOL_CURRENT_ENV: Symbol.for('SYMBOL_CURRENT_ENV'),
  // The host decides the env (always the function's own); nothing to configure.
  init() {},
  getWXContext: () => rt.wxContext(),
  callFunction,
  logger,
  CloudSDKError,
}

module.exports = rt.strict(cloud, 'wx-server-sdk', 'cloud.')
