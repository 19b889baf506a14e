#!/usr/bin/env bash
# test.sh: tests the C summer; exit status 0 iff every check passed.
#
#   guests/c-summer/test.sh
#
# 1. Builds the component (build.sh) into <repo>/target/guests/c-summer.wasm.
# 2. Native: summer.c with its generated canonical-ABI glue under AddressSanitizer,
#    UBSan and LeakSanitizer (test/native.c plays the host), over the sandbox and
#    conformance fixtures, every prefix and many mutations of a chunk, stored-sum
#    and host failures. Needs Debian's libclang-rt-19-dev (clang-19 recommends it).
# 3. With the weir binary (WEIR, default <repo>/target/release/weir; skipped with a
#    notice if it is not built): `weir test` on the sandbox fixtures (expected sums,
#    crashes every 3 messages, the SeqNo gap) and on every conformance case, as
#    tests/fixtures/conformance/expectations.tsv says.
# Prints "N passed, M failed" last.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
wasm="$repo/target/guests/c-summer.wasm"
conformance="$repo/tests/fixtures/conformance"
sandbox="$repo/tests/fixtures/sandbox"
weir="${WEIR:-$repo/target/release/weir}"
work="$repo/target/guests/c-summer.test"
passed=0
failed=0

pass() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    echo "FAIL: $*" >&2
}

"$here/build.sh" "$wasm" || {
    echo "c-summer test: the build failed" >&2
    exit 1
}
mkdir -p "$work"

# --- 2. Native, sanitized --------------------------------------------------------
asan=/usr/lib/llvm-19/lib/clang/19/lib/linux/libclang_rt.asan-x86_64.a
if [[ ! -f $asan ]]; then
    echo "c-summer test: missing Debian package libclang-rt-19-dev (apt-get install -y libclang-rt-19-dev)" >&2
    exit 1
fi
if /usr/lib/llvm-19/bin/clang -std=c11 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all \
    -Wall -Wextra -Werror -Wno-unknown-attributes -Wno-ignored-attributes -D_GNU_SOURCE \
    -I "$here/bindings" "$here/test/native.c" "$here/summer.c" -x c "$here/bindings/consumer.c" \
    -o "$work/native" 2>"$work/native.build.log"; then
    if out="$("$work/native" "$conformance" 2>&1)"; then
        pass
        echo "native: $(tail -1 <<<"$out")"
    else
        fail "native checks (sanitizers on):"$'\n'"$out"
    fi
else
    fail "compiling the native test:"$'\n'"$(cat "$work/native.build.log")"
fi

# --- 3. With the host ---------------------------------------------------------------
if [[ ! -x $weir ]]; then
    echo "c-summer test: $weir is not built (cargo build --release -p weir): host checks skipped" >&2
else
    if "$weir" test "$wasm" --input "$sandbox/chunks.jsonl" --expect "$sandbox/chunks.expected.jsonl" \
        --crash-every 3 >/dev/null 2>"$work/err"; then pass; else fail "sandbox chunks: $(tail -3 "$work/err")"; fi

    "$weir" test "$wasm" --input "$sandbox/chunks-gap.jsonl" >/dev/null 2>"$work/err"
    status=$?
    if [[ $status == 1 ]] && grep -q 'invalid chunk.SeqNo of stream 01000000000000000000000000000000: expected 2, got 3 (skipped ahead) at test/input@' "$work/err"; then
        pass
    else
        fail "chunks-gap: exit $status, $(tail -1 "$work/err")"
    fi

    while IFS=$'\t' read -r name outcome message; do
        [[ -z $name || $name == \#* ]] && continue
        input="$conformance/$name.jsonl"
        lines=$(grep -c . "$input")
        case $outcome in
        ok)
            if "$weir" test "$wasm" --input "$input" --expect "$conformance/$name.expected.jsonl" \
                --crash-every 1 >/dev/null 2>"$work/err"; then pass; else fail "$name: $(tail -3 "$work/err")"; fi
            ;;
        guest-error)
            "$weir" test "$wasm" --input "$input" >/dev/null 2>"$work/err"
            status=$?
            error="$(grep '^error' "$work/err")"
            if [[ $status == 1 && $error == *"(input line $lines)"* && $error == *"$message"*" at test/input@"* ]]; then
                pass
            else
                fail "$name: exit $status, wanted an error on input line $lines with \"$message\": $error"
            fi
            ;;
        input-rejected)
            "$weir" test "$wasm" --input "$input" >/dev/null 2>"$work/err"
            status=$?
            if [[ $status == 1 ]] && grep -q "input line $lines: not a JSON object" "$work/err"; then
                pass
            else
                fail "$name: exit $status, wanted weir test to refuse input line $lines: $(tail -1 "$work/err")"
            fi
            ;;
        *) fail "$name: unknown outcome '$outcome' in expectations.tsv" ;;
        esac
    done <"$conformance/expectations.tsv"
fi

echo "$passed passed, $failed failed"
((failed == 0))
