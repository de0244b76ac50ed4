"""The documentation names what exists: every module, notebook, grid and test file the README and the
pages of ``docs/`` name in code, every relative link they hold, and every module of ``wsss_lib`` in the
layout tables; the README stays a front door (at most 250 lines)."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "wsss_lib"
PAGES = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
README_MAX_LINES = 250

#: files the worked example of docs/contributing.md tells a contributor to create (they do not exist)
EXAMPLE_NEW_FILES = {"wsss_lib/formulas/erasing.py", "wsss_lib/stages/erasing.py", "notebooks/08_erasing.ipynb",
                     "notebooks/grids/erasing.yaml"}

#: files of the official repositories the docs quote (not files of this suite)
OFFICIAL_FILES = {"res.py"}

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
SPAN = re.compile(r"`([^`]+)`")  # a code span may run over a line break
#: a relative path of a file the suite holds: a module, a notebook, a grid file
PATH = re.compile(r"(?<![\w/.~-])((?:[\w.-]+/)*[\w-]+\.(?:py|ipynb|ya?ml))(?![\w/])")
#: a dotted name under the package: a module, or a module and names inside it
DOTTED = re.compile(r"(?<![\w.])(wsss_lib(?:\.\w+)+)")
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")


def _code(text: str) -> list[str]:
    """The code of a page: its fenced blocks and its inline code spans."""
    blocks = FENCE.findall(text)
    return blocks + SPAN.findall(FENCE.sub("", text))


def named_paths(text: str) -> set[str]:
    found = set()
    for code in _code(text):
        for m in PATH.finditer(code):
            p = m[1]
            if p.startswith("runs/") or "..." in p or p.startswith("."):
                continue  # a run folder's output, an elided path
            found.add(p)
    return found


def named_modules(text: str) -> set[str]:
    return {m[1] for code in _code(text) for m in DOTTED.finditer(code)}


def path_exists(p: str) -> bool:
    """``p`` relative to the repository, to ``wsss_lib/``, or (a bare notebook or grid file name) to
    ``notebooks/`` or ``notebooks/grids/``."""
    bases = [REPO, PACKAGE]
    if p.endswith(".ipynb"):
        bases.append(REPO / "notebooks")
    if p.endswith((".yaml", ".yml")):
        bases += [REPO / "notebooks", REPO / "notebooks" / "grids"]
    return any((b / p).is_file() for b in bases)


def _has(obj, name: str) -> bool:
    if hasattr(obj, name):
        return True
    # a dataclass field without a default, or an annotated class attribute
    return isinstance(obj, type) and (name in getattr(obj, "__dataclass_fields__", {})
                                      or any(name in getattr(c, "__annotations__", {}) for c in obj.__mro__))


def module_missing(dotted: str) -> str:
    """Why ``dotted`` (a module, or a module and attributes inside it) does not exist; "" when it does."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        rel = Path(*parts[1:i])
        if i == 1 or (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel).is_dir():
            break
    module = ".".join(parts[:i])
    obj = importlib.import_module(module)
    for j, name in enumerate(parts[i:], start=i):
        if not _has(obj, name):
            return f"{'.'.join(parts[:j])} has no {name!r}"
        obj = getattr(obj, name, None)
        if obj is None:  # a field without a class-level value: nothing further to look into
            return "" if j == len(parts) - 1 else f"{'.'.join(parts[:j + 1])} cannot be looked into"
    return ""


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_path_the_docs_name_exists(page):
    text = page.read_text(encoding="utf-8")
    missing = sorted(p for p in named_paths(text) - EXAMPLE_NEW_FILES - OFFICIAL_FILES if not path_exists(p))
    assert not missing, f"{page_id(page)} names files that do not exist: {', '.join(missing)}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_module_the_docs_name_exists(page):
    text = page.read_text(encoding="utf-8")
    problems = sorted(f"{d} ({why})" for d in named_modules(text) if (why := module_missing(d)))
    assert not problems, f"{page_id(page)} names modules or names that do not exist: {'; '.join(problems)}"


def test_the_checks_catch_a_wrong_name():
    text = ("`wsss_lib/engine/loop.py`, `engine/loop.py`, `notebooks/grids/amr_xi.yaml`, `04_train_amr.ipynb`, "
            "`wsss_lib.models.weights.Weights.origin`, `wsss_lib.stages.base.Stage.plan`\n"
            "```bash\npython -m wsss_lib.experiments.batch notebooks/grids/smoke.yaml\n```\n")
    assert all(path_exists(p) for p in named_paths(text)) and len(named_paths(text)) == 5
    assert not any(module_missing(d) for d in named_modules(text))
    assert not path_exists("engine/loops.py") and not path_exists("notebooks/grids/nothing.yaml")
    assert module_missing("wsss_lib.experiments.batches") and module_missing("wsss_lib.stages.base.Stage.planned")
    assert named_paths("`/data/x.py` `runs/voc-oaa.ipynb` `course/.../x.ipynb`") == set()


def _links(text: str) -> list[str]:
    return LINK.findall(FENCE.sub("", SPAN.sub("", text)))


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return s.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            s = _slug(m[1])
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return out


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_points_at_a_file(page):
    broken = []
    for link in _links(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", link):
            continue  # http(s), mailto
        target, _, anchor = link.partition("#")
        f = (page.parent / target).resolve() if target else page
        if not f.exists():
            broken.append(link)
        elif anchor and f.suffix == ".md" and anchor not in anchors(f):
            broken.append(f"{link} (no such heading)")
    assert not broken, f"{page_id(page)} links to what does not exist: {', '.join(broken)}"


def test_the_readme_is_a_front_door():
    n = len((REPO / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}: move reference material to docs/)"


def _layout_rows(page: Path, heading: str) -> dict[str, set[str]]:
    """``{package: modules}`` of the layout table under ``heading``: rows ``| `pkg/` | `mod`, ... |``."""
    text = page.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    rows: dict[str, set[str]] = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*`(\w+)/`\s*\|([^|]*)\|", line)
        if m:
            rows.setdefault(m[1], set()).update(SPAN.findall(m[2]))
    return rows


def library_modules() -> dict[str, set[str]]:
    """``{package: modules}`` of ``wsss_lib`` (``tables/core`` for a module of a subpackage)."""
    out: dict[str, set[str]] = {}
    for f in PACKAGE.rglob("*.py"):
        rel = f.relative_to(PACKAGE)
        if len(rel.parts) < 2 or f.name == "__init__.py":
            continue
        out.setdefault(rel.parts[0], set()).add("/".join(rel.with_suffix("").parts[1:]))
    return out


@pytest.mark.parametrize("page, heading", [("README.md", "## Library layout"),
                                           ("docs/contributing.md", "## Library layout")])
def test_the_layout_tables_list_every_module(page, heading):
    rows = _layout_rows(REPO / page, heading)
    lib = library_modules()
    missing = sorted(f"{p}/{m}" for p, mods in lib.items() for m in mods - rows.get(p, set()))
    extra = sorted(f"{p}/{m}" for p, mods in rows.items() for m in mods - lib.get(p, set()))
    assert not missing, f"{page}'s layout table misses modules: {', '.join(missing)}"
    assert not extra, f"{page}'s layout table names modules that do not exist: {', '.join(extra)}"
