"""Imports point one way: every module of ``wsss_lib`` sits in a layer package and imports only from
its own layer or the ones below (imports inside functions count too: they are dependencies all the
same). A module outside the layer packages (at the package root) is refused; an import against the
order fails, naming the module, the import and both layers."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "wsss_lib"

#: bottom to top, by top-level package; a module may import from its own layer and the layers below
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("utilities", ("util",)),
    ("data", ("data",)),
    ("formulas and measures", ("formulas",)),
    ("models", ("models",)),
    ("run identity and folders", ("runs",)),
    ("engine and figures", ("engine", "figures")),
    ("stages", ("stages",)),
    ("reporting", ("reporting",)),
    ("experiments", ("experiments",)),
    ("entry points: speed benchmarks and the course", ("speed", "course")),
)


def _name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, package_dir: Path = PACKAGE) -> set[str]:
    """The ``wsss_lib`` modules a file imports (relative or absolute, anywhere in the file), as
    names under the package ("" for the package itself); a name imported from a package counts as
    its submodule when one exists."""
    name = _name(path, package_dir)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "wsss_lib" or node.module.startswith("wsss_lib.")):
                target = node.module.removeprefix("wsss_lib").lstrip(".")
            else:
                continue
            found.add(target)
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                where = package_dir / sub.replace(".", "/")
                if where.with_suffix(".py").exists() or where.is_dir():
                    found.add(sub)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("wsss_lib").lstrip(".") for a in node.names
                      if a.name == "wsss_lib" or a.name.startswith("wsss_lib.")}
    return found - {name}


def violations(layers=LAYERS, package_dir: Path = PACKAGE) -> list[str]:
    level_of_package = {p: k for k, (_, pkgs) in enumerate(layers) for p in pkgs}
    level = {}
    for f in package_dir.rglob("*.py"):
        name = _name(f, package_dir)
        if name and name.split(".")[0] in level_of_package:
            level[name] = level_of_package[name.split(".")[0]]
    out = []
    for f in sorted(package_dir.rglob("*.py")):
        name = _name(f, package_dir)
        if not name:
            continue  # the package's own __init__ (its version) is below everything
        if name not in level:
            out.append(f"wsss_lib.{name}: in no layer package (put it in one, or declare its package in "
                       "tests/test_layers.py LAYERS)")
            continue
        for target in sorted(imports_of(f, package_dir)):
            if target and target in level and level[target] > level[name]:
                out.append(f"wsss_lib.{name} ({layers[level[name]][0]}) imports wsss_lib.{target} "
                           f"({layers[level[target]][0]}, a layer above)")
    return out


def test_imports_point_down_the_layers():
    assert violations() == []


def test_the_check_sees_an_upward_import_even_inside_a_function(tmp_path):
    pkg = tmp_path / "wsss_lib"
    for sub in ("util", "formulas", "runs"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "util" / "io.py").write_text("import json\n")
    (pkg / "runs" / "folders.py").write_text("from ..util.io import json\n")
    (pkg / "formulas" / "attention.py").write_text("def f():\n    from wsss_lib.runs.folders import find_run\n"
                                                    "    return find_run\n")
    layers = (("utilities", ("util",)), ("formulas", ("formulas",)), ("runs", ("runs",)))
    assert violations(layers, pkg) == ["wsss_lib.formulas.attention (formulas) imports wsss_lib.runs.folders "
                                       "(runs, a layer above)"]
    (pkg / "loose.py").write_text("")
    assert any(v.startswith("wsss_lib.loose: in no layer package") for v in violations(layers, pkg))


# -- circles inside a layer, and imports inside functions ---------------------------------------------------
def import_graph(package_dir: Path = PACKAGE) -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports (anywhere in the file)."""
    names = {_name(f, package_dir) for f in package_dir.rglob("*.py")}
    return {_name(f, package_dir): {t for t in imports_of(f, package_dir) if t in names}
            for f in package_dir.rglob("*.py")}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a circle of imports."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


#: the marker a function-level import carries, with its reason (heavy or optional package, or an entry
#: point that must start on a bare GPU node without the package's heavy imports)
LAZY_MARK = "# lazy:"


def unmarked_function_imports(package_dir: Path = PACKAGE) -> list[str]:
    """Imports inside functions without a ``# lazy: <reason>`` comment on their line."""
    out = []
    for f in sorted(package_dir.rglob("*.py")):
        lines = f.read_text(encoding="utf-8").split("\n")
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    text = " ".join(lines[node.lineno - 1:node.end_lineno])
                    mark = text.partition(LAZY_MARK)[2].strip()
                    if not mark:
                        out.append(f"{f.relative_to(package_dir.parent)}:{node.lineno}: {text.strip()}")
    return out


def test_no_import_circle_inside_the_package():
    assert circles(import_graph()) == []


def test_every_import_inside_a_function_says_why():
    assert unmarked_function_imports() == []


def test_the_checks_see_a_circle_and_an_unmarked_function_import(tmp_path):
    pkg = tmp_path / "wsss_lib"
    (pkg / "data").mkdir(parents=True)
    for f in ("__init__.py", "data/__init__.py"):
        (pkg / f).write_text("")
    (pkg / "data" / "a.py").write_text("from wsss_lib.data.b import g\n")
    (pkg / "data" / "b.py").write_text("def g():\n    from wsss_lib.data.a import f\n    return f\n")
    (pkg / "data" / "c.py").write_text("def h():\n    import yaml  # lazy: optional\n    return yaml\n")
    assert circles(import_graph(pkg)) == [["data.a", "data.b"]]
    assert unmarked_function_imports(pkg) == ["wsss_lib/data/b.py:2: from wsss_lib.data.a import f"]
