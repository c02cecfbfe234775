#!/usr/bin/env bash
# deploy.sh RELEASE_ID SOURCE_DIR [-- RESTART ARGV...]
#
# A plain deploy to a Capistrano-style layout watched by rollback-watcher (symlink backend):
# copy SOURCE_DIR to $DEPLOY_TO/releases/RELEASE_ID, then, under the watcher's deploy lock,
# re-point `current` atomically and restart; then tell the watcher with `mark deployed`.
# Tested by tests/integrations/test_bash_deploy.py.
#
#   DEPLOY_TO       /srv/shop-api                       (releases/ and current live here)
#   DEPLOY_LOCK     /var/lib/shop-api/deploy.lock       (= deploy_lock: in watcher.yaml)
#   LOCK_WAIT       120                                 (seconds to wait for a rollback in progress)
#   WATCHER_BIN     /opt/rollback-watcher/bin/rollback-watcher
#   WATCHER_CONFIG  /etc/rollback-watcher/watcher.yaml
#
# Exit status: 0 deployed; 2 usage; 3 the release exists already; 75 the lock was not free
# within LOCK_WAIT (a rollback is under way: nothing was switched).
set -euo pipefail

DEPLOY_TO=${DEPLOY_TO:-/srv/shop-api}
DEPLOY_LOCK=${DEPLOY_LOCK:-/var/lib/shop-api/deploy.lock}
LOCK_WAIT=${LOCK_WAIT:-120}
WATCHER_BIN=${WATCHER_BIN:-/opt/rollback-watcher/bin/rollback-watcher}
WATCHER_CONFIG=${WATCHER_CONFIG:-/etc/rollback-watcher/watcher.yaml}

die() { echo "deploy.sh: $2" >&2; exit "$1"; }

[ $# -ge 2 ] || die 2 "usage: deploy.sh RELEASE_ID SOURCE_DIR [-- RESTART ARGV...]"
release=$1 src=$2
shift 2
[ "${1:-}" = "--" ] && shift
# The watcher accepts release ids of these characters only; a slash would leave releases/.
[[ $release =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] || die 2 "bad release id: $release"
[ -d "$src" ] || die 2 "no such directory: $src"

releases=$DEPLOY_TO/releases
target=$releases/$release
[ -e "$target" ] && die 3 "$target exists already: release ids are never reused"
mkdir -p "$releases"

# Stage beside releases/, never inside: the watcher must not see a half-copied release.
staging=$DEPLOY_TO/.staging-$release
rm -rf "$staging"
cp -a "$src/." "$staging/"
mv -T "$staging" "$target"

# The switch and the restart hold the deploy lock: the watcher never rolls back in the middle of
# them, and this waits while the watcher is switching (it holds the lock for its switch and its
# verification).
exec 9>>"$DEPLOY_LOCK"
flock -w "$LOCK_WAIT" 9 || die 75 "the deploy lock $DEPLOY_LOCK stayed busy for ${LOCK_WAIT}s (a rollback?): nothing switched"
ln -sfn "releases/$release" "$DEPLOY_TO/.current.tmp"
mv -T "$DEPLOY_TO/.current.tmp" "$DEPLOY_TO/current"    # rename(2): atomic, never `ln -sfn current`
if [ $# -gt 0 ]; then
    "$@"
fi
flock -u 9
exec 9>&-

# The watcher would see the new `current` at its next poll; this opens the watch window now.
# A watcher that is down must not fail a deploy that is done: say so and go on.
"$WATCHER_BIN" mark deployed "$release" --config "$WATCHER_CONFIG" \
    || echo "deploy.sh: warning: rollback-watcher did not take the deploy mark; it will see $release at its next poll" >&2
echo "deployed $release"
