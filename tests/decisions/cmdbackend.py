"""The user's own deploy scripts, for the `command` backend in the decision scenarios: the same
Capistrano layout as the symlink backend (releases/<id>, `current`), driven through argv.

    python cmdbackend.py current  STAGE_ROOT
    python cmdbackend.py releases STAGE_ROOT    newest first, by the release dir's creation (mtime)
    python cmdbackend.py switch   STAGE_ROOT ID re-point current, reload the app (support/appctl.py)

Two switches in STAGE_ROOT let a scenario reproduce what real scripts do:
    slow_releases       `releases` touches `listing_started`, then takes that many seconds
    fail_releases_once  `releases` fails once (a transient error: NFS hiccup, API 502), and
                        deletes the file
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    what, root = argv[0], Path(argv[1])
    if what == "current":
        print(Path(os.readlink(root / "current")).name)
        return 0
    if what == "releases":
        fail = root / "fail_releases_once"
        if fail.exists():
            fail.unlink()
            print("releases: cannot reach the artifact store (502)", file=sys.stderr)
            return 1
        slow = root / "slow_releases"
        if slow.exists():
            (root / "listing_started").touch()
            time.sleep(float(slow.read_text().strip() or "4"))
        dirs = sorted((d for d in (root / "releases").iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime,
                      reverse=True)
        print("\n".join(d.name for d in dirs))
        return 0
    if what == "switch":
        target = argv[2]
        tmp = root / ".current.cmd"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(f"releases/{target}", tmp)
        os.replace(tmp, root / "current")
        return subprocess.run([sys.executable, str(HERE.parent / "support" / "appctl.py"), "reload", str(root)], timeout=60).returncode
    print(f"unknown command {what}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
