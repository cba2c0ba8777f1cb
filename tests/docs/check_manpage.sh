#!/usr/bin/env bash
# A man page names everything its tool's --help names: each option (-x, --long), each -o NAME
# and each command (the first word of the lines under "commands:"), so neither drifts alone.
#   check_manpage.sh TOOL MANPAGE
set -euo pipefail
tool=$1 page=$2
help=$("$tool" --help)
# The page as text: groff's \- is a dash, font changes (\fB, \fI, \fR, \fP) are nothing.
text=$(sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' "$page")

tokens=$(
  {
    grep -oE '(^|[][ ,(|])--?[A-Za-z][A-Za-z0-9-]*' <<<"$help" | sed -E 's/^[][ ,(|]//'
    grep -oE -- '-o [a-z_]+=?' <<<"$help" | sed 's/^-o //'
    awk '/^commands:/ {on = 1; next} /^[^ ]/ {on = 0} on {print $1}' <<<"$help"
  } | sort -u
)
missing=()
for t in $tokens; do
  right='($|[^A-Za-z0-9_-])'
  [[ $t == *= ]] && right=''
  grep -qE -- "(^|[^A-Za-z0-9_-])$t$right" <<<"$text" || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "check_manpage: $(basename "$page") does not mention what $(basename "$tool") --help names: ${missing[*]}" >&2
  exit 1
fi
echo "$(basename "$page"): names all $(wc -w <<<"$tokens") options and commands of --help"
