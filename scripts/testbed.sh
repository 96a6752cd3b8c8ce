#!/bin/sh
# The test bed's CLI for people and benchmarks: npm run testbed -- up|down|list|gc|rootfs
set -eu
cd "$(dirname "$0")/.."
sh scripts/prepare.sh >&2
exec node --import tsx test/bed/cli.ts "$@"
