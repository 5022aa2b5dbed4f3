#!/usr/bin/env bash
# Installs what building cloudfn needs beyond a stock Rust toolchain: the wasm32-wasip2 target
# the example functions are compiled for. Safe to run again.
set -euo pipefail
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "setup: adding the wasm32-wasip2 target" >&2
  rustup target add wasm32-wasip2
fi
