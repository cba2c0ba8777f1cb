#!/usr/bin/env bash
# libvirtiofs.so exports exactly the public API: every symbol it exports is a member of a class
# or a function that include/virtiofs/ declares with VIRTIOFS_API (not a nested class such as
# Client::Impl, not an internal namespace, not a std:: instance), under the version VIRTIOFS_1;
# and every such symbol the library defines with default visibility is exported (a public
# class left out of lib/virtiofs.map fails here).
#   check_exports.sh LIBVIRTIOFS_SO INCLUDE_DIR LAYER_ARCHIVE...
set -euo pipefail
so=$1 include=$2
shift 2

classes=$(grep -hoE '(class|struct) VIRTIOFS_API [A-Za-z_][A-Za-z0-9_]*' "$include"/virtiofs/*.hpp |
  awk '{print $3}' | sort -u | paste -sd'|')
functions=$(grep -hE '^VIRTIOFS_API ' "$include"/virtiofs/*.hpp |
  grep -oE '[A-Za-z_][A-Za-z0-9_]*\(' | tr -d '(' | sort -u | paste -sd'|')
[ -n "$classes" ] && [ -n "$functions" ] || { echo "no VIRTIOFS_API declarations in $include"; exit 1; }
# A member (constructor, destructor, operator or method; an [abi:...] tag allowed) of a public
# class, or a public function: no further scope in the name.
public="^virtiofs::(($classes)::(~?[A-Za-z_][A-Za-z0-9_]*|operator[^(]*)|($functions))(\[abi:[a-z0-9]+\])?\("

exported=$(nm -D --defined-only "$so" | awk '$2 != "A" {print $3}')
status=0
unversioned=$(grep -v '@@VIRTIOFS_1$' <<<"$exported" || true)
if [ -n "$unversioned" ]; then
  echo "exported without the version VIRTIOFS_1 (lib/virtiofs.map):"; c++filt <<<"$unversioned"; status=1
fi
exported=$(sed 's/@@VIRTIOFS_1$//' <<<"$exported" | c++filt | sort -u)
internal=$(grep -vE "$public" <<<"$exported" || true)
if [ -n "$internal" ]; then
  echo "exported but not public API (hide it, or declare it in include/virtiofs/ with VIRTIOFS_API):"
  echo "$internal"; status=1
fi

# What the objects define with default visibility (VIRTIOFS_API) and the headers make public;
# a member taking a class's private Impl is private by construction (the map keeps it local).
defined=$(for archive in "$@"; do readelf -sW "$archive"; done |
  awk '$7 != "UND" && ($5 == "GLOBAL" || $5 == "WEAK") && $6 == "DEFAULT" {print $8}' |
  c++filt | grep -E "$public" | grep -v '::Impl[,>]' | sort -u || true)
[ -n "$defined" ] || { echo "no public symbols found in the layer archives: $*"; exit 1; }
missing=$(comm -23 <(echo "$defined") <(echo "$exported"))
if [ -n "$missing" ]; then
  echo "public but not exported (add it to lib/virtiofs.map):"; echo "$missing"; status=1
fi
[ $status -eq 0 ] && echo "libvirtiofs exports $(wc -l <<<"$exported") symbols, all public API"
exit $status
