#!/bin/sh
# Install rollback-watcher on a host (docs/deployment.md):
#   $PREFIX            a virtualenv with the package and its console script  (/opt/rollback-watcher)
#   $UNITDIR           the systemd unit, its ExecStart pointing at $PREFIX/bin/rollback-watcher
#                                                                         (/etc/systemd/system)
#   $CONFDIR           an example watcher.yaml, never overwriting one that exists
#                                                                         (/etc/rollback-watcher)
# Every path can be overridden, so the tests install into a temp dir. Creating the system user
# and enabling the unit are left to the operator (printed at the end): they need root. Site
# changes belong in a drop-in: this script rewrites the unit on every run.
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/opt/rollback-watcher}
UNITDIR=${UNITDIR:-/etc/systemd/system}
CONFDIR=${CONFDIR:-/etc/rollback-watcher}
PYTHON=${PYTHON:-python3}
UNIT=rollback-watcher.service

# A second run keeps the virtualenv and upgrades the package in it.
[ -x "$PREFIX/bin/python" ] || "$PYTHON" -m venv "$PREFIX"
# PIP_ARGS, e.g. "--no-index --find-links DIR" for a host without access to PyPI.
"$PREFIX/bin/pip" install --quiet --disable-pip-version-check ${PIP_ARGS:-} "$SRC"
"$PREFIX/bin/rollback-watcher" --help >/dev/null

mkdir -p "$UNITDIR" "$CONFDIR" "$PREFIX/share/doc"
# The unit names /opt/rollback-watcher; another PREFIX is written into the installed copy.
sed "s#/opt/rollback-watcher/#$PREFIX/#g" "$SRC/systemd/$UNIT" > "$UNITDIR/$UNIT.tmp"
mv "$UNITDIR/$UNIT.tmp" "$UNITDIR/$UNIT"
cp "$SRC/docs/deployment.md" "$PREFIX/share/doc/deployment.md"
# The rule packs, where `rollback-watcher init` looks for them (actions/init.py: pack_dir).
mkdir -p "$PREFIX/share/rollback-watcher/rules"
rm -rf "$PREFIX/share/rollback-watcher/rules/packs"
cp -R "$SRC/rules/packs" "$PREFIX/share/rollback-watcher/rules/packs"
# The polkit rule grants privileges to name units: it is an example to edit, never installed
# live here (docs/deployment.md section 4 says where it goes).
cp "$SRC/systemd/50-rollback-watcher.rules" "$PREFIX/share/doc/50-rollback-watcher.rules"
if [ -e "$CONFDIR/watcher.yaml" ]; then
    echo "kept the existing $CONFDIR/watcher.yaml"
else
    cp "$SRC/examples/watcher.yaml" "$CONFDIR/watcher.yaml"
    mkdir -p "$CONFDIR/rules"
    cp "$SRC/rules/default.yaml" "$CONFDIR/rules/default.yaml"
    sed -i "s#^rules: .*#rules: [rules/*.yaml]              \# globs, relative to this file#" "$CONFDIR/watcher.yaml"
    echo "wrote an example $CONFDIR/watcher.yaml: edit it, then run: $PREFIX/bin/rollback-watcher check --config $CONFDIR/watcher.yaml"
    echo "  (or have one written from what Prometheus scrapes on this host: move the example away, then"
    echo "  $PREFIX/bin/rollback-watcher init --config $CONFDIR/watcher.yaml --prometheus URL)"
fi
echo "installed $PREFIX/bin/rollback-watcher and $UNITDIR/$UNIT"
echo "next (as root): useradd --system --home-dir /var/lib/rollback-watcher --shell /usr/sbin/nologin rollback-watcher;"
echo "  systemctl edit rollback-watcher (a drop-in: ReadWritePaths=, SupplementaryGroups=; the unit itself is"
echo "  rewritten by the next install); systemctl daemon-reload; systemctl enable --now rollback-watcher"
