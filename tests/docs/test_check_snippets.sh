#!/usr/bin/env bash
# check_snippets.py catches what it is for: a quote that drifted from its example, a code block
# quoting nothing, a missing example or region; and accepts what is right.
#   test_check_snippets.sh PYTHON3 CHECKER
set -euo pipefail
python=$1 checker=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/virtiofs-snippets.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "test_check_snippets: $*" >&2; exit 1; }
mkdir -p "$work/examples"
cat >"$work/examples/demo.cpp" <<'EOF'
int main() {
  // [body]
  int answer = 42;
  // [inner]
  return answer;
  // [inner]
  // [body]
}
// [open]
EOF
good='<!-- snippet: examples/demo.cpp#body -->
```cpp
int answer = 42;
return answer;
```

```sh
echo shell blocks need no marker
```'
# expect STATUS TEXT DOC: the checker's exit status is STATUS and its output holds TEXT.
expect() {
  local status=$1 text=$2 doc=$3 rc=0
  printf '%s\n' "$doc" >"$work/doc.md"
  "$python" "$checker" "$work" "$work/doc.md" >"$work/out" 2>&1 || rc=$?
  [ "$rc" = "$status" ] || { cat "$work/out"; fail "exit $rc, not $status, for: $doc"; }
  grep -qF -- "$text" "$work/out" || { cat "$work/out"; fail "no '$text' for: $doc"; }
}
expect 0 "1 snippets match" "$good"
expect 1 "differs from examples/demo.cpp#body at its line 2" "${good/return answer;/return 0;}"
expect 1 "differs from examples/demo.cpp#body at its line 3" "${good/return answer;/return answer;
extra();}"
expect 1 "a code block with no" "$good
\`\`\`cpp
int unquoted;
\`\`\`"
expect 1 "a code block with no" "$good
\`\`\`
int unquoted;
\`\`\`"
expect 1 "examples/gone.cpp does not exist" "${good//demo.cpp/gone.cpp}"
expect 1 "has 1 '// [open]' lines" "${good//#body/#open}"
expect 1 "has 0 '// [nowhere]' lines" "${good//#body/#nowhere}"
expect 1 "is not followed by a \`\`\`cpp block" "<!-- snippet: examples/demo.cpp#body -->
text"
expect 1 "quotes no snippet" "no code here"
# Only the file named in the environment may be missing.
VIRTIOFS_SNIPPETS_ALLOW_MISSING=examples/gone.cpp expect 0 "missing (allowed" "${good//demo.cpp/gone.cpp}
$good"
VIRTIOFS_SNIPPETS_ALLOW_MISSING=examples/other.cpp expect 1 "gone.cpp does not exist" \
  "${good//demo.cpp/gone.cpp}"
# --update rewrites a drifted quote from its example.
printf '%s\n' "${good/return answer;/return 0;}" >"$work/doc.md"
"$python" "$checker" --update "$work" "$work/doc.md" >/dev/null
"$python" "$checker" "$work" "$work/doc.md" >/dev/null || fail "--update did not fix the quote"
echo "check_snippets: all cases behave"
