// users_add: the seed's "add a user" function, as a CloudBase Node function. Validates the
// user, stamps it with the caller's identity, and hands it to the storage function (`echo`,
// or the variable STORE_FUNCTION) through cloud.callFunction, so the callee sees SOURCE
// `…,scf`.
const cloud = require('wx-server-sdk')
cloud.init({ env: cloud.DYNAMIC_CURRENT_ENV })

const log = cloud.logger()

exports.main = async (event, context) => {
  const name = typeof event.name === 'string' ? event.name.trim() : ''
  if (!name) {
    const err = new Error('name must not be empty')
    err.code = 'INVALID_USER'
    throw err
  }
  const { OPENID, APPID, FROM_OPENID, FROM_APPID } = cloud.getWXContext()
  const user = {
    name,
    age: Number.isInteger(event.age) ? event.age : null,
    // The user who added it: the env's own user, or the sharing app's user.
    createdBy: OPENID || FROM_OPENID || null,
    createdIn: APPID || FROM_APPID || null,
  }
  log.info({ adding: user.name, request: context.request_id })
  const { result } = await cloud.callFunction({
    name: process.env.STORE_FUNCTION || 'echo',
    data: user,
  })
  return { added: user, stored: result }
}
