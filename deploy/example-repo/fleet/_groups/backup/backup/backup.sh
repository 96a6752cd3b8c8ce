#!/bin/sh
# Keeps the last 7 daily archives of /etc in /var/backups/etc.
set -eu
dest=/var/backups/etc
mkdir -p "$dest"
tar -czf "$dest/etc-$(date +%Y%m%d).tar.gz" -C / etc
ls -1t "$dest"/etc-*.tar.gz | tail -n +8 | xargs -r rm -f --
