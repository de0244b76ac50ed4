"""Run folders: one per identity, never overwritten by a run of another identity.

A run folder holds ``params.json`` (its identity, the code that made it, versions), ``metrics.json``
(flat: metric name -> number) once finished, checkpoints while training, and the stage's outputs.
``run_dir=""`` means ``<runs root>/<run name>-<hash of the identity>``, so the same identity finds
(and resumes, or reuses) the same folder.

A run's identity is what it was computed with (:meth:`wsss_lib.stages.base.Stage.plan` builds it):
the stage's fully resolved config, the profile, the data's content identity, the digest of the
weights it loads, what it writes, and its upstream runs' identities: never where a checkout, a
cache or the data lives (those paths are kept in ``params.json`` under ``paths``, out of the hash).

``params.json`` also records the digest of the code the run depends on (its stage's modules and,
through them, its upstream runs' code: :func:`wsss_lib.runs.identity.code_digest`). A finished run made
by other code is *stale*: with ``WSSS_STALE=rerun`` (the default) it is made again; with
``WSSS_STALE=keep`` it is reused with a loud warning, and the tables say so.

Two processes never write one run folder together: inside a stage call (functions decorated with
:func:`stage_entry`), :func:`prepare_run` takes the folder's lock (``<run>/.lock``) and holds it until
the stage returns; a second process asking for the same run waits, then finds it finished. Reading a
finished run takes no lock, so finished runs can be read from a read-only runs folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import sys
import warnings
from pathlib import Path

from filelock import FileLock, Timeout

from wsss_lib.util.distributed import world
from wsss_lib.util.environment import environment_summary
from wsss_lib.util.io import read_json, write_json
from wsss_lib.util.paths import REPO

#: how a finished run made by other code is treated: "rerun" (default) or "keep" (reused, loudly)
STALE_ENV = "WSSS_STALE"
STALE_POLICIES = ("rerun", "keep")


class StaleRunWarning(UserWarning):
    """A finished run made by other library code is being reused."""


class RunConflictError(RuntimeError):
    """A run folder already holds a run with other parameters."""


class RunsFolderError(OSError):
    """The runs folder cannot be written where a run has to be made (names the folder)."""


def runs_root() -> Path:
    """``$WSSS_RUNS`` if set, else ``runs/`` in the repository (or the working directory)."""
    env = os.environ.get("WSSS_RUNS")
    if env:
        return Path(env)
    repo = REPO
    return (repo if (repo / "pyproject.toml").exists() else Path.cwd()) / "runs"


def stale_policy() -> str:
    policy = os.environ.get(STALE_ENV, "rerun") or "rerun"
    if policy not in STALE_POLICIES:
        raise ValueError(f"{STALE_ENV}={policy!r} is invalid: expected one of {', '.join(STALE_POLICIES)}")
    return policy


def canonical(params: dict) -> dict:
    """``params`` as JSON reads them back (tuples as lists, keys sorted): what ``params.json`` holds."""
    return json.loads(json.dumps(params, sort_keys=True, default=str))


def params_hash(params: dict) -> str:
    blob = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def run_identity(run_dir: str | os.PathLike) -> str:
    """A run's identity: ``<run name>-<hash of its identity>``, wherever its folder lives."""
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


def _writable(path: Path) -> None:
    """Make ``path`` (a run folder) and take its lock, or raise one error naming the folder."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        lock_run(path)
    except OSError as e:
        raise RunsFolderError(f"cannot write the run folder {path} ({type(e).__name__}: {e.strerror or e}): the runs "
                              f"folder {runs_root()} must be writable to make or resume runs (finished runs can be "
                              "read from a read-only one); set WSSS_RUNS to a writable folder") from None


def _clear(path: Path) -> None:
    """Empty a run folder (a stale run made again), keeping its lock file."""
    for child in path.iterdir():
        if child.name == ".lock":
            continue
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def prepare_run(name: str, params: dict, code: str = "", run_dir: str | os.PathLike = "",
                paths: dict | None = None, record: dict | None = None) -> tuple[Path, bool]:
    """Find or create the run folder of identity ``params`` (``name``: the run name before the
    hash); returns ``(folder, finished)``.

    A finished run of the same code is returned as it is (no lock, nothing written). Otherwise the
    folder's lock is taken (inside a stage call) and ``params.json`` written; a stale run (made by
    other ``code``) is made again, or reused with a loud warning under ``WSSS_STALE=keep``.
    ``paths``: where the data and upstream runs were found (kept out of the identity); ``record``:
    more facts for ``params.json`` (e.g. the stage name).

    Raises :class:`RunConflictError` when ``run_dir`` holds a run with other parameters, and
    :class:`RunsFolderError` when the folder has to be written and cannot be."""

    mine = canonical(params)
    path = Path(run_dir) if run_dir else runs_root() / f"{name}-{params_hash(mine)}"
    pfile = path / "params.json"
    for attempt in (0, 1):  # look, lock, look again (another process may have finished it meanwhile)
        if pfile.exists():
            info = read_json(pfile)
            theirs = info.get("params", {})
            if theirs != mine:
                diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
                raise RunConflictError(
                    f"run folder {path} holds a run with other parameters (differing: {', '.join(diff)}); "
                    "pass another run_dir, or \"\" for one named after the parameters")
            same_code = not code or info.get("code_digest") == code
            if is_finished(path) and (same_code or stale_policy() == "keep"):
                if not same_code:
                    _warn_stale(path, info.get("code_digest"), code, "reusing its results (WSSS_STALE=keep)")
                return path, True
            if attempt == 0:
                _writable(path)
                continue
            if not same_code:
                if stale_policy() == "rerun":
                    print(f"[runs] {path} was made by other code ({info.get('code_digest')} vs {code} now): "
                          "making it again (WSSS_STALE=keep would reuse it)", file=sys.stderr, flush=True)
                    _clear(path)
                else:
                    _warn_stale(path, info.get("code_digest"), code, "resuming it (WSSS_STALE=keep)")
                    return path, False
            else:
                return path, False  # unfinished: resume
        elif attempt == 0:
            _writable(path)
            continue
        write_json(pfile, {"stage": name, "params": mine, "paths": paths or {}, "code_digest": code,
                           "environment": environment_summary(), **(record or {})})
        return path, False
    raise AssertionError("unreachable")


def _warn_stale(path: Path, theirs, mine, what: str) -> None:
    msg = (f"run folder {path} was made by other wsss_lib code (code digest {theirs} vs {mine} now); {what}. "
           "Delete the folder, or run with WSSS_STALE=rerun, to make it again with this code.")
    warnings.warn(msg, StaleRunWarning, stacklevel=3)
    print(f"[runs] WARNING: {msg}", file=sys.stderr, flush=True)


def run_data_root(run_dir: str | os.PathLike) -> Path:
    """The data root an upstream run was trained on (from its ``params.json``)."""
    info = read_json(Path(run_dir) / "params.json")
    root = info.get("paths", {}).get("data_root")
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
    """A run given by folder or by identity (``classifier-6d4fc2c452``, looked up under the runs root)."""
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
    flat = {k: float(v) for k, v in metrics.items()}
    bad = [k for k, v in flat.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"metrics {bad} are not finite numbers; metrics.json is strict JSON: leave undefined "
                         f"metrics out (writing {Path(run_dir) / 'metrics.json'})")
    return write_json(Path(run_dir) / "metrics.json", flat)


def publish_point(point_dir: str | os.PathLike, run: str | os.PathLike, extra: dict | None = None) -> dict:
    """A notebook's last step: the metrics of its run (plus ``extra``, e.g. the value at the point's
    xi); written into ``point_dir`` (the batch runner's folder for this grid point) when given, with
    ``run.json`` naming the run and the code it was made by. Returns the metrics."""
    metrics = {**read_metrics(run), **(extra or {})}
    if point_dir:
        write_metrics(point_dir, metrics)
        info = read_json(Path(run) / "params.json")
        write_json(Path(point_dir) / "run.json", {"run": run_identity(run), "run_dir": str(Path(run).resolve()),
                                                  "code_digest": info.get("code_digest", "")})
    return metrics


def read_metrics(run_dir: str | os.PathLike) -> dict:
    return read_json(Path(run_dir) / "metrics.json")


__all__ = ["RunConflictError", "RunsFolderError", "STALE_ENV", "StaleRunWarning", "canonical", "find_run",
           "is_finished", "params_hash", "prepare_run", "publish_point", "read_metrics", "run_data_root",
           "run_identity", "runs_root", "stage_entry", "stale_policy", "upstream_run", "write_metrics"]
