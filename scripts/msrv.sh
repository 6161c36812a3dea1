#!/usr/bin/env bash
# msrv.sh — checks that the crate builds (all targets) with the Rust version it declares
# (Cargo.toml's rust-version), on that exact toolchain. Installs the toolchain with rustup
# (minimal profile) when missing. Its own target directory keeps the main build's cache.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$REPO_ROOT"

version=$(sed -n 's/^rust-version = "\([0-9.]*\)"$/\1/p' Cargo.toml)
[[ -n $version ]] || die "Cargo.toml declares no rust-version"
[[ $version =~ ^[0-9]+\.[0-9]+$ ]] && version="$version.0"
command -v rustup >/dev/null 2>&1 || die "rustup not found: cannot install Rust $version for the MSRV check"
if ! rustup run "$version" rustc --version >/dev/null 2>&1; then
  echo "msrv: installing Rust $version (rustup, minimal profile) ..."
  rustup toolchain install "$version" --profile minimal --no-self-update >&2 ||
    die "cannot install Rust $version with rustup"
fi
echo "msrv: cargo +$version check --all-targets --locked"
CARGO_TARGET_DIR="$REPO_ROOT/target/msrv" rustup run "$version" cargo check --all-targets --locked --quiet
echo "msrv: builds with Rust $version"
