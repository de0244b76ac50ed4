"""Grid files: a notebook, the parameters every point shares, and the axes (YAML or JSON; the format is in :mod:`wsss_lib.experiments.batch`), expanded into points."""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from wsss_lib.util.paths import REPO


class GridError(ValueError):
    """A grid file or grid argument that does not describe a grid (names the file and key)."""


def notebooks_dir() -> Path:
    return REPO / "notebooks"


@dataclass
class Grid:
    """One notebook, the parameters every point shares, and the axes to vary."""

    notebook: str
    params: dict = field(default_factory=dict)
    axes: dict = field(default_factory=dict)
    zip: list = field(default_factory=list)  # groups of axis names that vary together
    name: str = ""

    def __post_init__(self) -> None:
        where = f"grid {self.name or self.notebook!r}"
        if not isinstance(self.params, dict) or not isinstance(self.axes, dict):
            raise GridError(f"{where}: 'params' and 'grid' must be mappings of parameter name to value(s)")
        for k, v in self.axes.items():
            if not isinstance(v, list) or not v:
                raise GridError(f"{where}: axis {k!r} must be a non-empty list of values, got {v!r}")
        for group in self.zip:
            if not isinstance(group, list) or len(group) < 2:
                raise GridError(f"{where}: each 'zip' entry must list two or more axis names, got {group!r}")
            missing = [a for a in group if a not in self.axes]
            if missing:
                raise GridError(f"{where}: zipped axis {missing[0]!r} is not in 'grid' (axes: {sorted(self.axes)})")
            lengths = {a: len(self.axes[a]) for a in group}
            if len(set(lengths.values())) > 1:
                raise GridError(f"{where}: zipped axes must have equal lengths, got {lengths}")
        zipped = [a for g in self.zip for a in g]
        if len(zipped) != len(set(zipped)):
            raise GridError(f"{where}: an axis appears in two 'zip' groups: {self.zip}")
        overlap = sorted(set(self.params) & set(self.axes))
        if overlap:
            raise GridError(f"{where}: {overlap[0]!r} is both a fixed parameter and an axis")
        if not (notebooks_dir() / self.notebook).exists() and not Path(self.notebook).exists():
            raise GridError(f"{where}: notebook {self.notebook!r} not found in {notebooks_dir()}")

    def points(self) -> list[dict]:
        """Every point's parameters: the product over the axes, zipped groups moving together."""
        zipped = {a for g in self.zip for a in g}
        units: list[list[dict]] = [[dict(zip(g, vals)) for vals in zip(*(self.axes[a] for a in g))] for g in self.zip]
        units += [[{a: v} for v in self.axes[a]] for a in self.axes if a not in zipped]
        out = []
        for combo in itertools.product(*units) if units else [()]:
            p = dict(self.params)
            for part in combo:
                p.update(part)
            out.append(p)
        return out


def load_grids(path: str | os.PathLike) -> list[Grid]:
    """The grids of a YAML or JSON grid file (errors name the file and the key)."""

    path = Path(path)
    if not path.exists():
        raise GridError(f"grid file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise GridError(f"grid file {path} is not valid {'YAML' if path.suffix != '.json' else 'JSON'}: {e}") from None
    entries = doc.get("grids") if isinstance(doc, dict) and "grids" in doc else [doc]
    grids = []
    for i, g in enumerate(entries):
        if not isinstance(g, dict) or "notebook" not in g:
            raise GridError(f"grid file {path}: entry {i} needs a 'notebook' key (e.g. notebook: 04_train_amr.ipynb)")
        unknown = sorted(set(g) - {"name", "notebook", "params", "grid", "zip"})
        if unknown:
            raise GridError(f"grid file {path}: unknown key {unknown[0]!r} in entry {i} "
                            "(known: name, notebook, params, grid, zip)")
        try:
            grids.append(Grid(g["notebook"], dict(g.get("params") or {}), dict(g.get("grid") or {}),
                              list(g.get("zip") or []), str(g.get("name") or path.stem)))
        except GridError as e:
            raise GridError(f"grid file {path}: {e}") from None
    return grids


def parse_value(text: str):
    """A command-line value as YAML reads it: ``0.5`` a number, ``true`` a bool, ``AMR`` a string."""

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def notebook_path(notebook: str) -> Path:
    return notebooks_dir() / notebook if (notebooks_dir() / notebook).exists() else Path(notebook)
