#!/usr/bin/env python3
"""Checks that every C++ snippet of the docs is quoted exactly from a compiled example.

  check_snippets.py [--update] SOURCE_DIR DOC.md...

Each fenced code block (``` with no language, cpp or c++) must follow a marker line
    <!-- snippet: examples/NAME.cpp#REGION -->
and equal the lines of examples/NAME.cpp between the two lines `// [REGION]`, after removing
their common indentation (marker lines of other regions inside are left out, so regions may
nest). Shell blocks (```sh) are not code to compile and need no marker.

--update rewrites each quoted block from its region (after editing an example), then checks.

VIRTIOFS_SNIPPETS_ALLOW_MISSING=examples/a.cpp[:examples/b.cpp] lets those example files be
absent (for a branch whose example arrives with another branch); nothing else may be missing.
"""
import os
import re
import sys

MARKER = re.compile(r"^<!--\s*snippet:\s*(\S+?)#([\w-]+)\s*-->\s*$")
REGION = re.compile(r"^\s*//\s*\[([\w-]+)\]\s*$")
CODE_LANGS = {"", "cpp", "c++"}


def dedent(lines):
    lines = [line.rstrip() for line in lines]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    indents = [len(line) - len(line.lstrip()) for line in lines if line]
    cut = min(indents, default=0)
    return [line[cut:] for line in lines]


def region(path, name):
    """The lines of `path` between its two `// [name]` lines, or an error message."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    at = [i for i, line in enumerate(lines) if (m := REGION.match(line)) and m.group(1) == name]
    if len(at) != 2:
        return None, f"has {len(at)} '// [{name}]' lines, not 2 (one opens the region, one ends it)"
    body = [line for line in lines[at[0] + 1:at[1]] if not REGION.match(line)]
    return dedent(body), None


def check(source, doc, allow_missing, update=False):
    errors = []
    with open(doc, encoding="utf-8") as f:
        lines = f.read().split("\n")
    replacements = []  # (first line, end line, new lines) of blocks to rewrite
    rel_doc = os.path.relpath(doc, source)
    snippets = skipped = 0
    i = 0
    while i < len(lines):
        marker = MARKER.match(lines[i])
        fence = re.match(r"^(```+)\s*(\S*)\s*$", lines[i])
        if marker:
            where = f"{rel_doc}:{i + 1}"
            file, name = marker.groups()
            if i + 1 >= len(lines) or not re.match(r"^```+\s*(cpp|c\+\+)?\s*$", lines[i + 1]):
                errors.append(f"{where}: the snippet marker is not followed by a ```cpp block")
                i += 1
                continue
            ticks = re.match(r"^(`+)", lines[i + 1]).group(1)
            end = i + 2
            while end < len(lines) and lines[end].strip() != ticks:
                end += 1
            if end == len(lines):
                errors.append(f"{where}: the code block is never closed")
                break
            first = i + 2
            quoted = dedent(lines[first:end])
            snippets += 1
            i = end + 1
            if not re.match(r"^examples/[\w-]+\.cpp$", file):
                errors.append(f"{where}: {file}: snippets come from examples/NAME.cpp")
                continue
            path = os.path.join(source, file)
            if not os.path.exists(path):
                if file in allow_missing:
                    skipped += 1
                    print(f"{where}: {file} is missing (allowed by VIRTIOFS_SNIPPETS_ALLOW_MISSING)")
                else:
                    errors.append(f"{where}: {file} does not exist")
                continue
            expected, problem = region(path, name)
            if problem:
                errors.append(f"{where}: {file} {problem}")
            elif quoted != expected and update:
                replacements.append((first, end, expected))
            elif quoted != expected:
                diff = next((k for k in range(max(len(quoted), len(expected)))
                             if k >= len(quoted) or k >= len(expected) or quoted[k] != expected[k]))
                errors.append(
                    f"{where}: differs from {file}#{name} at its line {diff + 1}:\n"
                    f"    doc:     {quoted[diff] if diff < len(quoted) else '(nothing)'}\n"
                    f"    example: {expected[diff] if diff < len(expected) else '(nothing)'}\n"
                    f"  edit the example and run tests/docs/check_snippets.py --update SOURCE_DIR {rel_doc}")
            continue
        if fence:
            ticks, lang = fence.groups()
            where = f"{rel_doc}:{i + 1}"
            if lang.lower() in CODE_LANGS:
                errors.append(f"{where}: a code block with no '<!-- snippet: examples/NAME.cpp#REGION -->'"
                              " line before it (quote compiled code; shell blocks are ```sh)")
            end = i + 1
            while end < len(lines) and lines[end].strip() != ticks:
                end += 1
            i = end + 1
            continue
        i += 1
    if replacements and not errors:
        for first, end, new in reversed(replacements):
            lines[first:end] = new
        with open(doc, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        print(f"{rel_doc}: rewrote {len(replacements)} snippet(s) from their examples")
    return snippets - skipped, errors


def main():
    args = sys.argv[1:]
    update = bool(args) and args[0] == "--update"
    if update:
        args = args[1:]
    if len(args) < 2:
        print("usage: check_snippets.py [--update] SOURCE_DIR DOC.md...", file=sys.stderr)
        return 2
    source = args[0]
    allow = os.environ.get("VIRTIOFS_SNIPPETS_ALLOW_MISSING", "")
    allow_missing = {p for p in allow.split(":") if p}
    failed = False
    for doc in args[1:]:
        snippets, errors = check(source, doc, allow_missing, update)
        for e in errors:
            print(f"check_snippets: {e}", file=sys.stderr)
        failed |= bool(errors)
        if not errors and snippets == 0:
            print(f"check_snippets: {doc} quotes no snippet (wrong file?)", file=sys.stderr)
            failed = True
        elif not errors:
            print(f"{os.path.relpath(doc, source)}: {snippets} snippets match their examples")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
