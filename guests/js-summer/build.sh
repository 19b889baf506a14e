#!/usr/bin/env bash
# Builds the JavaScript summer component: ./build.sh [OUT.wasm]
# (default: <repo>/target/guests/js-summer.wasm).
#
# Needs only Node.js (18+) with npm and the npm registry: the first run does
# `npm ci` (componentize-qjs, pinned in package-lock.json, with its prebuilt
# native binding; it embeds QuickJS, nothing else is downloaded). Works from
# any directory; rebuilds only when app.js, the WIT, this script or the lock
# file changed, or the output is missing or altered, and is silent when up to
# date. The output is replaced atomically.
set -euo pipefail

fail() { echo "js-summer: error: $*" >&2; exit 1; }

# Resolve the output path against the caller's directory before moving.
out=${1:-}
here=$(cd "$(dirname "$0")" && pwd)
if [[ -z $out ]]; then
    # In a project made by `weir new consumer` (its own wit/): its build/.
    if [[ -d $here/wit ]]; then
        out=$here/build/js-summer.wasm
    else
        out=$here/../../target/guests/js-summer.wasm
    fi
elif [[ $out != /* ]]; then
    out=$PWD/$out
fi
cd "$here"
# The WIT package: the project's own (`weir new consumer`), or the repository's.
if [[ -d wit ]]; then wit=wit; else wit=../../wit; fi
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")

command -v node >/dev/null || fail "node not found; install Node.js 18+ with npm (Debian: apt-get install nodejs npm)"
command -v npm >/dev/null || fail "npm not found; install npm (Debian: apt-get install npm)"

# node_modules matches the lock file it was installed from, or is reinstalled.
lock=$(sha256sum package-lock.json | cut -d' ' -f1)
installed=node_modules/.weir-lock-sha256
if [[ ! -f $installed || $(cat "$installed") != "$lock" ]]; then
    echo "js-summer: installing componentize-qjs from package-lock.json (npm ci)" >&2
    npm ci --no-audit --no-fund --loglevel=error >/dev/null || fail "npm ci failed"
    echo "$lock" >"$installed"
fi

# Everything the component depends on, and the output it produced last time.
inputs=$(cat app.js build.sh package-lock.json "$wit"/*.wit | sha256sum | cut -d' ' -f1)
# One stamp per output path, so that building elsewhere keeps this one.
stamp=node_modules/.weir-stamps/$(printf %s "$out" | sha256sum | cut -c1-16)
mkdir -p node_modules/.weir-stamps
if [[ -f $out && -f $stamp ]] \
    && [[ $(cat "$stamp") == "$inputs $(sha256sum "$out" | cut -d' ' -f1) $out" ]]; then
    exit 0
fi

tmp=$out.tmp.$$
log=node_modules/.weir-componentize.log
trap 'rm -f "$tmp"' EXIT
# --sync: the component-model async ABI needs a wasmtime feature the host
# leaves out.
if ! node_modules/.bin/componentize-qjs --wit "$wit" --world consumer --sync \
        --js app.js -o "$tmp" >"$log" 2>&1; then
    cat "$log" >&2
    fail "componentize-qjs failed (log: $here/$log)"
fi
mv "$tmp" "$out"
echo "$inputs $(sha256sum "$out" | cut -d' ' -f1) $out" >"$stamp"
echo "js-summer: built $out ($(stat -c %s "$out") bytes)" >&2
