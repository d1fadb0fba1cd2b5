"""Loaded with `-p` (pyproject addopts) before pytest-django reads settings: the
tests keep their database, broker folder and media apart from `make run`."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LIGHTBOX_VAR_DIR", str(ROOT / "var" / "test"))
os.environ.setdefault("MEDIA_ROOT", str(ROOT / "var" / "test" / "media"))
os.environ.setdefault("LIGHTBOX_DISPATCH_DEADLINE", "2")
