#!/usr/bin/env bash
# tests/check-exports.sh LIB HEADER
# Checks that the dynamic symbols LIB defines and exports are exactly the functions HEADER declares:
# a declared but unimplemented function would fail only when a user links, and any extra export
# (a Swift symbol, a runtime helper) is ABI surface nobody promised. Prints both differences.
set -euo pipefail

if [ "$#" -ne 2 ]; then
    echo "usage: $0 LIB HEADER" >&2
    exit 2
fi
lib="$1" header="$2"
[ -f "$lib" ] || { echo "check-exports: no such library: $lib" >&2; exit 2; }
[ -f "$header" ] || { echo "check-exports: no such header: $header" >&2; exit 2; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Declared: identifiers followed by '(' outside comments and preprocessor lines, i.e. function
# declarations (the header has no function-like macros named kv_*; they are checked for anyway).
perl -0777 -ne '
    s{/\*.*?\*/}{ }gs;          # block comments
    s{//[^\n]*}{}g;             # line comments
    s{^[ \t]*#[^\n]*(?:\\\n[^\n]*)*}{}mg;   # preprocessor lines (with continuations)
    while (/\b(kv_[A-Za-z0-9_]*)\s*\(/g) { print "$1\n"; }
' "$header" | sort -u > "$tmp/declared"

if [ ! -s "$tmp/declared" ]; then
    echo "check-exports: found no kv_* function declarations in $header" >&2
    exit 2
fi

# Exported: defined, external dynamic symbols (version suffixes like @@FTKV_0 removed).
nm -D --defined-only --extern-only "$lib" | awk 'NF { print $NF }' | sed 's/@.*//' | sort -u > "$tmp/exported"

missing="$(comm -23 "$tmp/declared" "$tmp/exported")"
extra="$(comm -13 "$tmp/declared" "$tmp/exported")"

echo "check-exports: $(wc -l < "$tmp/declared") functions declared in $header," \
     "$(wc -l < "$tmp/exported") symbols exported by $lib"
status=0
if [ -n "$missing" ]; then
    echo "declared in the header but NOT exported by the library:"
    printf '  %s\n' $missing
    status=1
fi
if [ -n "$extra" ]; then
    echo "exported by the library but NOT declared in the header:"
    printf '%s\n' "$extra" | head -n 50 | sed 's/^/  /'
    n="$(printf '%s\n' "$extra" | wc -l)"
    [ "$n" -le 50 ] || echo "  ... and $((n - 50)) more"
    status=1
fi
[ "$status" -ne 0 ] || echo "check-exports: OK, the sets are equal"
exit "$status"
