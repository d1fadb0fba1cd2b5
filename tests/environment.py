"""Loaded with `-p` (pyproject addopts) before pytest-django reads settings: the
tests keep their database, broker folder and media apart from `make run`."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LIGHTBOX_VAR_DIR", str(ROOT / "var" / "test"))
os.environ.setdefault("MEDIA_ROOT", str(ROOT / "var" / "test" / "media"))
os.environ.setdefault("LIGHTBOX_DISPATCH_DEADLINE", "2")
# A random key of the suite's own, made once in var/test (as `make run` makes
# one in var/): no key is written in the source.
os.environ.setdefault("LIGHTBOX_SECRET_KEY_CREATE", "1")
# The suite's webhook receivers, image servers and stand-ins listen on
# 127.0.0.1; the network guard (app.core.netguard) refuses loopback otherwise.
# Tests of the guard itself use other loopback addresses (127.0.0.2).
os.environ.setdefault("LIGHTBOX_NETWORK_ALLOWLIST", "127.0.0.1,localhost")
