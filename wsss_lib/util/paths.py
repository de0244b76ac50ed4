"""Where the package and the repository are (the checkout an editable install points to)."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

#: the ``wsss_lib`` package folder
PACKAGE = Path(__file__).resolve().parents[1]
#: the repository root (notebooks/, course/, reports/ live there)
REPO = PACKAGE.parent


def default_cache_dir() -> Path:
    """Where generated data, pretrained weights and digests are cached: ``$WSSS_CACHE`` if set, else
    ``~/.cache/wsss-notebooks``."""
    return Path(os.environ.get("WSSS_CACHE") or Path.home() / ".cache" / "wsss-notebooks")


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The short hash of the checkout's commit, with ``+changes`` when the library has uncommitted
    changes; ``"unknown"`` outside a git checkout (a tables' provenance line names it)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "wsss_lib", "notebooks"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + ("+changes" if dirty else "")) if head else "unknown"
