"""Results: the finished grid points of the batch runner as one tidy table.

:func:`collect` reads every point folder under ``<runs root>/batch`` (``point.json``: notebook,
parameters, status, code; ``metrics.json``; ``run.json``: the run it read) and returns one row per
finished point with

- ``notebook``, ``point`` (folder name), ``run`` (the run's identity) and ``run_dir``;
- ``p.<name>``: the parameters as the grid wrote them (what was asked);
- ``r.<name>``: the run's resolved identity (what it was computed with: every config value, the
  ``profile``, the ``data`` identity, the ``weights``, the upstream runs' identities); tables select
  rows by these, never by the grid's spelling;
- ``code``: the digest of the code the run was made by, and ``stale``: True when that code, or a
  run it was made from, or the point's notebook, has changed since (:func:`wsss_lib.stages.base.expected_code`);
- one column per metric.

:func:`mean_std` aggregates over seeds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from wsss_lib.experiments.points import notebook_digest
from wsss_lib.runs.folders import find_run, runs_root
from wsss_lib.runs.identity import combine
from wsss_lib.stages.base import expected_code
from wsss_lib.util.io import read_json


def collect(root: str | os.PathLike | None = None, notebook: str | None = None,
            include_unfinished: bool = False) -> pd.DataFrame:
    """One row per point folder (finished ones unless ``include_unfinished``)."""
    base = Path(root) if root else runs_root() / "batch"
    rows = []
    for pj in sorted(base.glob("*/point.json")):
        folder = pj.parent
        info = read_json(pj)
        if notebook and info.get("notebook") != notebook:
            continue
        mfile = folder / "metrics.json"
        finished = info.get("status") == "finished" and mfile.exists()
        if not finished and not include_unfinished:
            continue
        row = {"notebook": info.get("notebook"), "point": folder.name, "status": info.get("status"),
               "seconds": info.get("seconds")}
        if (folder / "run.json").exists():
            row.update(_run_facts(folder, info))
        row.update({f"p.{k}": _cell(v) for k, v in info.get("params", {}).items()})
        if finished:
            row.update(read_json(mfile))
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(v):
    """A parameter value as one table cell (lists and mappings as their JSON text)."""
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict, tuple)) else v


def _run_facts(folder: Path, point: dict) -> dict:
    """The run a point read: identity, folder, resolved parameters (``r.``), code and staleness."""

    rj = read_json(folder / "run.json")
    facts = {"run": rj.get("run"), "run_dir": rj.get("run_dir", "")}
    run_dir = Path(facts["run_dir"])
    if not (run_dir / "params.json").exists():

        try:
            run_dir = find_run(facts["run"])  # a moved runs folder: found by identity
        except FileNotFoundError:
            return {**facts, "stale": True}
    info = read_json(run_dir / "params.json")
    facts["run_dir"] = str(run_dir)
    facts["code"] = info.get("code_digest", "")
    facts.update({f"r.{k}": _cell(v) for k, v in info.get("params", {}).items()})
    try:
        fresh_run = facts["code"] == expected_code(run_dir)
        nb = point.get("notebook", "")
        fresh_nb = not point.get("code") or point["code"] == combine(facts["code"], notebook_digest(nb))
    except (FileNotFoundError, KeyError, ValueError):
        fresh_run = fresh_nb = False
    facts["stale"] = not (fresh_run and fresh_nb)
    return facts


def mean_std(df: pd.DataFrame, by: list[str], metrics: list[str], seed_col: str = "p.seed") -> pd.DataFrame:
    """Mean, std (ddof 1; 0 for one seed) and n over seeds of each metric, per group ``by``."""
    missing = [c for c in by + metrics if c not in df.columns]
    if missing:
        raise KeyError(f"columns {missing} are not in the results (have: {sorted(df.columns)})")
    g = df.groupby(by, dropna=False)
    out = {}
    for m in metrics:
        out[(m, "mean")] = g[m].mean()
        out[(m, "std")] = g[m].std(ddof=1).fillna(0.0)
        out[(m, "n")] = g[seed_col].nunique() if seed_col in df.columns else g[m].count()
    return pd.DataFrame(out)


__all__ = ["collect", "mean_std"]
