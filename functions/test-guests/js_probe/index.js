// Test guest: one probe per `event.op`, each reporting what it saw.
const cloud = require('wx-server-sdk')
const tcb = require('@cloudbase/node-sdk')

cloud.init({ env: cloud.DYNAMIC_CURRENT_ENV })
const app = tcb.init({ env: tcb.SYMBOL_CURRENT_ENV })

const probes = {
  // The whole WXContext, the SCF context and the variables.
  context: async (event, context) => ({
    wx: cloud.getWXContext(),
    scf: context,
    vars: { greeting: process.env.greeting, TCB_ENV: process.env.TCB_ENV },
  }),
  // An outgoing request to event.url: its status, or how it failed.
  fetch: async (event) => {
    try {
      const res = await fetch(event.url)
      return { status: res.status, body: await res.text() }
    } catch (e) {
      return { failed: String(e && e.message ? e.message : e) }
    }
  },
  // An SDK API cloudfn does not provide.
  unsupported: async () => {
    try {
      cloud.database().collection('users')
      return { failed: null }
    } catch (e) {
      return { failed: e.message }
    }
  },
  // wx-server-sdk's callFunction, failing or not: the SDK's shapes.
  call: async (event) => {
    try {
      return { ok: await cloud.callFunction({ name: event.name, data: event.data }) }
    } catch (e) {
      return { err: { errCode: e.errCode, errMsg: e.errMsg, message: e.message } }
    }
  },
  // @cloudbase/node-sdk's callFunction and getUserInfo.
  node: async (event) => {
    const user = app.auth().getUserInfo()
    try {
      return { user, ok: await app.callFunction({ name: event.name, data: event.data }) }
    } catch (e) {
      return { user, err: { code: e.code, message: e.message } }
    }
  },
  // A structured log line, console output, then a timer.
  logs: async () => {
    cloud.logger().warn({ probe: 'logs', n: 1 })
    console.log('to stdout')
    console.error('to stderr')
    await new Promise((resolve) => setTimeout(resolve, 20))
    return 'logged'
  },
  // A thrown error with a code.
  throws: async () => {
    const e = new Error('the probe failed on purpose')
    e.code = 'PROBE_FAILED'
    throw e
  },
}

exports.main = async (event, context) => {
  const probe = probes[event.op]
  if (!probe) throw new Error(`no probe ${event.op}`)
  return probe(event, context)
}
