#!/usr/bin/env node
// Send signed EIP-1559 value transfers to an execution client's JSON-RPC endpoint.
//
//   node scripts/node/sendtx.mjs --rpc http://127.0.0.1:PORT --count N [options]
//   node scripts/node/sendtx.mjs --rpc http://127.0.0.1:PORT --duration-s S [--rate R] [options]
//
// Options: --key 0x.. (default: dev key of 0xf39F..2266), --to 0x.. (default 0x7099..79C8),
//          --value-wei W (default 1), --rate PER_SECOND (default: as fast as possible with
//          --count, 10 with --duration-s), --timeout-ms MS per HTTP request (default 10000),
//          --data-bytes N (default 0: N bytes of random calldata per transaction, for full
//          blocks; gas 21000 + 40 per byte, the Prague calldata floor for non-zero bytes;
//          geth's pool takes transactions up to 128 KiB).
// Chain id from eth_chainId, first nonce from eth_getTransactionCount(from, "pending"), then
// sequential nonces (refetched after any failed send). Fees: tip 1 gwei, max 100 gwei, gas 21000
// (plus the calldata's).
// stdout: one JSON line per accepted tx {"hash":"0x..","nonce":N,"sent_ms":<epoch ms>}.
// stderr: errors and a final summary. Exit 1 if any send failed in --count mode, 2 on bad usage.
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { Hardfork, Mainnet, createCustomCommon } from '@ethereumjs/common'
import { createFeeMarket1559Tx } from '@ethereumjs/tx'
import { bytesToHex, hexToBytes, privateToAddress } from '@ethereumjs/util'
import { DEV_KEY, errText, parseOrExit, rpc, usageFor } from './lib/jsonrpc.mjs'

const DEFAULT_TO = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'
const GWEI = 1_000_000_000n
const USAGE =
  'usage: sendtx.mjs --rpc URL (--count N | --duration-s S) [--rate PER_SECOND] ' +
  '[--key 0x..] [--to 0x..] [--value-wei W] [--timeout-ms MS] [--data-bytes N]'

const usage = usageFor('sendtx.mjs', USAGE)

function parseCli() {
  const values = parseOrExit(usage, {
    rpc: { type: 'string' },
    count: { type: 'string' },
    key: { type: 'string', default: DEV_KEY },
    to: { type: 'string', default: DEFAULT_TO },
    'value-wei': { type: 'string', default: '1' },
    rate: { type: 'string' },
    'duration-s': { type: 'string' },
    'timeout-ms': { type: 'string', default: '10000' },
    'data-bytes': { type: 'string', default: '0' },
  })
  const num = (name, { int = false, min = 0 } = {}) => {
    if (values[name] === undefined) return undefined
    const n = Number(values[name])
    if (!Number.isFinite(n) || n < min || (int && !Number.isInteger(n))) usage(`bad --${name}: ${values[name]}`)
    return n
  }
  const opts = {
    rpc: values.rpc,
    count: num('count', { int: true, min: 1 }),
    durationS: num('duration-s', { min: 0 }),
    rate: num('rate', { min: Number.MIN_VALUE }),
    timeoutMs: num('timeout-ms', { int: true, min: 1 }),
    dataBytes: num('data-bytes', { int: true, min: 0 }),
    key: values.key,
    to: values.to,
  }
  if (!opts.rpc) usage('--rpc is required')
  if ((opts.count === undefined) === (opts.durationS === undefined)) usage('give exactly one of --count or --duration-s')
  if (opts.durationS !== undefined && opts.rate === undefined) opts.rate = 10
  if (!/^0x[0-9a-fA-F]{64}$/.test(opts.key)) usage('--key must be 0x + 64 hex digits')
  if (!/^0x[0-9a-fA-F]{40}$/.test(opts.to)) usage('--to must be 0x + 40 hex digits')
  if (!/^\d+$/.test(values['value-wei'])) usage('--value-wei must be a non-negative integer')
  opts.value = BigInt(values['value-wei'])
  return opts
}

async function main() {
  const opts = parseCli()
  const key = hexToBytes(opts.key)
  const from = bytesToHex(privateToAddress(key))
  const chainId = BigInt(await rpc(opts, 'eth_chainId', []))
  const common = createCustomCommon({ chainId: Number(chainId) }, Mainnet, { hardfork: Hardfork.Prague })
  const pendingNonce = async () => BigInt(await rpc(opts, 'eth_getTransactionCount', [from, 'pending']))

  let nonce = await pendingNonce()
  const start = Date.now()
  const deadline = opts.durationS !== undefined ? start + opts.durationS * 1000 : Infinity
  const intervalMs = opts.rate ? 1000 / opts.rate : 0
  let sent = 0
  let failed = 0

  for (let i = 0; opts.count === undefined || i < opts.count; i++) {
    const due = start + i * intervalMs
    if (due >= deadline) break
    if (due > Date.now()) await sleep(due - Date.now())
    try {
      if (nonce === undefined) nonce = await pendingNonce()
      const tx = createFeeMarket1559Tx(
        {
          chainId,
          nonce,
          maxPriorityFeePerGas: GWEI,
          maxFeePerGas: 100n * GWEI,
          gasLimit: 21000n + 40n * BigInt(opts.dataBytes),
          to: opts.to,
          value: opts.value,
          data: randomBytes(opts.dataBytes),
        },
        { common },
      ).sign(key)
      const sentMs = Date.now()
      const hash = await rpc(opts, 'eth_sendRawTransaction', [bytesToHex(tx.serialize())])
      console.log(JSON.stringify({ hash, nonce: Number(nonce), sent_ms: sentMs }))
      nonce += 1n
      sent++
    } catch (e) {
      failed++
      console.error(`sendtx.mjs: nonce ${nonce ?? '?'}: ${errText(e)}`)
      nonce = undefined // refetch before the next send
    }
  }
  console.error(`sendtx.mjs: ${sent} sent, ${failed} failed, from ${from} in ${Date.now() - start} ms`)
  if (opts.count !== undefined && failed > 0) process.exitCode = 1
}

main().catch((e) => {
  console.error(`sendtx.mjs: ${errText(e)}`)
  process.exit(1)
})
