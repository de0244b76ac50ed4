"""The result tables of the README and of the pages of ``docs/`` are the rendered ones: each block
between

    <!-- table: reports/<name>.md -->
    ...
    <!-- /table -->

is the content of that file, copied by :func:`sync_docs` (the main job calls it after rendering the
full profile's reports) into every page :func:`synced_pages` finds, and compared by :func:`page_blocks`
in the tests, so no page and ``reports/`` can disagree. The README holds the headline tables,
``docs/results.md`` all of them.
"""

from __future__ import annotations

import re
from pathlib import Path

from wsss_lib.util.io import write_text

BLOCK = re.compile(r"(<!-- table: (?P<file>[^ ]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)

#: the pages that may hold table blocks, relative to the repository: the README and the docs pages
PAGE_GLOBS = ("README.md", "docs/*.md")


def page_blocks(page: str | Path) -> dict[str, str]:
    """``{file: block text}`` of every table block of a page."""
    return {m["file"]: m["body"] for m in BLOCK.finditer(Path(page).read_text(encoding="utf-8"))}


#: the README's blocks (the name the tests and older callers use)
readme_blocks = page_blocks


def synced_pages(repo: str | Path) -> list[Path]:
    """The README and every page of ``docs/`` that holds at least one table block."""
    repo = Path(repo)
    pages = [p for g in PAGE_GLOBS for p in sorted(repo.glob(g)) if p.is_file()]
    return [p for p in pages if p.name == "README.md" or BLOCK.search(p.read_text(encoding="utf-8"))]


def sync_page(page: str | Path, repo: str | Path) -> list[str]:
    """Copy every referenced rendered table into its block of ``page``; returns the files copied
    (a block whose file does not exist is left as it is)."""
    page, repo = Path(page), Path(repo)
    copied = []

    def fill(m: re.Match) -> str:
        f = repo / m["file"]
        if not f.exists():
            return m.group(0)
        copied.append(m["file"])
        body = f.read_text(encoding="utf-8")
        return m.group(1) + body + ("" if body.endswith("\n") else "\n") + m.group(4)

    text = page.read_text(encoding="utf-8")
    new = BLOCK.sub(fill, text)
    if new != text:
        write_text(page, new)
    return copied


#: the README's sync (the name older callers use)
sync_readme = sync_page


def sync_docs(repo: str | Path) -> dict[str, list[str]]:
    """Sync every page of :func:`synced_pages`; returns ``{page (relative): files copied}``."""
    repo = Path(repo)
    return {str(p.relative_to(repo)): sync_page(p, repo) for p in synced_pages(repo)}


__all__ = ["BLOCK", "PAGE_GLOBS", "page_blocks", "readme_blocks", "sync_docs", "sync_page", "sync_readme",
           "synced_pages"]
