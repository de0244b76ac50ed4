"""Grid points: what a point is (its identity, planned without running anything), where it lives, its status, and one point's execution in its folder (papermill), under the folder's lock."""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import logging
import os
import socket
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from wsss_lib.experiments.grids import Grid, GridError, notebook_path
from wsss_lib.runs.folders import RunsFolderError, runs_root
from wsss_lib.runs.identity import code_text, combine
from wsss_lib.runs.profile import resolve_profile
from wsss_lib.stages import stage_of_notebook
from wsss_lib.stages.notebook import notebook_call, notebook_parameters
from wsss_lib.util.io import read_json, write_json, write_text
from wsss_lib.util.making import WouldMake


def main_metrics(notebook: str) -> tuple[str, ...] | None:
    """The metrics the final table shows for a notebook: its stage's ``main_metrics`` (every
    metric is in the point's metrics.json); ``None`` for a notebook that runs no stage."""

    st = stage_of_notebook(notebook)
    return st.main_metrics if st is not None else None


@functools.lru_cache(maxsize=64)
def _notebook_defaults(path: str, mtime: int) -> dict:

    import papermill as pm  # lazy: heavy: the Jupyter stack, only where a notebook is executed

    out = {}
    for name, info in pm.inspect_notebook(path).items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            out[name] = info["default"]
    return out


def notebook_defaults(notebook: str) -> dict:
    """The parameters a notebook takes and their defaults, read from its cell tagged ``parameters``
    (papermill's ``inspect_notebook``)."""
    path = notebook_path(notebook)
    return dict(_notebook_defaults(str(path), path.stat().st_mtime_ns))


def notebook_accepts(notebook: str) -> set[str]:
    """Every parameter a notebook takes, the same set its first cell after the parameters accepts
    (:func:`wsss_lib.stages.notebook.notebook_call`): a stage notebook's stages' parameters (every config
    field, upstream run and run argument, listed in its parameters cell or not) and the cell's own
    names; any other notebook, the names its parameters cell assigns."""

    cell = set(notebook_defaults(notebook))
    return cell | set(notebook_parameters(notebook)) if stage_of_notebook(Path(notebook).name) else cell


class _KnownParameters(logging.Filter):
    """Drops papermill's "Passed unknown parameter" warning: papermill knows only the names a
    notebook's parameters cell assigns, while a stage notebook takes every field of its stages'
    configs (:func:`notebook_accepts`), and a name it does not take is refused before it runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passed unknown parameter")


_KNOWN_PARAMETERS = _KnownParameters()


def quiet_papermill() -> None:
    """Install :class:`_KnownParameters` on papermill's logger (once)."""
    logger = logging.getLogger("papermill")
    if _KNOWN_PARAMETERS not in logger.filters:
        logger.addFilter(_KNOWN_PARAMETERS)


#: parameters that name a file or folder: a relative one is resolved against the caller's working
#: folder before it reaches a kernel (whose working folder is notebooks/)
PATH_PARAMS = ("data_root", "run_dir", "saliency_root")


#: parameters that name a run (a folder or an identity) or a checkpoint file: resolved when a
#: file or folder of that name exists under the caller's working folder
RUN_PARAMS = ("init_from", "oaa_run", "pseudo_run", "attention_run", "trained_run")


def resolve_paths(params: dict, cwd: Path | None = None) -> dict:
    """``params`` with every relative path made absolute against ``cwd`` (default: the working
    folder), as the caller meant it: :data:`PATH_PARAMS` always (but ``""`` and ``embedded:...``),
    :data:`RUN_PARAMS` when such a file or folder exists there (else it is a run identity)."""
    cwd = Path(cwd or Path.cwd())
    out = dict(params)
    for k, v in params.items():
        if not isinstance(v, str) or not v or v.startswith("embedded:") or Path(v).is_absolute():
            continue
        if k in PATH_PARAMS or (k in RUN_PARAMS and (cwd / v).exists()):
            out[k] = str((cwd / Path(v).expanduser()).resolve())
    return out


def notebook_digest(notebook: str) -> str:
    """The digest of a notebook's code cells (a point re-runs when they change; outputs, markdown,
    comments and docstrings do not count: :func:`~wsss_lib.runs.identity.code_text`)."""

    cells = json.loads(notebook_path(notebook).read_text()).get("cells", [])
    src = "\n#cell\n".join(code_text("".join(c.get("source", ""))) for c in cells if c.get("cell_type") == "code")
    return hashlib.sha256(src.encode()).hexdigest()[:12]


@dataclass
class PointPlan:
    """What a grid point is: its identity (the run it reads, resolved), the run's plan, its code."""

    identity: dict
    run: str = ""  # the identity of the run the point's notebook makes or reads ("" for a notebook without a stage)
    code: str = ""  # the digest of the code of that run and of the notebook
    would_make: str = ""  # in a dry run: what would be made before the point can be identified


def plan_point(notebook: str, params: dict, progress: bool = False) -> PointPlan:
    """Check a point's parameters against its notebook and resolve its identity, running nothing.

    Unknown names are refused (naming them and the notebook's parameters). For a notebook that runs
    a stage, the point is identified by the run it makes (:meth:`~wsss_lib.stages.base.Stage.plan`:
    the fully resolved config, profile, data content, weights and upstream runs) and the values that
    only choose what the point shows (e.g. AMR's ``xi_main``): a grid that writes a default out
    is the same point as one that leaves it out. Any other notebook is identified by its parameters
    with the notebook's defaults filled in."""

    name = Path(notebook).name
    defaults = notebook_defaults(notebook)
    known = notebook_accepts(notebook)
    unknown = sorted(set(params) - known)
    if unknown:
        raise GridError(f"unknown parameter(s) {unknown} for notebook {name}; known: {sorted(known)}")
    namespace = {**defaults, **params}
    stage = stage_of_notebook(name)
    if stage is None:
        return PointPlan({"notebook": name, "params": namespace}, "", notebook_digest(notebook))
    namespace.pop("point_dir", None)
    try:
        call = notebook_call(stage.name, namespace, announce=False)
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise GridError(f"notebook {name}, point {params}: {e}") from None
    try:
        run = call.plan(progress=progress)
    except WouldMake as w:  # a dry run: the point cannot be identified before that is made
        return PointPlan({"notebook": name, "params": namespace}, "", "", w.what)
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise GridError(f"notebook {name}, point {params}: {e}") from None
    shown = {k: v for k, v in asdict(call.config).items()  # what the point shows (upstream parameters are in the run)
             if k in stage.display_only and k not in stage.upstream_params_field.values()}
    return PointPlan({"notebook": name, "run": run.identity, "shown": shown}, run.identity,
                     combine(run.code, notebook_digest(notebook)))


def point_id(identity: dict) -> str:
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def point_status(folder: Path, code: str = "") -> str:
    """``finished`` | ``stale`` (finished by other code than ``code``) | ``failed`` | ``running``
    | ``interrupted`` (running when its batch died: it resumes when run again) | ``new``."""
    pj = folder / "point.json"
    if not pj.exists():
        return "new"
    info = read_json(pj)
    status = info.get("status", "new")
    if status == "finished" and not (folder / "metrics.json").exists():
        return "interrupted"
    if status == "finished" and code and info.get("code") != code:
        return "stale"
    if status == "running" and not _alive(info):
        return "interrupted"
    return status


def _alive(info: dict) -> bool:
    """Whether the process that set a point running is still alive (on another host: assumed so)."""

    pid, host = info.get("pid"), info.get("host")
    if not pid or (host and host != socket.gethostname()):
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _set_point(folder: Path, **fields) -> None:
    info = read_json(folder / "point.json") if (folder / "point.json").exists() else {}
    info.update(fields)
    write_json(folder / "point.json", info)


def run_point(notebook: str, params: dict, folder: str, skip_failed: bool = False, code: str = "",
              run: str = "") -> dict:
    """Execute one point (in the calling process; the batch calls it in worker processes).

    ``code``: the point's code digest (a finished point of other code is run again); ``run``: the
    identity of the run it reads. Returns ``{"status": "finished" | "cached" | "failed", "seconds":
    ..., "error": ...}``. A finished point is read without a lock (a read-only runs folder serves it)."""

    from wsss_lib.experiments.kernels import execute_notebook  # lazy: heavy: the Jupyter stack, only where a notebook is executed

    folder_p = Path(folder)
    status = point_status(folder_p, code)
    if status == "finished" or (status == "failed" and skip_failed):
        return {"status": "cached" if status == "finished" else "failed", "seconds": 0.0,
                "error": "" if status == "finished" else "failed before (not retried: --skip-failed)"}
    src = notebook_path(notebook)
    try:
        folder_p.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder_p / ".lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            info = read_json(folder_p / "point.json") if (folder_p / "point.json").exists() else {}
            print(f"[batch] point {folder_p.name} ({Path(notebook).name}) is being run by another batch (pid "
                  f"{info.get('pid', '?')} on {info.get('host', '?')}, started {_when(info.get('started'))}); "
                  "waiting for it to finish", file=sys.stderr, flush=True)
            lock.acquire()
    except OSError as e:
        raise RunsFolderError(f"cannot write the point folder {folder_p} ({e.strerror or e}): the runs folder "
                              f"{runs_root()} must be writable to run points") from None
    try:
        status = point_status(folder_p, code)
        if status == "finished" or (status == "failed" and skip_failed):
            return {"status": "cached" if status == "finished" else "failed", "seconds": 0.0,
                    "error": "" if status == "finished" else "failed before (not retried: --skip-failed)"}
        resumed = status in ("running", "interrupted")
        for stale in ("metrics.json", "error.txt", "run.json"):
            (folder_p / stale).unlink(missing_ok=True)
        t0 = time.time()
        _set_point(folder_p, notebook=Path(notebook).name, params=params, status="running", started=t0,
                   resumed=resumed, pid=os.getpid(), host=socket.gethostname(), code=code, run=run,
                   rerun_stale=status == "stale")
        final = folder_p / src.name
        partial = folder_p / f".{src.stem}.partial.ipynb"
        error = ""
        try:
            quiet_papermill()
            execute_notebook(src, partial, parameters={**params, "point_dir": str(folder_p)}, cwd=src.parent)
            if not (folder_p / "metrics.json").exists():
                raise RuntimeError(f"{src.name} finished without writing {folder_p / 'metrics.json'} "
                                   "(its last cell should call wsss_lib.runs.folders.publish_point(point_dir, run))")
        except Exception as e:  # noqa: BLE001 - every failure is recorded, the batch goes on
            error = f"{type(e).__name__}: {e}"
            write_text(folder_p / "error.txt", traceback.format_exc())
        if partial.exists():
            os.replace(partial, final)
        seconds = time.time() - t0
        _set_point(folder_p, status="failed" if error else "finished", ended=time.time(), seconds=seconds,
                   error=error[-2000:])
        return {"status": "failed" if error else "finished", "seconds": seconds, "error": error}
    finally:
        lock.release()


def _when(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(t))) if t else "?"


@dataclass
class Point:
    grid: str
    notebook: str
    params: dict
    folder: Path
    code: str = ""
    run: str = ""
    would_make: str = ""  # a dry run's: what would be made before the point is identified

    @property
    def profile(self) -> str:
        """The profile the point runs under (``WSSS_QUICK`` included)."""

        return resolve_profile(self.params.get("quick", False)).name


def plan(grids: list[Grid], quick: bool | None = None, root: Path | None = None, progress: bool = False) -> list[Point]:
    """Every point of the grids, once (two grid entries that resolve to the same identity are one
    point), each checked and identified before anything runs (:func:`plan_point`). Raises
    :class:`GridError` listing every bad point."""
    seen, out, errors = set(), [], []
    for g in grids:
        for p in g.points():
            if quick is not None:
                p = {**p, "quick": quick}
            p = resolve_paths(p)
            try:
                pp = plan_point(g.notebook, p, progress)
            except GridError as e:
                errors.append(f"grid {g.name!r}: {e}")
                continue
            folder = (root or runs_root()) / "batch" / f"{Path(g.notebook).stem}-{point_id(pp.identity)}"
            if folder not in seen:
                seen.add(folder)
                out.append(Point(g.name, g.notebook, p, folder, pp.code, pp.run, pp.would_make))
    if errors:
        raise GridError("; ".join(dict.fromkeys(errors)) if len(errors) < 4 else
                        f"{len(errors)} bad points, e.g.: " + "; ".join(list(dict.fromkeys(errors))[:3]))
    return out


def point_dir(notebook: str, params: dict, root: Path | None = None) -> Path:
    """The folder of one point (its identity resolved as :func:`plan` does)."""
    return (root or runs_root()) / "batch" / f"{Path(notebook).stem}-{point_id(plan_point(notebook, params).identity)}"


def _label(point: Point, varying: set[str]) -> str:
    return ", ".join(f"{k}={point.params[k]}" for k in sorted(point.params) if k in varying) or "(defaults)"
