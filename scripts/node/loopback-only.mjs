// Preloaded by scripts/ethereumjs.sh (`node --import`): EthereumJS 0.10.5 binds its devp2p
// listeners (RLPx TCP, discovery UDP) to 0.0.0.0 with no flag to change that. Rewrite every
// wildcard or host-less bind in this process to 127.0.0.1 so the node is loopback-only, or to
// CLNODE_BIND_HOST when set (ethereumjs.sh sets it to EL_P2P_ADDR's address: a cluster whose
// execution clients peer over a private subnet).
import dgram from 'node:dgram'
import net from 'node:net'

const LOOPBACK = process.env.CLNODE_BIND_HOST || '127.0.0.1'
const isWildcard = (host) => host === undefined || host === '0.0.0.0' || host === '::' || host === ''
const isPort = (v) => typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v))

// listen(port[, host][, backlog][, cb]) / listen({port, host, ...}[, cb]); other forms
// (unix socket paths, handles) are left alone.
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (isPort(args[0])) {
    if (typeof args[1] !== 'string' || isWildcard(args[1])) {
      if (typeof args[1] === 'string') args[1] = LOOPBACK
      else args.splice(1, 0, LOOPBACK)
    }
  } else if (args[0] && typeof args[0] === 'object' && args[0].path === undefined && isWildcard(args[0].host)) {
    args[0] = { ...args[0], host: LOOPBACK }
  }
  return listen.apply(this, args)
}

// bind([port][, address][, cb]) / bind({port, address, ...}[, cb])
const bind = dgram.Socket.prototype.bind
dgram.Socket.prototype.bind = function (...args) {
  if (args.length === 0 || typeof args[0] === 'function') {
    args.unshift(0, LOOPBACK)
  } else if (isPort(args[0])) {
    if (typeof args[1] !== 'string' || isWildcard(args[1])) {
      if (typeof args[1] === 'string') args[1] = LOOPBACK
      else args.splice(1, 0, LOOPBACK)
    }
  } else if (args[0] && typeof args[0] === 'object' && isWildcard(args[0].address)) {
    args[0] = { ...args[0], address: LOOPBACK }
  }
  return bind.apply(this, args)
}
