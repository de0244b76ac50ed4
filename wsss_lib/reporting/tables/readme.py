"""The README's result tables are the rendered ones: each block between

    <!-- table: reports/<name>.md -->
    ...
    <!-- /table -->

is the content of that file, copied by :func:`sync_readme` (the main job calls it after rendering
the full profile's reports) and compared by :func:`readme_blocks` in the tests, so the README and
``reports/`` cannot disagree.
"""

from __future__ import annotations

import re
from pathlib import Path

from wsss_lib.util.io import write_text

BLOCK = re.compile(r"(<!-- table: (?P<file>[^ ]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def readme_blocks(readme: str | Path) -> dict[str, str]:
    """``{file: block text}`` of every table block of the README."""
    return {m["file"]: m["body"] for m in BLOCK.finditer(Path(readme).read_text())}


def sync_readme(readme: str | Path, repo: str | Path) -> list[str]:
    """Copy every referenced rendered table into its README block; returns the files copied
    (a block whose file does not exist is left as it is)."""
    readme, repo = Path(readme), Path(repo)
    copied = []

    def fill(m: re.Match) -> str:
        f = repo / m["file"]
        if not f.exists():
            return m.group(0)
        copied.append(m["file"])
        body = f.read_text()
        return m.group(1) + body + ("" if body.endswith("\n") else "\n") + m.group(4)

    text = BLOCK.sub(fill, readme.read_text())
    write_text(readme, text)
    return copied


__all__ = ["readme_blocks", "sync_readme"]
