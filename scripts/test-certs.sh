#!/usr/bin/env bash
# test-certs.sh DIR [NAMES] — a self-signed test CA and a server certificate it signed, for TLS to
# a local PostgreSQL or Redis (tests/tls.rs; trying sslmode=verify-full or rediss:// by hand).
# Writes, only when DIR/server.pem is absent: DIR/ca.pem (the CA's certificate: sslrootcert,
# --redis-ca-file), DIR/server.pem and DIR/server.key (ECDSA P-256, mode 600), valid for 10 years
# for NAMES, an openssl subjectAltName list (default DNS:localhost,IP:127.0.0.1,IP:::1). The CA's
# own key is not kept: nothing else can be signed with it. Needs the openssl CLI
# (scripts/deps.sh tls).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[[ $# -eq 1 || $# -eq 2 ]] || usage_error "DIR [NAMES]"
dir=$(abspath "$1") names=${2:-DNS:localhost,IP:127.0.0.1,IP:::1}
[[ $names =~ ^(DNS|IP):[^,[:space:]]+(,(DNS|IP):[^,[:space:]]+)*$ ]] ||
  die "NAMES must be a list such as DNS:localhost,IP:127.0.0.1, got '$names'"
command -v openssl >/dev/null 2>&1 || die "openssl not found (run scripts/deps.sh tls)"
[[ -f $dir/server.pem ]] && exit 0
mkdir -p "$dir"
work=$(mktemp -d "$dir/.certs.XXXXXX")
trap 'rm -rf "$work"' EXIT
umask 077
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$work/ca.key" -out "$work/ca.pem" -days 3650 \
  -subj "/CN=clnode test CA $(basename "$dir")" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null ||
  die "openssl could not make the CA"
openssl req "${ec[@]}" -keyout "$work/server.key" -out "$work/server.csr" -subj /CN=localhost 2>/dev/null ||
  die "openssl could not make the server key"
printf '%s\n' "subjectAltName=$names" 'basicConstraints=CA:FALSE' \
  'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' >"$work/server.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 3650 -extfile "$work/server.ext" -out "$work/server.pem" 2>/dev/null ||
  die "openssl could not sign the server certificate"
chmod 644 "$work/ca.pem" "$work/server.pem"
chmod 600 "$work/server.key"
mv "$work/ca.pem" "$work/server.key" "$dir/"
# server.pem last: its presence means the set is complete.
mv "$work/server.pem" "$dir/"
