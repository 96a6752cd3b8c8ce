#!/bin/sh
# The README's test command: everything from a fresh clone, then lint, type
# check, build and the whole suite against the real test bed.
set -eu
cd "$(dirname "$0")/.."
sh scripts/prepare.sh
npx eslint --max-warnings 0 .
npx prettier --check "**/*.{ts,js,mjs}"
npx tsc -p tsconfig.json
npx tsc -p tsconfig.build.json
npx vitest run "$@"
