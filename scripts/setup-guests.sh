#!/usr/bin/env bash
# Installs the Debian packages the non-Rust guests (guests/) build with:
# clang-19, lld-19, wasi-libc and the wasm32 compiler runtime for the C
# summer; Node.js with npm (JavaScript) and Python's venv module (Python) if
# the machine lacks them. The language toolchains themselves (componentize-py,
# componentize-qjs, wit-bindgen-cli, wasm-tools) are pinned and installed by
# each guest's build.sh from PyPI, npm and crates.io. Idempotent.
set -euo pipefail

need_apt=()
[ -x /usr/lib/llvm-19/bin/clang ] || need_apt+=(clang-19)
[ -x /usr/lib/llvm-19/bin/wasm-ld ] || need_apt+=(lld-19)
[ -f /usr/lib/wasm32-wasi/libc.a ] || need_apt+=(wasi-libc)
[ -f /usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a ] || need_apt+=(libclang-rt-19-dev-wasm32)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "setup: installing ${need_apt[*]} (Debian packages, for the guests in other languages)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
