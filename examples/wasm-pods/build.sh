#!/bin/sh
# Build every example guest and import them as <name>:latest with $SKIFF (default: the
# `skiff` on PATH, if there is one). `build.sh --no-import` only builds.
#   rustup target add wasm32-wasip1 wasm32-wasip2   (once)
set -eu
cd "$(dirname "$0")"
cargo build --release --target-dir target --target wasm32-wasip1 -p hello -p crasher -p cpu-burner -p memory-hog
cargo build --release --target-dir target --target wasm32-wasip2 -p http-server -p http-get
SKIFF="${SKIFF:-skiff}"
if [ "${1:-}" != "--no-import" ] && command -v "$SKIFF" >/dev/null 2>&1; then
    for name in hello crasher cpu-burner memory-hog; do
        "$SKIFF" image import "target/wasm32-wasip1/release/$name.wasm" "$name:latest"
    done
    for name in http-server http-get; do
        "$SKIFF" image import "target/wasm32-wasip2/release/$name.wasm" "$name:latest"
    done
fi
