#!/usr/bin/env bash
# build-static.sh — a statically linked release binary at target/static/clnode.
# musl when its Rust target is installed, otherwise glibc with crt-static.
# Fails unless `ldd` agrees the result is not dynamic.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The commit clnode_build_info reports (src/metrics.rs); none outside a git checkout.
CLNODE_GIT_COMMIT=${CLNODE_GIT_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || true)}
export CLNODE_GIT_COMMIT
if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  target=x86_64-unknown-linux-musl
  cargo build --release --target "$target"
else
  target=$(rustc -vV | sed -n 's/^host: //p')
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" cargo build --release --target "$target"
fi
mkdir -p target/static
cp "target/$target/release/clnode" target/static/clnode
linkage=$(ldd target/static/clnode 2>&1 || true)
if ! grep -Eq "statically linked|not a dynamic executable" <<<"$linkage"; then
  echo "build-static: target/static/clnode is dynamically linked:" >&2
  echo "$linkage" >&2
  exit 1
fi
echo "build-static: target/static/clnode ($target, $(du -h target/static/clnode | cut -f1), ldd: $(echo "$linkage" | tr -d '\t'))"
