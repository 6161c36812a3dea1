// Preloaded by scripts/ethereumjs.sh (`node --import`) when EL_P2P_ADDR is set: devp2p among
// the cluster's own execution clients only, the way geth.sh sets up geth.
//
// EthereumJS 0.10.5 has no static peers: it dials only peers its discovery (discv4 / DNS)
// finds; --bootnodes and admin_addPeer both go through discovery, which the cluster keeps off.
// And it keeps its node key in its config database, so its enode is not known before its
// first start. This module adds the two missing pieces and nothing else:
//   CLNODE_NODEKEY_FILE  the node key (64 hex characters, scripts/enode.sh makes it); the
//                        client's own key lookup is replaced, so its enode is the one
//                        enode.sh printed
//   CLNODE_STATIC_PEERS  comma-separated enode URLs dialled directly (RLPx over TCP) and
//                        redialled every 2 s while not connected, within --maxPeers
//   CLNODE_NETRESTRICT   comma-separated IPv4 CIDRs; a devp2p connection from or to any
//                        other address is closed at once (geth's --netrestrict)
import { readFileSync } from 'node:fs'
import { RLPx } from '@ethereumjs/devp2p'
import { hexToBytes } from '@ethereumjs/util'
import { Config } from './node_modules/@ethereumjs/client/dist/esm/src/config.js'

const REDIAL_MS = 2000

const keyFile = process.env.CLNODE_NODEKEY_FILE
if (keyFile) {
  const keyHex = readFileSync(keyFile, 'utf8').trim()
  if (!/^[0-9a-f]{64}$/i.test(keyHex)) throw new Error(`${keyFile} does not hold a 32-byte hex node key`)
  const key = hexToBytes(`0x${keyHex}`)
  Config.getClientKey = async () => key
}

const staticPeers = (process.env.CLNODE_STATIC_PEERS ?? '')
  .split(',')
  .filter((s) => s !== '')
  .map((url) => {
    const m = /^enode:\/\/([0-9a-f]{128})@([0-9.]+):([0-9]{1,5})$/.exec(url)
    if (!m) throw new Error(`CLNODE_STATIC_PEERS: not an enode URL with an IPv4 address: ${url}`)
    return { id: hexToBytes(`0x${m[1]}`), key: m[1], address: m[2], tcpPort: Number(m[3]) }
  })

// "10.1.0.0/16" -> [network, mask] as unsigned 32-bit numbers.
const ipv4 = (text) => {
  const parts = text.split('.').map(Number)
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return null
  return ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0
}
const allowed = (process.env.CLNODE_NETRESTRICT ?? '')
  .split(',')
  .filter((s) => s !== '')
  .map((cidr) => {
    const [net, bits] = cidr.split('/')
    const address = ipv4(net)
    const len = Number(bits)
    if (address === null || !Number.isInteger(len) || len < 0 || len > 32) {
      throw new Error(`CLNODE_NETRESTRICT: not an IPv4 CIDR: ${cidr}`)
    }
    const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0
    return [(address & mask) >>> 0, mask]
  })
if (allowed.length > 0) {
  const onConnect = RLPx.prototype._onConnect
  RLPx.prototype._onConnect = function (socket, peerId) {
    const remote = ipv4((socket.remoteAddress ?? '').replace(/^::ffff:/, ''))
    if (remote === null || !allowed.some(([net, mask]) => ((remote & mask) >>> 0) === net)) {
      socket.destroy()
      return
    }
    return onConnect.call(this, socket, peerId)
  }
}

if (staticPeers.length > 0) {
  const listen = RLPx.prototype.listen
  RLPx.prototype.listen = function (...args) {
    const result = listen.apply(this, args)
    const dial = () => {
      for (const peer of staticPeers) {
        // _peers holds connected peers and sockets being dialled, keyed by unprefixed hex id.
        if (this._peers.has(peer.key) || this._getOpenSlots() === 0) continue
        this.connect({ id: peer.id, address: peer.address, tcpPort: peer.tcpPort }).catch(() => {})
      }
    }
    const timer = setInterval(() => {
      if (this._server === null) clearInterval(timer) // destroyed
      else dial()
    }, REDIAL_MS)
    timer.unref()
    setImmediate(dial)
    return result
  }
}
