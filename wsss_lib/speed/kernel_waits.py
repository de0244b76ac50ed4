"""Benchmark: how long a papermill run waits on replies its client missed, with papermill's own kernel
client and with the project's (:mod:`wsss_lib.experiments.kernels`), side by side.

One generated notebook of cells like the project's (an ipywidgets ``interactive``, a matplotlib
figure, output printed from a thread, a tqdm bar) is executed ``--runs`` times with each client in
turn, under a cell timeout of ``--cell-timeout`` seconds: a reply whose socket wake-up was missed
costs papermill's client the whole timeout (without one, papermill's default, the run never ends);
the project's client reads it within its poll slice. Prints (and writes to ``--out``) each run's
seconds, the runs slower than ``--slow`` seconds and the ratio of the totals::

    python -m wsss_lib.speed.kernel_waits --runs 12 --out reports/kernel_waits.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from wsss_lib.experiments.kernels import KERNEL_ARGS, POLL_SLICE_S, SteadyKernelManager
from wsss_lib.util.io import write_text

#: the cells of the generated notebook, one of each kind in turn after the imports
CELLS = (
    "for _ in tqdm(range(50)):\n    time.sleep(0.001)",
    "def talk():\n    for j in range(20):\n        print('thread', j, file=sys.stderr)\n"
    "t = threading.Thread(target=talk); t.start(); print('main'); t.join()",
    "display(widgets.interactive(lambda v: print(v), v=widgets.IntSlider(3)))",
    "fig, ax = plt.subplots(); ax.plot([1, 2, 3]); plt.show(); print('x' * 2000)",
)
SETUP = ("import sys, threading, time\nimport ipywidgets as widgets\nimport matplotlib\nmatplotlib.use('Agg')\n"
         "import matplotlib.pyplot as plt\nfrom tqdm.auto import tqdm")


def stress_notebook(path: Path, n_cells: int = 80) -> Path:
    """Write the benchmark's notebook (``n_cells`` cells after the imports) to ``path``."""
    import nbformat  # lazy: heavy: the Jupyter stack, only for this benchmark

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP)] + [nbformat.v4.new_code_cell(CELLS[i % len(CELLS)])
                                                     for i in range(n_cells)]
    nbformat.write(nb, str(path))
    return path


def measure(runs: int, cell_timeout: int, n_cells: int = 80) -> dict[str, list[float]]:
    """Seconds of each run, ``{"papermill": [...], "project": [...]}``, the two clients alternating."""
    import papermill as pm  # lazy: heavy: the Jupyter stack, only for this benchmark

    out: dict[str, list[float]] = {"papermill": [], "project": []}
    with tempfile.TemporaryDirectory(prefix="wsss-kernel-waits-") as tmp:
        src = stress_notebook(Path(tmp) / "stress.ipynb", n_cells)
        for k in range(runs):
            for name in out:
                extra = {"kernel_manager_class": SteadyKernelManager} if name == "project" else {}
                t0 = time.perf_counter()
                pm.execute_notebook(str(src), str(Path(tmp) / f"{name}.ipynb"), kernel_name="python3",
                                    progress_bar=False, execution_timeout=cell_timeout,
                                    extra_arguments=KERNEL_ARGS, **extra)
                out[name].append(time.perf_counter() - t0)
            print(f"run {k + 1}/{runs}: papermill's client {out['papermill'][-1]:.1f} s, the project's "
                  f"{out['project'][-1]:.1f} s", file=sys.stderr, flush=True)
    return out


def report(times: dict[str, list[float]], cell_timeout: int, slow: float, n_cells: int) -> str:
    import ipykernel  # lazy: heavy: only to name the versions
    import jupyter_client  # lazy: heavy: only to name the versions
    import zmq  # lazy: heavy: only to name the versions

    lines = ["# Benchmark: waits on missed kernel replies", "",
             f"`python -m wsss_lib.speed.kernel_waits` on {platform.machine()} ({platform.python_version()}, "
             f"ipykernel {ipykernel.__version__}, jupyter_client {jupyter_client.__version__}, pyzmq "
             f"{zmq.__version__}): one notebook of {n_cells + 1} cells (widgets, a figure, output from a thread, a "
             f"progress bar) executed {len(times['project'])} times with each kernel client in turn, cell timeout "
             f"{cell_timeout} s. papermill's client waits out the timeout on a reply whose wake-up it missed (with "
             f"no timeout, papermill's default, it waits forever); the project's polls in slices of "
             f"{POLL_SLICE_S} s.", "",
             "| kernel client | runs | median (s) | max (s) | total (s) | runs over " + f"{slow:g} s |",
             "|:--|--:|--:|--:|--:|--:|"]
    for name, label in (("papermill", "papermill's (jupyter_client's AsyncKernelClient)"),
                        ("project", "the project's (SteadyKernelManager)")):
        v = times[name]
        lines.append(f"| {label} | {len(v)} | {statistics.median(v):.1f} | {max(v):.1f} | {sum(v):.1f} | "
                     f"{sum(x > slow for x in v)} |")
    ratio = sum(times["papermill"]) / sum(times["project"])
    lines += ["", f"Total time, papermill's client over the project's: **{ratio:.2f}x** (same notebook, same "
              "machine, the two alternating in one process).", "",
              "Seconds per run, in order: papermill's " + ", ".join(f"{x:.1f}" for x in times["papermill"])
              + "; the project's " + ", ".join(f"{x:.1f}" for x in times["project"]) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=12, help="executions per client (default 12)")
    ap.add_argument("--cell-timeout", type=int, default=20, help="papermill's execution_timeout in seconds")
    ap.add_argument("--cells", type=int, default=80, help="cells after the imports (default 80)")
    ap.add_argument("--slow", type=float, default=10.0, help="a run slower than this many seconds is counted")
    ap.add_argument("--out", default="", help="write the report here too (e.g. reports/kernel_waits.md)")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.cell_timeout < 1 or args.cells < 1:
        ap.error(f"--runs, --cell-timeout and --cells must be positive (got {args.runs}, {args.cell_timeout}, "
                 f"{args.cells})")
    text = report(measure(args.runs, args.cell_timeout, args.cells), args.cell_timeout, args.slow, args.cells)
    print(text)
    if args.out:
        write_text(Path(args.out), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
