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
