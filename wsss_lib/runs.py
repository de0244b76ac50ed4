"""Run folders: one per parameter set, never overwritten by a run with other parameters.

A run folder holds ``params.json`` (what determines the result, plus versions), ``metrics.json``
(flat: metric name -> number) once finished, checkpoints while training, and the stage's outputs.
``run_dir=""`` means ``<runs root>/<stage>-<hash of params>``, so the same parameters find (and
resume, or reuse) the same folder.

A run's identity is its parameters alone, never where a checkout or a cache lives: upstream runs
enter the parameters by their own identity (:func:`run_identity`, e.g. ``oaa-6d4fc2c452``) and the
data by :func:`data_identity` (the embedded benchmark by its spec digest); the paths to find them
are kept in ``params.json`` beside the parameters but out of the hash. ``params.json`` also records
a digest of the library's code (:func:`code_digest`): a run made by other code is reused with a
loud warning, never silently.

Two processes never write one run folder together: inside a stage call (functions decorated with
:func:`stage_entry`), :func:`prepare_run` takes the folder's lock (``<run>/.lock``) and holds it until
the stage returns; a second process asking for the same run waits, then finds it finished.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import warnings
from pathlib import Path

from .io import read_json, write_json

#: parameters that do not change a result and are left out of the hash (paths are kept in
#: params.json under "paths"; the identity of what they point to is a parameter)
NON_RESULT_KEYS = ("device", "run_dir", "progress", "num_workers", "data_root", "point_dir")
PATH_KEYS = ("data_root",)


class StaleRunWarning(UserWarning):
    """A finished run made by other library code is being reused."""


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


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 (first 12 hex digits) of every ``.py`` file of ``wsss_lib``, by relative path."""
    pkg = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(pkg.rglob("*.py")):
        h.update(str(f.relative_to(pkg)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def data_identity(root: str | os.PathLike) -> str:
    """What a data root *is*: ``embedded:<spec digest>`` for the generated benchmark, else the
    resolved path (real VOC has no digest we could compute cheaply)."""
    bj = Path(root) / "benchmark.json"
    if bj.exists():
        info = read_json(bj)
        return f"embedded:{info.get('files_sha256') or params_hash(info.get('spec', {}))}"[:30]
    return str(Path(root).resolve())


def run_identity(run_dir: str | os.PathLike) -> str:
    """An upstream run's identity: ``<stage>-<hash of its parameters>``, wherever its folder lives."""
    info = read_json(Path(run_dir) / "params.json")
    return f"{info['stage']}-{params_hash(info['params'])}"


# -- locks: one writer per run folder -------------------------------------------------------------
_HELD: dict[str, object] = {}
_FRAMES: list[list[str]] = []


def stage_entry(fn):
    """Decorator for a stage function: run-folder locks taken inside it are released when it returns."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _FRAMES.append([])
        try:
            return fn(*args, **kwargs)
        finally:
            for key in _FRAMES.pop():
                _HELD.pop(key).release()
    return wrapper


def lock_run(path: Path) -> None:
    """Take ``path``'s lock for the current stage call (waits while another process holds it)."""
    from filelock import FileLock, Timeout

    from .train.distributed import world

    key = str(Path(path).resolve())
    if not _FRAMES or key in _HELD or world()[0] != 0:  # in a process group, rank 0 holds the locks
        return
    lock = FileLock(str(Path(path) / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"[runs] {path} is being written by another process; waiting for it", file=sys.stderr, flush=True)
        lock.acquire()
    _HELD[key] = lock
    _FRAMES[-1].append(key)


def prepare_run(stage: str, params: dict, run_dir: str | os.PathLike = "", upstream: dict | None = None) -> Path:
    """Create (or find) the run folder for ``params``, take its lock (inside a stage call) and
    write ``params.json``.

    ``upstream``: name -> folder of the upstream runs (their identities are in ``params``; the
    folders are recorded under ``paths`` so :func:`upstream_run` finds them).

    Raises :class:`RunConflictError` when ``run_dir`` holds a run with other parameters; warns
    (:class:`StaleRunWarning`) when a finished run found there was made by other library code."""
    from .report import environment_summary

    path = Path(run_dir) if run_dir else runs_root() / f"{stage}-{params_hash(params)}"
    pfile = path / "params.json"
    mine = json.loads(json.dumps(result_params(params), sort_keys=True, default=str))
    path.mkdir(parents=True, exist_ok=True)
    lock_run(path)
    if pfile.exists():
        info = read_json(pfile)
        theirs = info.get("params", {})
        if theirs != mine:
            diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
            raise RunConflictError(
                f"run folder {path} holds a run with other parameters (differing: {', '.join(diff)}); "
                "pass another run_dir, or \"\" for one named after the parameters")
        if info.get("code_digest") != code_digest():
            msg = (f"run folder {path} was made by other wsss_lib code (code digest {info.get('code_digest')} "
                   f"vs {code_digest()} now); {'reusing its results' if is_finished(path) else 'resuming it'}. "
                   "Delete the folder to make it again with this code.")
            warnings.warn(msg, StaleRunWarning, stacklevel=2)
            print(f"[runs] WARNING: {msg}", file=sys.stderr, flush=True)
        return path
    paths = {k: str(params[k]) for k in PATH_KEYS if k in params}
    paths.update({k: str(Path(v).resolve()) for k, v in (upstream or {}).items() if v})
    write_json(pfile, {"stage": stage, "params": mine, "paths": paths, "code_digest": code_digest(),
                       "environment": environment_summary()})
    return path


def run_data_root(run_dir: str | os.PathLike) -> Path:
    """The data root an upstream run was trained on (from its ``params.json``)."""
    info = read_json(Path(run_dir) / "params.json")
    root = info.get("paths", {}).get("data_root") or info["params"].get("data_root")
    if root is None:
        raise ValueError(f"{Path(run_dir) / 'params.json'} names no data_root: not a run folder of this suite")
    return Path(root)


def upstream_run(run_dir: str | os.PathLike, name: str) -> Path:
    """The upstream run ``name`` (e.g. ``"oaa_run"``) that ``run_dir`` was made from: the folder
    recorded in its ``params.json``, or else the folder named by the upstream's identity under the
    runs root (a moved checkout). Raises ``FileNotFoundError`` saying what is missing."""
    pfile = Path(run_dir) / "params.json"
    info = read_json(pfile)
    ident = info.get("params", {}).get(name)
    if not ident:
        raise FileNotFoundError(f"{pfile} names no upstream run {name!r}")
    for cand in (info.get("paths", {}).get(name), runs_root() / str(ident)):
        if cand and (Path(cand) / "params.json").exists() and run_identity(cand) == ident:
            return Path(cand)
    raise FileNotFoundError(f"upstream run {name}={ident!r} of {run_dir} is not at "
                            f"{info.get('paths', {}).get(name)!r} nor under {runs_root()}: run its stage again "
                            "(same parameters) or point WSSS_RUNS at the runs folder that holds it")


def find_run(run: str | os.PathLike) -> Path:
    """A run given by folder or by identity (``oaa-6d4fc2c452``, looked up under the runs root)."""
    p = Path(run)
    if (p / "params.json").exists():
        return p
    if (runs_root() / str(run) / "params.json").exists():
        return runs_root() / str(run)
    raise FileNotFoundError(f"no run folder {str(run)!r} (neither a folder with params.json nor a run identity "
                            f"under {runs_root()})")


def is_finished(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / "metrics.json").exists()


def write_metrics(run_dir: str | os.PathLike, metrics: dict) -> Path:
    """Write ``metrics.json`` (flat name -> number, strict JSON: a NaN or infinite value is refused,
    naming the metric; leave a metric out when it is undefined)."""
    import math

    flat = {k: float(v) for k, v in metrics.items()}
    bad = [k for k, v in flat.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"metrics {bad} are not finite numbers; metrics.json is strict JSON: leave undefined "
                         f"metrics out (writing {Path(run_dir) / 'metrics.json'})")
    return write_json(Path(run_dir) / "metrics.json", flat)


def publish_point(point_dir: str | os.PathLike, run: str | os.PathLike, extra: dict | None = None) -> dict:
    """A notebook's last step: the metrics of its run (plus ``extra``, e.g. the value at the point's
    xi); written into ``point_dir`` (the batch runner's folder for this grid point) when given, with
    ``run.json`` naming the run. Returns the metrics."""
    metrics = {**read_metrics(run), **(extra or {})}
    if point_dir:
        write_metrics(point_dir, metrics)
        write_json(Path(point_dir) / "run.json", {"run": run_identity(run), "run_dir": str(Path(run).resolve())})
    return metrics


def read_metrics(run_dir: str | os.PathLike) -> dict:
    return read_json(Path(run_dir) / "metrics.json")
