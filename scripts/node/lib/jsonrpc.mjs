// What the transaction tools (sendtx.mjs, sendblob.mjs, requests.mjs) share: the dev key, the
// command-line parsing that exits 2 with the usage line, and a JSON-RPC client with a deadline on
// every call. Each tool keeps its own options and checks.
import { parseArgs } from 'node:util'

// The first key of the `test test … junk` mnemonic (0xf39F…2266), prefunded in the genesis files.
export const DEV_KEY = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'

// An error's message with its cause (fetch puts ECONNREFUSED and timeouts there).
export const errText = (e) => (e.cause ? `${e.message} (${e.cause.code ?? e.cause.message})` : e.message)

// usageFor(TOOL, USAGE): a usage(msg) that prints "TOOL: msg" and the usage line, and exits 2.
export function usageFor(tool, usageLine) {
  return (msg) => {
    if (msg) console.error(`${tool}: ${msg}`)
    console.error(usageLine)
    process.exit(2)
  }
}

// The values of the command line for these parseArgs options (plus -h/--help); a bad option or
// --help ends in usage().
export function parseOrExit(usage, options) {
  let values
  try {
    ;({ values } = parseArgs({ options: { ...options, help: { type: 'boolean', short: 'h' } } }))
  } catch (e) {
    usage(e.message)
  }
  if (values.help) usage()
  return values
}

// A positive whole number of milliseconds from an option's text, else usage().
export function timeoutMsOrExit(usage, text) {
  const ms = Number(text)
  if (!Number.isInteger(ms) || ms < 1) usage(`bad --timeout-ms: ${text}`)
  return ms
}

let rpcId = 0

// post(opts, body): BODY (a request or a batch) to opts.rpc within opts.timeoutMs; the parsed
// answer and the HTTP status. An answer that is not JSON is an error naming the status.
export async function post(opts, body) {
  const res = await fetch(opts.rpc, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(opts.timeoutMs),
  })
  const text = await res.text()
  try {
    return { status: res.status, ok: res.ok, body: JSON.parse(text) }
  } catch {
    throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`)
  }
}

// The next request id (for batches built by hand).
export const nextId = () => ++rpcId

// rpc(opts, METHOD, PARAMS): the call's result; its error, or an HTTP error, as an Error naming METHOD.
export async function rpc(opts, method, params) {
  let answer
  try {
    answer = await post(opts, { jsonrpc: '2.0', id: nextId(), method, params })
  } catch (e) {
    throw new Error(`${method}: ${e.message}`, { cause: e.cause })
  }
  const { status, ok, body } = answer
  if (body.error) throw new Error(`${method}: ${body.error.message ?? JSON.stringify(body.error)}`)
  if (!ok) throw new Error(`${method}: HTTP ${status}`)
  return body.result
}
