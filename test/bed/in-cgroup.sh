#!/bin/sh
# Usage: in-cgroup.sh DIR[:DIR...] COMMAND [ARG...]
# Moves this shell into each cgroup dir, then becomes COMMAND, so that COMMAND
# and everything it forks start inside them (no window outside).
dirs=$1
shift
IFS=:
for dir in $dirs; do echo $$ > "$dir/cgroup.procs" || exit 125; done
unset IFS
exec "$@"
