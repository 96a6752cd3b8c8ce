#!/bin/sh
# The README's main command.
set -eu
cd "$(dirname "$0")/.."
sh scripts/prepare.sh >&2
npx tsc -p tsconfig.build.json
exec node --import tsx scripts/demo.ts "$@"
