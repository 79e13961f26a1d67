"""Files that hold a secret (a key, a password, a password's hash): who may own and read them.

One rule for every such file, on both sides: it belongs to the user that reads it (another
user who owns it decides what it says) and group and others may not use it at all (mode 600
or 400), or the secret is as good as shared with everyone on the machine. Pure logic over a
`stat` result, so callers raise their own error, naming the file and the fix.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def owner_name(uid: int) -> str:
    """`name (uid N)` where the system knows the user, else `uid N`."""
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def secret_file_problem(path: str | Path, st: os.stat_result, what: str, euid: int | None = None) -> str | None:
    """Why the secret file `path` (its `stat` in `st`, a `what` such as "uplink key file") must not
    be trusted, with the command that fixes it; None when it may. Not checked off POSIX."""
    if os.name != "posix":
        return None
    euid = os.geteuid() if euid is None else euid
    if st.st_uid != euid:
        return (f"{what} {path} belongs to {owner_name(st.st_uid)}, not to this user ({owner_name(euid)}); "
                f"run: chown $(id -un) {path}  (a service's file: install -o <service user> -m 600, docs/deploy.md)")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (f"{what} {path} is open to other users (mode {stat.S_IMODE(st.st_mode):04o}, owner "
                f"{owner_name(st.st_uid)}); run: chmod 600 {path}")
    return None
