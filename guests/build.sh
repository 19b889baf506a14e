#!/usr/bin/env bash
# Builds every non-Rust guest into <repo>/target/guests/ (the Rust guests are
# built by cargo itself, through host/build.rs):
#
#   guests/build.sh            # python-summer, js-summer, c-summer
#   guests/build.sh c-summer   # only the named ones
#
# Each guest's own build.sh installs its pinned toolchain from PyPI / npm /
# crates.io on first use and is quiet when up to date; the Debian packages
# they need are installed by scripts/setup.sh. Stops at the first failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(cd "$here/.." && pwd)/target/guests"
mkdir -p "$out"
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(python-summer js-summer c-summer)
for name in "${names[@]}"; do
  [ -x "$here/$name/build.sh" ] || { echo "guests/build.sh: no guest named $name" >&2; exit 1; }
  start=$SECONDS
  "$here/$name/build.sh" "$out/$name.wasm"
  echo "guests: $name.wasm ($(( $(stat -c %s "$out/$name.wasm") / 1024 )) KiB, $((SECONDS - start)) s)"
done
