"""What a result was computed with, as digests: the data's content, a folder of maps, the code.

- :func:`data_identity`: a VOC-layout folder (the generated benchmark or real VOC) is identified by
  its split lists and the bytes of every image and mask they name, never by its path or by a digest
  recorded beside it. File digests are remembered by each file's stat
  (:func:`wsss_lib.util.io.file_digests_cached`), so the second look at VOC costs seconds.
- :func:`folder_identity`: the same for a folder of per-image files (saliency maps).
- :func:`code_digest`: the digest of the library modules a module depends on (its imports, followed
  through the package, including the imports inside functions), so a run records the code it was
  made by and a change to, say, the report pages does not make a trained run stale.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
from pathlib import Path

from wsss_lib.data.voc import _read_id_list, resolve_voc_root
from wsss_lib.util.io import file_digests_cached
from wsss_lib.util.paths import PACKAGE, default_cache_dir


def _digest_cache_file(root: Path) -> Path:

    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return default_cache_dir() / "digests" / f"{key}.json"


def files_digest(root: Path, files: list[Path]) -> str:
    """SHA-256 over the (path relative to ``root``, content digest) pairs of ``files``."""
    digests = file_digests_cached(files, _digest_cache_file(root))
    h = hashlib.sha256()
    for f, d in sorted(zip((str(f.relative_to(root)) for f in files), digests)):
        h.update(f"{f}\0{d}\n".encode())
    return h.hexdigest()


def data_files(root: str | os.PathLike) -> tuple[Path, list[Path]]:
    """The VOC folder at or under ``root`` and the files its identity is made of: every list of
    ``ImageSets/Segmentation``, ``classes.txt`` (the generated benchmark's class names), and the
    image and masks of every id those lists name (``SegmentationClass``, ``SegmentationClassAug``)."""

    voc = resolve_voc_root(root)
    lists = sorted((voc / "ImageSets" / "Segmentation").glob("*.txt"))
    ids = sorted({i for f in lists for i in _read_id_list(f)})
    files = list(lists) + [p for p in (voc / "classes.txt",) if p.is_file()]
    for iid in ids:
        for folder, ext in (("JPEGImages", "jpg"), ("SegmentationClass", "png"), ("SegmentationClassAug", "png")):
            p = voc / folder / f"{iid}.{ext}"
            if p.is_file():
                files.append(p)
    return voc, files


def data_identity(root: str | os.PathLike) -> str:
    """``embedded:<digest>`` (the generated benchmark) or ``voc:<digest>`` of the folder's content
    (:func:`data_files`): a copy elsewhere has the same identity, an edited mask another one."""
    voc, files = data_files(root)
    kind = "embedded" if (voc / "benchmark.json").exists() else "voc"
    return f"{kind}:{files_digest(voc, files)[:16]}"


def folder_identity(folder: str | os.PathLike, names: list[str]) -> str:
    """The digest of the files ``names`` of ``folder`` (e.g. one saliency map per training image)."""
    folder = Path(folder)
    return files_digest(folder, [folder / n for n in names])[:16]


# -- code ---------------------------------------------------------------------------------------------
def _module_file(name: str) -> Path | None:
    """The file of module ``wsss_lib.a.b`` (``a/b.py`` or ``a/b/__init__.py``), if it is ours."""
    parts = name.split(".")
    if parts[0] != PACKAGE.name:
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [PACKAGE.name, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The package modules ``path`` imports (anywhere in the file, functions included)."""
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in out if _module_file(m) is not None}


@functools.lru_cache(maxsize=None)
def module_closure(module: str) -> tuple[Path, ...]:
    """The files of ``module`` and of every package module it imports, transitively (packages'
    ``__init__`` files included, as Python runs them)."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        f = _module_file(name)
        if f is None:
            continue
        seen[name] = f
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(2, len(parts)))  # parent packages
        todo.extend(_imports(f))
    return tuple(sorted(set(seen.values())))


def code_text(source: str) -> str:
    """What of a Python source is code: its syntax tree without docstrings, dumped (comments, blank
    lines, formatting and docstrings are not in it, so editing them changes no digest). A source
    that does not parse is taken as it is."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


@functools.lru_cache(maxsize=None)
def code_digest(module: str) -> str:
    """SHA-256 (12 hex digits) of the code (:func:`code_text`: no comments, no docstrings) of the
    closure of ``module`` (:func:`module_closure`)."""
    h = hashlib.sha256()
    for f in module_closure(module):
        h.update(str(f.relative_to(PACKAGE)).encode())
        h.update(code_text(f.read_text(encoding="utf-8")).encode())
    return h.hexdigest()[:12]


def combine(*parts: str) -> str:
    """One digest of several (a run's own code and its upstream runs' codes)."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


__all__ = ["code_digest", "code_text", "combine", "data_files", "data_identity", "files_digest", "folder_identity",
           "module_closure"]
