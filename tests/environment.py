"""Loaded with `-p` (pyproject addopts) before pytest-django reads settings: the
tests keep their database, broker folder and media apart from `make run`, and
each pytest session apart from any other running in the same checkout.

A session's folder is var/test/<pid> (LIGHTBOX_VAR_DIR, unless the caller set
one): its SQLite database, filesystem broker, media, spool, secret key and the
logs of the servers it starts, which inherit the variable. It is removed when
the session passes, kept for its logs when it fails, and removed by the next
session once its pid is gone, as are the folders of killed sessions."""

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SESSIONS_DIR = ROOT / "var" / "test"


def alive(pid):
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def stale(name):
    """A session's folder or database suffix whose pytest is gone: a pid not
    running, or this process's own (left by an earlier process with the same pid)."""
    return name.isdigit() and (int(name) == os.getpid() or not alive(int(name)))


def _remove_stale_sessions():
    if SESSIONS_DIR.is_dir():
        for folder in SESSIONS_DIR.iterdir():
            if stale(folder.name):
                shutil.rmtree(folder, ignore_errors=True)


OWN_VAR_DIR = "LIGHTBOX_VAR_DIR" not in os.environ
if OWN_VAR_DIR:
    _remove_stale_sessions()
    os.environ["LIGHTBOX_VAR_DIR"] = str(SESSIONS_DIR / str(os.getpid()))
VAR_DIR = Path(os.environ["LIGHTBOX_VAR_DIR"])
os.environ.setdefault("MEDIA_ROOT", str(VAR_DIR / "media"))
# Keys of this session's own on a shared Redis: its broker queue (its worker
# takes only its own tasks) and the cache.
OWN_REDIS_PREFIX = "LIGHTBOX_REDIS_PREFIX" not in os.environ
os.environ.setdefault("LIGHTBOX_REDIS_PREFIX", f"test-{os.getpid()}:")
os.environ.setdefault("LIGHTBOX_DISPATCH_DEADLINE", "2")
# A random key of the session's own, made in its folder (as `make run` makes
# one in var/): no key is written in the source.
os.environ.setdefault("LIGHTBOX_SECRET_KEY_CREATE", "1")
# The suite's webhook receivers, image servers and stand-ins listen on
# 127.0.0.1; the network guard (app.core.netguard) refuses loopback otherwise.
# Tests of the guard itself use other loopback addresses (127.0.0.2).
os.environ.setdefault("LIGHTBOX_NETWORK_ALLOWLIST", "127.0.0.1,localhost")

_failed = False


def pytest_sessionfinish(session, exitstatus):
    global _failed
    _failed = exitstatus in (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.INTERRUPTED)


def pytest_unconfigure(config):
    """After every fixture's teardown (servers stopped, test database dropped)."""
    if not OWN_VAR_DIR:
        return
    if _failed and VAR_DIR.exists():
        print(f"\nThe failed session's logs are in {VAR_DIR.relative_to(ROOT)}/", file=sys.stderr)
    else:
        shutil.rmtree(VAR_DIR, ignore_errors=True)
