"""Where points run: worker processes on this machine (the default), or one submitit job per point (SLURM, or submitit's local executor). Every executor runs :func:`~wsss_lib.experiments.points.run_point` in the same point folders, so skip, resume, locks and failure capture do not change."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
from tqdm.auto import tqdm

from wsss_lib.experiments.grids import Grid
from wsss_lib.experiments.points import Point, _label, _set_point, main_metrics, plan, point_status, run_point
from wsss_lib.runs.folders import RunsFolderError, runs_root, stale_policy
from wsss_lib.util.io import read_json, write_json, write_text

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
        import submitit  # lazy: optional: absent on some machines (the except clause says what then)
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


def _kill_tree(pid: int) -> None:
    """Kill a worker and every process under it (its notebook kernel is not its child's child in every
    launcher, and a kernel left running would go on training after the batch has stopped)."""
    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def _die_with_parent(parent: int) -> None:
    """Worker initializer: a worker ends when the batch process that started it ends, even by
    ``kill -9`` (Linux: the kernel's parent-death signal; elsewhere a thread watching the parent).
    Its notebook kernel follows (the kernel polls its parent, jupyter_client's ``JPY_PARENT_PID``)."""

    try:
        import ctypes  # lazy: optional: absent on some machines (the except clause says what then)

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

    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} is invalid: expected one of {', '.join(EXECUTORS)}")
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} is invalid: expected an integer >= 1 (points executed at once)")

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
        except BaseException:  # Ctrl-C (or any error): stop the workers and their kernels now, their points resume later
            for proc in list(getattr(ex, "_processes", {}).values()):
                _kill_tree(proc.pid)
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
