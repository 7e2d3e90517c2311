#!/usr/bin/env bash
# Prints the section of CHANGELOG.md for a version: the lines under its
# heading ("## 1.2.0", "## 1.2.0 - 2026-12-15" or "## Unreleased"), up to
# the next heading of that level. A version without a section, or with an
# empty one, is an error: a release is not published without its notes.
#
#   .github/release-notes.sh 1.2.0 [CHANGELOG.md]
set -euo pipefail

version=${1:?usage: release-notes.sh VERSION [CHANGELOG]}
changelog=${2:-CHANGELOG.md}

notes=$(awk -v version="$version" '
  /^## / {
    if (found) exit
    found = ($2 == version || $2 == "[" version "]")
    next
  }
  found && (started || NF) { started = 1; print }
' "$changelog")

if [[ -z "${notes//[[:space:]]/}" ]]; then
  echo "release-notes.sh: $changelog has no section \"## $version\" (or it is empty)" >&2
  exit 1
fi
printf '%s\n' "$notes"
