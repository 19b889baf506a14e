#!/usr/bin/env bash
# Builds the Python summer component: ./build.sh [OUT.wasm]
# (default: <repo>/target/guests/python-summer.wasm).
#
# Needs only python3 (with venv and pip) and PyPI: the first run creates a
# venv in build/venv and installs componentize-py (which bundles CPython for
# WASI; nothing else is downloaded). Works from any directory; rebuilds only
# when app.py, the WIT, this script or the toolchain version changed, or the
# output is missing or altered, and is silent when up to date. The output is
# replaced atomically.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1

fail() { echo "python-summer: error: $*" >&2; exit 1; }

# Resolve the output path against the caller's directory before moving.
out=${1:-}
here=$(cd "$(dirname "$0")" && pwd)
if [[ -z $out ]]; then
    # In a project made by `weir new consumer` (its own wit/): its build/.
    if [[ -d $here/wit ]]; then
        out=$here/build/python-summer.wasm
    else
        out=$here/../../target/guests/python-summer.wasm
    fi
elif [[ $out != /* ]]; then
    out=$PWD/$out
fi
cd "$here"
# The WIT package: the project's own (`weir new consumer`), or the repository's.
if [[ -d wit ]]; then wit=wit; else wit=../../wit; fi
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")

command -v python3 >/dev/null \
    || fail "python3 not found; install Python 3 with venv and pip (Debian: apt-get install python3 python3-venv python3-pip)"

venv=build/venv
tool=$venv/bin/componentize-py
# pip records the installed version in its dist-info folder name (quicker
# to check than `pip show`).
if [[ ! -x $tool ]] || ! compgen -G \
        "$venv/lib/python3*/site-packages/componentize_py-$COMPONENTIZE_PY_VERSION.dist-info" >/dev/null; then
    echo "python-summer: installing componentize-py $COMPONENTIZE_PY_VERSION into $here/$venv" >&2
    if [[ ! -x $venv/bin/python ]]; then
        python3 -m venv "$venv" \
            || fail "python3 -m venv failed; install the venv module (Debian: apt-get install python3-venv)"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "componentize-py==$COMPONENTIZE_PY_VERSION" \
        || fail "pip could not install componentize-py==$COMPONENTIZE_PY_VERSION from PyPI"
fi

# Everything the component depends on, and the output it produced last time.
inputs=$(cat app.py build.sh "$wit"/*.wit | sha256sum | cut -d' ' -f1)
# One stamp per output path, so that building elsewhere keeps this one.
stamp=build/stamps/$(printf %s "$out" | sha256sum | cut -c1-16)
mkdir -p build/stamps
if [[ -f $out && -f $stamp ]] \
    && [[ $(cat "$stamp") == "$inputs $(sha256sum "$out" | cut -d' ' -f1) $out" ]]; then
    exit 0
fi

tmp=$out.tmp.$$
log=build/componentize.log
trap 'rm -f "$tmp"' EXIT
if ! "$tool" -d "$wit" -w consumer componentize app -o "$tmp" >"$log" 2>&1; then
    cat "$log" >&2
    fail "componentize-py failed (log: $here/$log)"
fi
mv "$tmp" "$out"
echo "$inputs $(sha256sum "$out" | cut -d' ' -f1) $out" >"$stamp"
echo "python-summer: built $out ($(stat -c %s "$out") bytes)" >&2
