#!/usr/bin/env node
// Send execution-layer requests (EIP-7685) to an execution client's JSON-RPC endpoint: deposits
// through the deposit contract (EIP-6110), withdrawal requests (EIP-7002) and consolidation
// requests (EIP-7251) through their system contracts. The genesis must hold these contracts
// (scripts/genesis/*.json do; see docs/OPERATIONS.md).
//
//   node scripts/node/requests.mjs --rpc http://127.0.0.1:PORT --kinds deposit,withdrawal,consolidation
//
// Options: --kinds K[,K..] (each of deposit, withdrawal, consolidation; one transaction per
//          entry, in that order, repeats allowed), --key 0x.. (default: dev key of 0xf39F..2266),
//          --deposit-gwei G (default 1000000000, the contract's minimum of 1 ETH; whole gwei),
//          --withdrawal-gwei G (default 1000000000; 0 asks for a full exit), --timeout-ms MS per
//          HTTP request (default 10000).
// The validator keys are random (48 bytes each), and so is the deposit's signature (96 bytes:
// neither the deposit contract nor an execution client checks it); the withdrawal credentials
// are 0x01 + 11 zero bytes + the sender's address. Each deposit carries its deposit_data_root,
// the SSZ hash tree root of DepositData, which the contract recomputes and refuses on mismatch.
// Withdrawal and consolidation requests pay the contract's current fee (an empty-input
// eth_call answers it). Gas: eth_estimateGas + 30% (an estimate that fails, e.g. a revert,
// stops the tool before anything is sent). All transactions go out in one JSON-RPC batch, so
// they usually land in one block.
// stdout: one JSON line per accepted transaction: {"kind", "hash", "nonce", "from", "to",
// "value_wei", the request's fields, "request": the request's bytes as the block will carry them
// (after its type byte; for a deposit with the index predicted from get_deposit_count())}.
// stderr: errors and a summary. Exit 1 if any send failed, 2 on bad usage.
import { createHash, randomBytes } from 'node:crypto'
import { Hardfork, Mainnet, createCustomCommon } from '@ethereumjs/common'
import { createFeeMarket1559Tx } from '@ethereumjs/tx'
import { bytesToHex, concatBytes, hexToBytes, privateToAddress } from '@ethereumjs/util'
import { DEV_KEY, errText, nextId, parseOrExit, post, rpc, timeoutMsOrExit, usageFor } from './lib/jsonrpc.mjs'

// The deposit contract: the genesis config's depositContractAddress (mainnet's address).
const DEPOSIT_CONTRACT = '0x00000000219ab540356cBB839Cbe05303d7705Fa'
// EIP-7002 and EIP-7251 system contracts (their canonical addresses).
const WITHDRAWAL_CONTRACT = '0x00000961Ef480Eb55e80D19ad83579A64c007002'
const CONSOLIDATION_CONTRACT = '0x0000BBdDc7CE488642fb579F8B00f3a590007251'
const DEPOSIT_SELECTOR = '22895118' // deposit(bytes,bytes,bytes,bytes32)
const DEPOSIT_COUNT_SELECTOR = '621fd130' // get_deposit_count()
const GWEI = 1_000_000_000n
const MIN_DEPOSIT_GWEI = 1_000_000_000n
const KINDS = ['deposit', 'withdrawal', 'consolidation']
const USAGE =
  'usage: requests.mjs --rpc URL --kinds deposit|withdrawal|consolidation[,...] [--key 0x..] ' +
  '[--deposit-gwei G] [--withdrawal-gwei G] [--timeout-ms MS]'

const usage = usageFor('requests.mjs', USAGE)

function parseCli() {
  const values = parseOrExit(usage, {
    rpc: { type: 'string' },
    kinds: { type: 'string' },
    key: { type: 'string', default: DEV_KEY },
    'deposit-gwei': { type: 'string', default: String(MIN_DEPOSIT_GWEI) },
    'withdrawal-gwei': { type: 'string', default: '1000000000' },
    'timeout-ms': { type: 'string', default: '10000' },
  })
  if (!values.rpc) usage('--rpc is required')
  if (!values.kinds) usage('--kinds is required')
  const kinds = values.kinds.split(',')
  for (const kind of kinds) if (!KINDS.includes(kind)) usage(`unknown kind in --kinds: ${kind}`)
  if (kinds.length > 64) usage('at most 64 requests at once')
  if (!/^0x[0-9a-fA-F]{64}$/.test(values.key)) usage('--key must be 0x + 64 hex digits')
  const u64 = (name) => {
    if (!/^\d{1,20}$/.test(values[name]) || BigInt(values[name]) >= 1n << 64n) usage(`bad --${name}: ${values[name]}`)
    return BigInt(values[name])
  }
  const depositGwei = u64('deposit-gwei')
  if (depositGwei < MIN_DEPOSIT_GWEI) usage(`--deposit-gwei must be at least ${MIN_DEPOSIT_GWEI} (1 ETH)`)
  const timeoutMs = timeoutMsOrExit(usage, values['timeout-ms'])
  return { rpc: values.rpc, kinds, key: values.key, depositGwei, withdrawalGwei: u64('withdrawal-gwei'), timeoutMs }
}

const sha256 = (...parts) => new Uint8Array(createHash('sha256').update(concatBytes(...parts)).digest())
const zeros = (n) => new Uint8Array(n)

// A uint64 as 8 little-endian bytes (SSZ, and how requests carry amounts and indices).
function le64(value) {
  const out = new Uint8Array(8)
  new DataView(out.buffer).setBigUint64(0, value, true)
  return out
}

// hash_tree_root(DepositData(pubkey: Bytes48, withdrawal_credentials: Bytes32, amount: Gwei,
// signature: Bytes96)), as the deposit contract recomputes it (consensus-specs, deposit
// contract `deposit`): byte vectors packed into 32-byte chunks, zero-padded to a power of two.
function depositDataRoot(pubkey, withdrawalCredentials, amountGwei, signature) {
  const pubkeyRoot = sha256(pubkey, zeros(16))
  const signatureRoot = sha256(sha256(signature.subarray(0, 64)), sha256(signature.subarray(64), zeros(32)))
  return sha256(sha256(pubkeyRoot, withdrawalCredentials), sha256(le64(amountGwei), zeros(24), signatureRoot))
}

// ABI: a uint256 word, and a `bytes` tail (length word, data zero-padded to 32 bytes).
function word(value) {
  const out = zeros(32)
  let v = BigInt(value)
  for (let i = 31; i >= 0 && v > 0n; i--, v >>= 8n) out[i] = Number(v & 0xffn)
  return out
}
const bytesTail = (data) => concatBytes(word(data.length), data, zeros((32 - (data.length % 32)) % 32))

// deposit(bytes pubkey, bytes withdrawal_credentials, bytes signature, bytes32 deposit_data_root)
function depositCalldata(pubkey, withdrawalCredentials, signature, root) {
  const tails = [bytesTail(pubkey), bytesTail(withdrawalCredentials), bytesTail(signature)]
  const heads = []
  let offset = 4 * 32
  for (const tail of tails) {
    heads.push(word(offset))
    offset += tail.length
  }
  return concatBytes(hexToBytes(`0x${DEPOSIT_SELECTOR}`), ...heads, root, ...tails)
}

// get_deposit_count() answers `bytes`: 8 little-endian bytes.
async function depositCount(opts) {
  const call = { to: DEPOSIT_CONTRACT, data: `0x${DEPOSIT_COUNT_SELECTOR}` }
  const answer = hexToBytes(await rpc(opts, 'eth_call', [call, 'latest']))
  if (answer.length !== 96) throw new Error(`get_deposit_count answered ${answer.length} bytes, not 96`)
  return new DataView(answer.buffer, answer.byteOffset + 64, 8).getBigUint64(0, true)
}

// The EIP-7002/7251 fee: the system contract answers it to a call with empty input.
async function requestFee(opts, contract) {
  const answer = await rpc(opts, 'eth_call', [{ to: contract, data: '0x' }, 'latest'])
  if (!/^0x[0-9a-fA-F]{64}$/.test(answer)) throw new Error(`fee of ${contract}: unexpected answer ${answer}`)
  return BigInt(answer)
}

// What to send for one request: {to, value, data, fields, request}.
function buildRequest(kind, opts, from, ctx) {
  const source = hexToBytes(from)
  if (kind === 'deposit') {
    const pubkey = randomBytes(48)
    const withdrawalCredentials = concatBytes(new Uint8Array([1]), zeros(11), source)
    const signature = randomBytes(96)
    const root = depositDataRoot(pubkey, withdrawalCredentials, opts.depositGwei, signature)
    const index = ctx.nextDepositIndex++
    // EIP-6110 DepositRequest: pubkey ++ withdrawal_credentials ++ amount ++ signature ++ index.
    const request = concatBytes(pubkey, withdrawalCredentials, le64(opts.depositGwei), signature, le64(index))
    return {
      to: DEPOSIT_CONTRACT,
      value: opts.depositGwei * GWEI,
      data: depositCalldata(pubkey, withdrawalCredentials, signature, root),
      fields: {
        pubkey: bytesToHex(pubkey),
        withdrawal_credentials: bytesToHex(withdrawalCredentials),
        amount_gwei: opts.depositGwei.toString(),
        signature: bytesToHex(signature),
        deposit_data_root: bytesToHex(root),
        index: index.toString(),
      },
      request: bytesToHex(request),
    }
  }
  if (kind === 'withdrawal') {
    const pubkey = randomBytes(48)
    // EIP-7002 input: validator_pubkey ++ amount (8 bytes, big-endian); the request it
    // produces: source_address ++ validator_pubkey ++ amount (little-endian).
    const amountBe = le64(opts.withdrawalGwei).reverse()
    return {
      to: WITHDRAWAL_CONTRACT,
      value: ctx.withdrawalFee,
      data: concatBytes(pubkey, amountBe),
      fields: {
        source_address: from,
        validator_pubkey: bytesToHex(pubkey),
        amount_gwei: opts.withdrawalGwei.toString(),
      },
      request: bytesToHex(concatBytes(source, pubkey, le64(opts.withdrawalGwei))),
    }
  }
  // EIP-7251 input: source_pubkey ++ target_pubkey; the request: source_address ++ both.
  const sourcePubkey = randomBytes(48)
  const targetPubkey = randomBytes(48)
  return {
    to: CONSOLIDATION_CONTRACT,
    value: ctx.consolidationFee,
    data: concatBytes(sourcePubkey, targetPubkey),
    fields: { source_address: from, source_pubkey: bytesToHex(sourcePubkey), target_pubkey: bytesToHex(targetPubkey) },
    request: bytesToHex(concatBytes(source, sourcePubkey, targetPubkey)),
  }
}

async function main() {
  const opts = parseCli()
  const key = hexToBytes(opts.key)
  const from = bytesToHex(privateToAddress(key))
  const chainId = BigInt(await rpc(opts, 'eth_chainId', []))
  const common = createCustomCommon({ chainId: Number(chainId) }, Mainnet, { hardfork: Hardfork.Prague })
  const ctx = {
    nextDepositIndex: opts.kinds.includes('deposit') ? await depositCount(opts) : 0n,
    withdrawalFee: opts.kinds.includes('withdrawal') ? await requestFee(opts, WITHDRAWAL_CONTRACT) : 0n,
    consolidationFee: opts.kinds.includes('consolidation') ? await requestFee(opts, CONSOLIDATION_CONTRACT) : 0n,
  }
  let nonce = BigInt(await rpc(opts, 'eth_getTransactionCount', [from, 'pending']))
  const signed = []
  for (const kind of opts.kinds) {
    const built = buildRequest(kind, opts, from, ctx)
    const call = { from, to: built.to, value: `0x${built.value.toString(16)}`, data: bytesToHex(built.data) }
    const estimate = BigInt(await rpc(opts, 'eth_estimateGas', [call, 'latest']))
    const tx = createFeeMarket1559Tx(
      {
        chainId,
        nonce,
        maxPriorityFeePerGas: GWEI,
        maxFeePerGas: 100n * GWEI,
        gasLimit: (estimate * 13n) / 10n,
        to: built.to,
        value: built.value,
        data: built.data,
      },
      { common },
    ).sign(key)
    signed.push({ kind, nonce, built, raw: bytesToHex(tx.serialize()) })
    nonce += 1n
  }
  // One batch: the transactions reach the pool together, so one block usually takes them all.
  const batch = signed.map((s) => ({ jsonrpc: '2.0', id: nextId(), method: 'eth_sendRawTransaction', params: [s.raw] }))
  const firstId = batch[0].id
  const { body: answers } = await post(opts, batch)
  if (!Array.isArray(answers)) throw new Error(`batch answer is not a list: ${JSON.stringify(answers).slice(0, 200)}`)
  const byId = new Map(answers.map((a) => [a.id, a]))
  let failed = 0
  signed.forEach((s, i) => {
    const answer = byId.get(firstId + i)
    if (!answer || answer.error || typeof answer.result !== 'string') {
      failed++
      console.error(`requests.mjs: ${s.kind} (nonce ${s.nonce}): ${JSON.stringify(answer?.error ?? answer)}`)
      return
    }
    const line = {
      kind: s.kind,
      hash: answer.result,
      nonce: Number(s.nonce),
      from,
      to: s.built.to,
      value_wei: s.built.value.toString(),
      ...s.built.fields,
      request: s.built.request,
    }
    console.log(JSON.stringify(line))
  })
  console.error(`requests.mjs: ${signed.length - failed} sent, ${failed} failed, from ${from}`)
  if (failed > 0) process.exitCode = 1
}

main().catch((e) => {
  console.error(`requests.mjs: ${errText(e)}`)
  process.exit(1)
})
