#!/usr/bin/env bash
# Builds the browser editor into web/dist: the client node compiled to WebAssembly
# (wasm32-unknown-unknown), its JavaScript bindings (wasm-bindgen-cli, the version the crate
# pins), and the page's static files. Installs the target and the tool when missing.
# Serve it with: dsync-server --http-listen ADDR --ws-listen ADDR --web-root web/dist
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
# The version of the `wasm-bindgen` crate in web/Cargo.toml: the tool must match it exactly.
version="$(sed -n 's/^wasm-bindgen = "=\(.*\)"$/\1/p' "$here/Cargo.toml")"
[ -n "$version" ] || { echo "web/Cargo.toml pins no wasm-bindgen version" >&2; exit 1; }

rustup target list --installed | grep -qx wasm32-unknown-unknown \
    || rustup target add wasm32-unknown-unknown
if ! wasm-bindgen --version 2>/dev/null | grep -q " $version\$"; then
    # Not --locked: the tool's lock file can name versions a registry mirror lacks.
    cargo install wasm-bindgen-cli --version "$version" --force
fi

target_dir="${CARGO_TARGET_DIR:-$root/target}"
cargo build --manifest-path "$root/Cargo.toml" -p dsync-web --target wasm32-unknown-unknown --profile wasm
out="$here/dist"
rm -rf "$out"
mkdir -p "$out/pkg"
wasm-bindgen --target web --no-typescript --out-dir "$out/pkg" \
    "$target_dir/wasm32-unknown-unknown/wasm/dsync_web.wasm"
cp "$here/static/index.html" "$here/static/app.js" "$here/static/style.css" "$out/"
echo "built $out ($(du -sh "$out/pkg/dsync_web_bg.wasm" | cut -f1) of WebAssembly)"
