#!/bin/sh
# The image's entry point: runs `harness` as the owner of /work/results, so
# reports land in a mounted host folder as the user who owns it (whoever
# runs `docker-compose up` or `docker run -v "$PWD/results:/work/results"`),
# never as root and never denied. Without a mount the folder is the image's
# own, owned by the unprivileged `bench` user (uid 10001).
set -eu
if [ "$(id -u)" = 0 ]; then
  owner=$(stat -c %u /work/results)
  group=$(stat -c %g /work/results)
  if [ "$owner" = 0 ]; then
    # A folder root owns (e.g. one Docker created for a missing mount):
    # write as bench into it only if it may; else as its owner, root.
    owner=10001 group=10001
    setpriv --reuid=10001 --regid=10001 --clear-groups test -w /work/results || owner=0 group=0
  fi
  exec setpriv --reuid="$owner" --regid="$group" --clear-groups -- harness "$@"
fi
exec harness "$@"
