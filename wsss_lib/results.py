"""Results: the finished grid points of the batch runner as one tidy table.

:func:`collect` reads every point folder under ``<runs root>/batch`` (``point.json``: notebook,
parameters, status; ``metrics.json``; ``run.json``: the run it read) and returns one row per
finished point: ``notebook``, ``point`` (folder name), ``run`` (the run's identity), one column per
parameter (``p.<name>``), one per metric, and what the run actually was where a point's parameters
leave it to defaults that have changed over time: ``r.pretrained`` (the run's backbone started from
pretrained weights) and ``r.benchmark`` (``v1``, an embedded variant such as ``parts2``, or ``voc``). :func:`mean_std` then aggregates over seeds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .io import read_json
from .runs import runs_root


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
            rj = read_json(folder / "run.json")
            row["run"] = rj.get("run")
            row.update(_run_facts(Path(rj.get("run_dir", "")), info.get("params", {})))
        row.update({f"p.{k}": (v if not isinstance(v, (list, dict)) else str(v))
                    for k, v in info.get("params", {}).items()})
        if finished:
            row.update(read_json(mfile))
        rows.append(row)
    return pd.DataFrame(rows)


def _run_facts(run_dir: Path, params: dict) -> dict:
    """``r.pretrained`` and ``r.benchmark`` of a point's run (see :func:`collect`)."""
    facts = {}
    data_root = str(params.get("data_root") or "")
    facts["r.benchmark"] = ("v1" if not data_root else data_root.split(":", 1)[1] if data_root.startswith("embedded:")
                            else "voc")
    pj = run_dir / "params.json"
    if run_dir.name and pj.exists():
        rp = read_json(pj).get("params", {})
        if "pretrained" in rp:
            facts["r.pretrained"] = bool(rp["pretrained"])
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
