"""Where the package and the repository are (the checkout an editable install points to)."""

from __future__ import annotations

from pathlib import Path

#: the ``wsss_lib`` package folder
PACKAGE = Path(__file__).resolve().parents[1]
#: the repository root (notebooks/, course/, reports/ live there)
REPO = PACKAGE.parent
