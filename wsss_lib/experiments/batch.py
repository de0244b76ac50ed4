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
import os
import sys
import time
from pathlib import Path

import pandas as pd

# the batch runner's API, where its users import it from (its parts: grids, points, executors)
from wsss_lib.experiments.executors import EXECUTORS, ClusterOptions, run_batch
from wsss_lib.experiments.grids import Grid, GridError, load_grids, parse_value
from wsss_lib.experiments.points import (Point, _label, notebook_accepts, plan, plan_point, point_id,  # noqa: F401
                                         point_status, resolve_paths, run_point)
from wsss_lib.runs.folders import STALE_ENV, RunsFolderError
from wsss_lib.util.io import DiskFullError, write_text
from wsss_lib.util.making import dry_run


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


__all__ = ["ClusterOptions", "Grid", "GridError", "load_grids", "main", "notebook_accepts", "plan", "plan_point",
           "point_id", "point_status", "resolve_paths", "run_batch", "run_point", "stale_policy_env"]

if __name__ == "__main__":
    sys.exit(main())
