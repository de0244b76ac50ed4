"""The batch runner: ablation grids of notebook executions (papermill), in parallel, resumable.

    python -m wsss_lib.experiments.batch notebooks/grids/amr_xi.yaml -j 2
    python -m wsss_lib.experiments.batch --notebook 04_train_amr.ipynb -p seed 0 1 2 -p xi_main 0.3 0.5 0.7
    python -m wsss_lib.experiments.batch notebooks/grids/oaa_gate.yaml --dry-run     # list the points only

A grid file (YAML or JSON) names a notebook, the parameters every point shares, and the axes::

    name: amr_xi
    notebook: 04_train_amr.ipynb
    params: {variant: AMR}           # every point
    grid:                            # cartesian product of these axes ...
      seed: [0, 1, 2]
      xi_main: [0.1, 0.3, 0.5, 0.7, 0.9]
    zip: [[gate, gate_start_epoch]]  # ... where zipped axes vary together (same lengths)

A file may also hold ``grids: [ {...}, {...} ]``. Each point (notebook + parameters) gets its own
folder ``<runs root>/batch/<notebook stem>-<hash of notebook and parameters>`` with ``point.json``
(parameters, status, times, error), the executed notebook, and the point's ``metrics.json`` (the
notebook's last cell writes it there through :func:`wsss_lib.runs.folders.publish_point`).

Behaviour:

- *Shared upstream work*: a point's notebook runs its stage, which finds its training run by the
  stage's own parameter hash; points that differ only in what is read from a run (the OAA source,
  AMR's xi) share it, and an upstream run (the classifier of a seed) is made once for all points
  that need it. Run folders are locked while written, so parallel points that need the same run
  wait for it instead of making it twice.
- *Skip, resume, lock*: a finished point is skipped; a point whose batch was killed runs again and
  its stage resumes from its last checkpoint; a point is executed under its folder's lock, so two
  batches started at once on overlapping grids execute each point once.
- *Failures*: a point that raises is recorded (``status: failed``, ``error.txt`` with the traceback,
  the executed notebook kept) while the others go on; the exit status is 1 if any point failed. A
  later batch runs failed points again (``--skip-failed`` leaves them).
- *Executors* (``--executor``): ``local`` (worker processes on this machine, the default),
  ``slurm`` (one SLURM job per point through ``submitit``: ``--partition``, ``--gpus-per-job``,
  ``--cpus-per-job``, ``--time-min``) and ``submitit-local`` (submitit's local executor: the same
  code path as SLURM, on this machine; the tests use it). Every executor runs the same
  :func:`run_point` in the same point folders, so skip, resume, locks and failure capture do not
  change; ``-j`` bounds the jobs in flight. A submitted point's job id and log files are recorded
  in ``job.json`` in its folder (the logs live in its ``submitit/`` subfolder).

    python -m wsss_lib.experiments.batch notebooks/grids/amr_xi.yaml --executor slurm --partition gpu --gpus-per-job 1 -j 16
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import itertools
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from wsss_lib.util.paths import REPO
from wsss_lib.util.io import DiskFullError, read_json, write_json, write_text
from wsss_lib.util.making import WouldMake, dry_run
from wsss_lib.runs.folders import RunsFolderError, runs_root


def main_metrics(notebook: str) -> tuple[str, ...] | None:
    """The metrics the final table shows for a notebook: its stage's ``main_metrics`` (every
    metric is in the point's metrics.json); ``None`` for a notebook that runs no stage."""
    from wsss_lib.stages import stage_of_notebook

    st = stage_of_notebook(notebook)
    return st.main_metrics if st is not None else None


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
    import yaml

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
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def notebook_path(notebook: str) -> Path:
    return notebooks_dir() / notebook if (notebooks_dir() / notebook).exists() else Path(notebook)


@functools.lru_cache(maxsize=64)
def _notebook_defaults(path: str, mtime: int) -> dict:
    import ast

    import papermill as pm

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
    (:func:`wsss_lib.stages.base.notebook_call`): a stage notebook's stages' parameters (every config
    field, upstream run and run argument, listed in its parameters cell or not) and the cell's own
    names; any other notebook, the names its parameters cell assigns."""
    from wsss_lib.stages import stage_of_notebook
    from wsss_lib.stages.base import notebook_parameters

    cell = set(notebook_defaults(notebook))
    return cell | set(notebook_parameters(notebook)) if stage_of_notebook(Path(notebook).name) else cell


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
    from wsss_lib.runs.identity import code_text

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
    from dataclasses import asdict

    from wsss_lib.runs.identity import combine
    from wsss_lib.stages import stage_of_notebook
    from wsss_lib.stages.base import notebook_call

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
    import socket

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
    import socket

    import papermill as pm
    from filelock import FileLock, Timeout

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
            pm.execute_notebook(str(src), str(partial), parameters={**params, "point_dir": str(folder_p)},
                                kernel_name="python3", cwd=str(src.parent), progress_bar=False)
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
        from wsss_lib.runs.profile import resolve_profile

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


EXECUTORS = ("local", "submitit-local", "slurm")


@dataclass
class ClusterOptions:
    """Resources of one submitit job (one point): SLURM partition, GPUs, CPUs and time limit."""

    partition: str = ""
    gpus_per_job: int = 0
    cpus_per_job: int = 2
    time_min: int = 120
    poll_seconds: float = 1.0

    def parameters(self, name: str) -> dict:
        p = {"timeout_min": self.time_min, "name": name, "gpus_per_node": self.gpus_per_job,
             "cpus_per_task": self.cpus_per_job, "nodes": 1, "tasks_per_node": 1}
        if self.partition:
            p["slurm_partition"] = self.partition
        return p


def submit_points(points: list[Point], jobs: int, cluster: str, options: ClusterOptions, skip_failed: bool,
                  on_done=None) -> dict[int, dict]:
    """Run points as submitit jobs (``cluster``: ``"local"`` or ``"slurm"``), at most ``jobs`` in
    flight; each job runs :func:`run_point`. Finished points are not submitted again."""
    try:
        import submitit
    except ImportError:
        raise ImportError("executor needs the package submitit (pip install submitit, or the lock file)") from None
    results: dict[int, dict] = {}
    pending = list(enumerate(points))
    running: dict[int, object] = {}
    while pending or running:
        while pending and len(running) < max(1, jobs):
            i, pt = pending.pop(0)
            if point_status(pt.folder, pt.code) == "finished":  # the same skip as run_point, without a job
                results[i] = {"status": "cached", "seconds": 0.0, "error": ""}
                if on_done:
                    on_done()
                continue
            pt.folder.mkdir(parents=True, exist_ok=True)
            ex = submitit.AutoExecutor(folder=pt.folder / "submitit", cluster=cluster)
            ex.update_parameters(**options.parameters(f"wsss-{pt.folder.name}"))
            job = ex.submit(run_point, pt.notebook, pt.params, str(pt.folder), skip_failed, pt.code, pt.run)
            write_json(pt.folder / "job.json", {"executor": f"submitit-{cluster}", "job_id": str(job.job_id),
                                                "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr),
                                                "submitted": time.time(), "parameters": options.parameters(pt.folder.name)})
            running[i] = job
        for i, job in list(running.items()):
            if job.done():
                try:
                    results[i] = job.result()
                except Exception as e:  # noqa: BLE001 - a job that died (killed, out of time, node failure)
                    msg = f"{type(e).__name__}: {e}"
                    results[i] = {"status": "failed", "seconds": 0.0, "error": msg[-2000:]}
                    folder = points[i].folder
                    if point_status(folder, points[i].code) != "finished":
                        _set_point(folder, status="failed", error=msg[-2000:])
                        write_text(folder / "error.txt", f"submitit job {job.job_id} failed:\n{msg}\n")
                del running[i]
                if on_done:
                    on_done()
        if running:
            time.sleep(options.poll_seconds)
    return results


def _die_with_parent(parent: int) -> None:
    """Worker initializer: a worker ends when the batch process that started it ends, even by
    ``kill -9`` (Linux: the kernel's parent-death signal; elsewhere a thread watching the parent).
    Its notebook kernel follows (the kernel polls its parent, jupyter_client's ``JPY_PARENT_PID``)."""
    import signal
    import threading

    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    # Ctrl-C in the terminal reaches the batch process alone, which says what was interrupted; its
    # end takes the workers (and their kernels) with it, their points left to resume
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != parent:  # the parent is already gone
        os._exit(1)

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True).start()


def check_writable(root: Path) -> None:
    """One clear error when the runs folder cannot be written (points have to run)."""
    import tempfile

    folder = root / "batch"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as e:
        raise RunsFolderError(f"the runs folder {root} is not writable ({e.strerror or e}): points that are not "
                              "finished cannot run there (finished ones can still be read); set WSSS_RUNS to a "
                              "writable folder") from None


def run_batch(grids: list[Grid], jobs: int = 1, quick: bool | None = None, root: Path | None = None,
              progress: bool = True, skip_failed: bool = False, executor: str = "local",
              cluster: ClusterOptions | None = None, points: list[Point] | None = None) -> pd.DataFrame:
    """Execute every point of ``grids`` (or the already planned ``points``) with ``jobs`` worker
    processes (``executor="local"``) or submitit jobs in flight (``"submitit-local"``, ``"slurm"``);
    returns the summary table (grid, point, status, seconds, main metrics, folder).

    Points finished by other code (stale) run again under ``WSSS_STALE=rerun`` (the default), and
    are kept, listed loudly, under ``WSSS_STALE=keep``."""
    from wsss_lib.runs.folders import stale_policy

    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} is invalid: expected one of {', '.join(EXECUTORS)}")
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} is invalid: expected an integer >= 1 (points executed at once)")
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    points = plan(grids, quick, root) if points is None else points
    varying = {k for g in grids for k in g.axes}
    status = {i: point_status(pt.folder, pt.code) for i, pt in enumerate(points)}
    stale = [pt for i, pt in enumerate(points) if status[i] == "stale"]
    if stale:
        keep = stale_policy() == "keep"
        print(f"[batch] {len(stale)} point(s) were finished by other code: "
              + ("KEPT as they are (WSSS_STALE=keep): their results are not what this code computes"
                 if keep else "running them again (WSSS_STALE=keep keeps them)"), file=sys.stderr, flush=True)
        for pt in stale:
            print(f"[batch]   stale: {Path(pt.notebook).name} {_label(pt, set(pt.params))} ({pt.folder.name})",
                  file=sys.stderr)
        if keep:
            points = [Point(p.grid, p.notebook, p.params, p.folder, "" if p in stale else p.code, p.run) for p in points]
    if any(s != "finished" and not (s == "stale" and stale_policy() == "keep") for s in status.values()):
        check_writable(root or runs_root())
    results: dict[int, dict] = {}
    if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
        # the points' kernels share the cores instead of each taking all of them
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    bar = tqdm(total=len(points), desc="batch", unit="point", disable=not progress)
    if executor != "local":
        results = submit_points(points, jobs, "local" if executor == "submitit-local" else "slurm",
                                cluster or ClusterOptions(), skip_failed, on_done=bar.update)
    elif jobs <= 1:
        for i, pt in enumerate(points):
            bar.set_postfix_str(f"{pt.notebook} {_label(pt, varying)}"[:60])
            results[i] = run_point(pt.notebook, pt.params, str(pt.folder), skip_failed, pt.code, pt.run)
            bar.update()
    else:
        ex = ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                                 initializer=_die_with_parent, initargs=(os.getpid(),))
        try:
            futs = {ex.submit(run_point, pt.notebook, pt.params, str(pt.folder), skip_failed, pt.code, pt.run): i
                    for i, pt in enumerate(points)}
            for fut in as_completed(futs):
                i = futs[fut]
                try:
                    results[i] = fut.result()
                except Exception as e:  # noqa: BLE001 - a worker that died
                    results[i] = {"status": "failed", "seconds": 0.0, "error": f"{type(e).__name__}: {e}"}
                bar.update()
        except BaseException:  # Ctrl-C (or any error): stop the workers now, their points resume later
            for proc in list(getattr(ex, "_processes", {}).values()):
                proc.kill()
            ex.shutdown(wait=False, cancel_futures=True)
            bar.close()
            raise
        ex.shutdown()
    bar.close()
    rows = []
    for i, pt in enumerate(points):
        r = results[i]
        row = {"grid": pt.grid, "notebook": Path(pt.notebook).name, "point": _label(pt, varying), "status": r["status"],
               "seconds": round(r["seconds"], 1)}
        mfile = pt.folder / "metrics.json"
        metrics = read_json(mfile) if mfile.exists() and r["status"] != "failed" else {}
        for key in main_metrics(pt.notebook) or tuple(metrics)[:4]:
            if key in metrics:
                row[key] = metrics[key]
        row["error"] = r.get("error", "")
        row["folder"] = str(pt.folder)
        rows.append(row)
    return pd.DataFrame(rows)


def _grids_from_args(args) -> list[Grid]:
    grids = [g for f in args.grid_files for g in load_grids(f)]
    if args.param or args.notebook:
        if not args.notebook:
            raise GridError("-p needs --notebook (which notebook the parameters are for)")
        axes = {}
        for name, *values in args.param or []:
            if not values:
                raise GridError(f"-p {name}: give at least one value")
            axes[name] = [parse_value(v) for v in values]
        zips = [z.split(",") for z in args.zip or []]
        grids.append(Grid(args.notebook, {}, axes, zips, name=Path(args.notebook).stem))
    if not grids:
        raise GridError("nothing to run: give grid files, or --notebook with -p NAME VALUES...")
    return grids


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: expected an integer >= 1 (points executed at once)")
    return n


@contextlib.contextmanager
def stale_policy_env(keep: bool):
    """``WSSS_STALE=keep`` for the points' kernels while the block runs (``--keep-stale``), restored after."""
    from wsss_lib.runs.folders import STALE_ENV

    saved = os.environ.get(STALE_ENV)
    if keep:
        os.environ[STALE_ENV] = "keep"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(STALE_ENV, None)
        else:
            os.environ[STALE_ENV] = saved


def print_dry_run(grids: list[Grid], pts: list[Point]) -> None:
    """What a batch would do: every point with its profile and status, and what would be made first."""
    varying = {k for g in grids for k in g.axes}
    df = pd.DataFrame([{"grid": p.grid, "notebook": Path(p.notebook).name, "point": _label(p, varying),
                        "profile": p.profile, "status": "new" if p.would_make else point_status(p.folder, p.code),
                        "folder": str(p.folder) if not p.would_make else "(known once the data exists)"} for p in pts])
    print(df.to_string(index=False))
    todo = list(dict.fromkeys(p.would_make for p in pts if p.would_make))
    if todo:
        print("\nfirst, it would make (nothing is made by --dry-run):")
        for what in todo:
            print(f"  - {what}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m wsss_lib.experiments.batch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grid_files", nargs="*", help="YAML/JSON grid files (see notebooks/grids/)")
    ap.add_argument("--notebook", help="notebook for -p axes (a name in notebooks/, or a path)")
    ap.add_argument("-p", "--param", nargs="+", action="append", metavar=("NAME", "VALUE"),
                    help="an axis: -p NAME V1 V2 ... (values read as YAML: 0.5, true, AMR)")
    ap.add_argument("--zip", action="append", metavar="A,B", help="axes that vary together (equal lengths)")
    ap.add_argument("-j", "--jobs", type=_jobs, default=1, help="points executed at once (processes, >= 1)")
    ap.add_argument("--quick", action="store_true", default=None, help="set quick=True on every point")
    ap.add_argument("--skip-failed", action="store_true", help="do not run again the points that failed before")
    ap.add_argument("--keep-stale", action="store_true",
                    help="keep points (and runs) finished by other code instead of running them again (listed loudly)")
    ap.add_argument("--dry-run", action="store_true", help="list the points and their status; run nothing")
    ap.add_argument("--summary", type=Path, help="also write the summary table here (.csv or .md)")
    ap.add_argument("--executor", choices=EXECUTORS, default="local",
                    help="local processes (default), or one submitit job per point (SLURM, or submitit's local executor)")
    ap.add_argument("--partition", default="", help="SLURM partition (--executor slurm)")
    ap.add_argument("--gpus-per-job", type=int, default=0, help="GPUs per point's job (submitit executors)")
    ap.add_argument("--cpus-per-job", type=int, default=2, help="CPUs per point's job (submitit executors)")
    ap.add_argument("--time-min", type=int, default=120, help="time limit of a point's job in minutes (submitit executors)")
    args = ap.parse_args(argv)
    with stale_policy_env(args.keep_stale):
        return _run(args)


SUMMARY_SUFFIXES = (".md", ".csv")


def _run(args) -> int:
    try:
        if args.summary and args.summary.suffix not in SUMMARY_SUFFIXES:
            raise GridError(f"--summary {args.summary}: expected a file ending in {' or '.join(SUMMARY_SUFFIXES)}")
        grids = _grids_from_args(args)
        if args.dry_run:
            with dry_run():  # plans every point, generates and pretrains nothing
                pts = plan(grids, args.quick)
        else:
            pts = plan(grids, args.quick)  # every point checked and identified before anything runs
    except (GridError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print_dry_run(grids, pts)
        return 0
    t0 = time.time()
    try:
        df = run_batch(grids, args.jobs, args.quick, skip_failed=args.skip_failed, executor=args.executor,
                       cluster=ClusterOptions(args.partition, args.gpus_per_job, args.cpus_per_job, args.time_min),
                       points=pts)
    except (RunsFolderError, DiskFullError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        done = sum(point_status(p.folder, p.code) == "finished" for p in pts)
        print(f"\ninterrupted: the batch of {len(pts)} point(s), {done} finished; run the same command again to "
              "resume (finished points are kept, interrupted runs resume from their last checkpoint)", file=sys.stderr)
        return 130
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(df.drop(columns=["folder"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    n_failed = int((df["status"] == "failed").sum())
    print(f"[batch] {len(df)} points in {time.time() - t0:.0f} s: "
          + ", ".join(f"{n} {s}" for s, n in df["status"].value_counts().items()))
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        if args.summary.suffix == ".csv":
            df.to_csv(args.summary, index=False)
        else:
            write_text(args.summary, df.drop(columns=["folder"]).to_markdown(index=False) + "\n")
    if n_failed:
        for _, r in df[df["status"] == "failed"].iterrows():
            print(f"[batch] FAILED {r['notebook']} {r['point']}: {r['error']} (see {r['folder']}/error.txt)",
                  file=sys.stderr)
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
