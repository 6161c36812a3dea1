#!/usr/bin/env bash
# jwt.sh FILE — create FILE holding a fresh random 32-byte hex JWT secret (64 hex chars,
# no 0x, newline) unless it already exists; mode 600. Silent on success.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[[ $# -eq 1 && -n $1 ]] || usage_error "FILE"
file=$1

if [[ ! -e $file ]]; then
  mkdir -p "$(dirname "$file")"
  umask 077
  tmp=$(mktemp "$file.tmp.XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  secret=$(od -An -vtx1 -N32 /dev/urandom | tr -d ' \n')
  printf '%s\n' "$secret" >"$tmp"
  # ln fails if FILE appeared meanwhile: concurrent callers all end up with one secret.
  ln "$tmp" "$file" 2>/dev/null || [[ -e $file ]] || die "cannot create $file"
fi

content=$(tr -d ' \t\r\n' <"$file") || die "cannot read $file"
content=${content#0x}
[[ $content =~ ^[0-9a-fA-F]{64}$ ]] || die "$file exists but is not a 32-byte hex secret"
chmod 600 "$file"
