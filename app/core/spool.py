"""A spool on this machine's own disk: bytes kept durably before anything else
(the database, object storage) is asked to take them, so that a file a model
server sends us once is not lost while those are down.

An entry is one file, `<folder>/<name>`: a line of JSON (what to record about
it) and then the bytes. It is written under a temporary name, fsynced and
renamed, so an entry is whole or absent; temporary files start with a dot.
"""

import contextlib
import errno
import json
import os
import threading
import time

# What a full disk answers: no space left, or the user's quota used up.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
TEMP_SUFFIX = ".tmp"


def is_disk_full(exc):
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


def write(folder, name, meta, data):
    """Keep `data` and `meta` (a JSON object) as entry `name`, on disk before
    this returns. Raises OSError (is_disk_full tells a full disk) and then
    leaves nothing behind."""
    os.makedirs(folder, exist_ok=True)
    temp = os.path.join(folder, f".{name}.{os.getpid()}.{threading.get_ident()}{TEMP_SUFFIX}")
    try:
        with open(temp, "xb") as fh:
            fh.write(json.dumps(meta).encode() + b"\n")
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, os.path.join(folder, name))
        _fsync_folder(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _fsync_folder(folder):
    # The rename itself is durable only once the folder is.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(folder, name, with_data=True):
    """(meta, bytes) of entry `name` (bytes None unless `with_data`), or None
    when there is no such entry."""
    try:
        with open(os.path.join(folder, name), "rb") as fh:
            meta = json.loads(fh.readline())
            return meta, fh.read() if with_data else None
    except (FileNotFoundError, NotADirectoryError):
        return None


def names(folder):
    """The names of the whole entries, oldest first."""
    return [name for _, name in sorted(_listing(folder)) if not name.startswith(".")]


def _listing(folder):
    """(mtime, name) of each file in `folder`; one removed meanwhile is left out."""
    found = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                with contextlib.suppress(FileNotFoundError):
                    found.append((entry.stat().st_mtime, entry.name))
    except FileNotFoundError:
        pass
    return found


def remove(folder, name):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(folder, name))


def remove_older_than(folder, age):
    """Remove entries and temporary files older than `age` seconds; their names."""
    cutoff = time.time() - age
    old = sorted(name for mtime, name in _listing(folder) if mtime < cutoff)
    for name in old:
        remove(folder, name)
    return old


def free_bytes(path):
    """Bytes free to this user on the disk that holds `path` (or its nearest
    existing parent)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize
