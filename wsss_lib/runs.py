"""Run folders: one per parameter set, never overwritten by a run with other parameters.

A run folder holds ``params.json`` (what determines the result, plus versions), ``metrics.json``
(flat: metric name -> number) once finished, checkpoints while training, and the stage's outputs.
``run_dir=""`` means ``<runs root>/<stage>-<hash of params>``, so the same parameters find (and
resume, or reuse) the same folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .io import read_json, write_json

#: parameters that do not change a result and are left out of the hash
NON_RESULT_KEYS = ("device", "run_dir", "progress", "num_workers")


class RunConflictError(RuntimeError):
    """A run folder already holds a run with other parameters."""


def runs_root() -> Path:
    """``$WSSS_RUNS`` if set, else ``runs/`` in the repository (or the working directory)."""
    env = os.environ.get("WSSS_RUNS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[1]
    return (repo if (repo / "pyproject.toml").exists() else Path.cwd()) / "runs"


def result_params(params: dict) -> dict:
    return {k: v for k, v in params.items() if k not in NON_RESULT_KEYS}


def params_hash(params: dict) -> str:
    blob = json.dumps(result_params(params), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def prepare_run(stage: str, params: dict, run_dir: str | os.PathLike = "") -> Path:
    """Create (or find) the run folder for ``params`` and write ``params.json``.

    Raises :class:`RunConflictError` when ``run_dir`` holds a run with other parameters."""
    from .report import environment_summary

    path = Path(run_dir) if run_dir else runs_root() / f"{stage}-{params_hash(params)}"
    pfile = path / "params.json"
    mine = json.loads(json.dumps(result_params(params), sort_keys=True, default=str))
    if pfile.exists():
        theirs = read_json(pfile).get("params", {})
        if theirs != mine:
            diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
            raise RunConflictError(
                f"run folder {path} holds a run with other parameters (differing: {', '.join(diff)}); "
                "pass another run_dir, or \"\" for one named after the parameters")
        return path
    path.mkdir(parents=True, exist_ok=True)
    write_json(pfile, {"stage": stage, "params": mine, "environment": environment_summary()})
    return path


def run_data_root(run_dir: str | os.PathLike) -> Path:
    """The data root an upstream run was trained on (from its ``params.json``)."""
    return Path(read_json(Path(run_dir) / "params.json")["params"]["data_root"])


def is_finished(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / "metrics.json").exists()


def write_metrics(run_dir: str | os.PathLike, metrics: dict) -> Path:
    flat = {k: float(v) for k, v in metrics.items()}
    return write_json(Path(run_dir) / "metrics.json", flat)


def read_metrics(run_dir: str | os.PathLike) -> dict:
    return read_json(Path(run_dir) / "metrics.json")
