#!/usr/bin/env node
// The devp2p identity of one execution client of the cluster.
//
//   node scripts/node/enode.mjs KEY_FILE HOST:PORT
//
// KEY_FILE holds the node's secp256k1 private key as 64 hex characters (geth's --nodekey
// format; EthereumJS reads the same bytes with --key). When KEY_FILE does not exist, a new key
// from the OS's random source is written to it (mode 600, never over an existing file).
// stdout: the node's enode URL, enode://<128 hex public key>@HOST:PORT, which the other
// cluster ELs list as a static peer. Exit 1 on an unreadable or malformed key, 2 on bad usage.
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { bytesToHex, hexToBytes, privateToPublic } from '@ethereumjs/util'

const [keyFile, addr] = process.argv.slice(2)
if (!keyFile || !addr || process.argv.length !== 4) {
  console.error('usage: enode.mjs KEY_FILE HOST:PORT')
  process.exit(2)
}
const m = /^([0-9.]+):([1-9][0-9]{0,4})$/.exec(addr)
if (!m || Number(m[2]) > 65535) {
  console.error(`enode.mjs: HOST:PORT must be an IPv4 address and a port, got '${addr}'`)
  process.exit(2)
}

let keyHex
try {
  keyHex = readFileSync(keyFile, 'utf8').trim()
} catch (e) {
  if (e.code !== 'ENOENT') {
    console.error(`enode.mjs: cannot read ${keyFile}: ${e.message}`)
    process.exit(1)
  }
  keyHex = randomBytes(32).toString('hex')
  // 'wx': fail rather than overwrite a key another process wrote meanwhile.
  writeFileSync(keyFile, keyHex, { mode: 0o600, flag: 'wx' })
}
if (!/^[0-9a-f]{64}$/i.test(keyHex)) {
  console.error(`enode.mjs: ${keyFile} does not hold a 32-byte hex node key`)
  process.exit(1)
}
const publicKey = bytesToHex(privateToPublic(hexToBytes(`0x${keyHex}`))).slice(2)
console.log(`enode://${publicKey}@${m[1]}:${m[2]}`)
