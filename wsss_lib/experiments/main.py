"""The main job (README command 1, ``make run``): the ordered list of grids through the batch
runner, then the results notebook, into ``reports/``.

    python -m wsss_lib.experiments.main                  # the default benchmark, 3 seeds (about an hour on 2 cores)
    python -m wsss_lib.experiments.main --quick          # the quick profile (a smoke run of a few minutes) -> reports/quick/
    python -m wsss_lib.experiments.main -j 1             # one point at a time
    python -m wsss_lib.experiments.main --segmentation   # also the 3-seed segmentation grids (make segmentation)
    python -m wsss_lib.experiments.main --data VOCdevkit --sbd benchmark_RELEASE/dataset --saliency SAL
                                                         # PASCAL VOC with the papers' recipes (make voc) -> reports/voc/

Runs and grid points are identified by what they are computed with (resolved configs, profile, data
content, weights, upstream runs) under ``runs/``: a second invocation reuses finished points and
resumes interrupted ones, then renders the reports again. Points finished by code that has changed
since are listed and run again (``--keep-stale`` keeps them, and the tables say so). Every table
the full profile renders into ``reports/`` is also copied into the table blocks of the README and of
``docs/`` (:func:`~wsss_lib.reporting.tables.readme.sync_docs`).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import sys
import time
from pathlib import Path

from PIL import Image

from wsss_lib.data.synthetic import ensure_benchmark
from wsss_lib.data.voc import DataError
from wsss_lib.experiments.batch import _jobs, stale_policy_env
from wsss_lib.experiments.executors import run_batch
from wsss_lib.experiments.grids import GridError, load_grids
from wsss_lib.experiments.points import plan
from wsss_lib.experiments.voc import VOCJobError, run_voc_job
from wsss_lib.reporting.benchmark_page import benchmark_report
from wsss_lib.reporting.tables.readme import sync_docs
from wsss_lib.runs.folders import RunsFolderError, runs_root
from wsss_lib.runs.profile import resolve_profile
from wsss_lib.util.environment import environment_summary
from wsss_lib.util.io import DiskFullError, write_json, write_text
from wsss_lib.util.paths import REPO, default_cache_dir

#: the main job's grids, in order (upstream stages first; see notebooks/grids/)
MAIN_GRIDS = ("oaa_fusion.yaml", "evolution.yaml", "oaa_gate.yaml", "oaa_plus_loss.yaml", "amr.yaml",
              "segmentation_main.yaml")
#: added by --segmentation (make segmentation): the 3-seed segmentation tables (about 30 minutes more on 2 cores)
SEGMENTATION_GRIDS = ("segmentation.yaml", "data_fraction.yaml")
#: added by --setting (make setting): the OAA table per benchmark variant and pretraining (hours on 2 cores)
SETTING_GRIDS = ("oaa_setting.yaml", "oaa_setting_mobilenet.yaml", "segmentation_setting.yaml", "segmentation_setting_parts2.yaml",
                 "segmentation_setting_mini.yaml")
#: the executed notebooks shown in reports/notebooks/ as HTML: notebook -> the seed-0 point's parameters
SHOWCASE = {"01_train_classifier_oaa.ipynb": {"seed": 0}, "02_attention_evolution.ipynb": {"seed": 0},
            "03_train_oaa_plus.ipynb": {"loss": "hl", "seed": 0},
            "04_train_amr.ipynb": {"variant": "AMR+both", "seed": 0},
            "05_pseudo_labels_segmentation.ipynb": {"source": "oaa_plus", "attention_params": {"loss": "hl"},
                                                    "mode": "saliency", "seed": 0}}
RESULTS_NOTEBOOK = "07_results_tables.ipynb"
#: the size a published notebook page should stay under (figures are sized for it); a larger page is
#: reported in timings.md, never a failure of the job
MAX_HTML_BYTES = 2 * 2**20


def repo_root() -> Path:
    return REPO


def benchmark(reports: Path, profile) -> Path:
    """Generate (or find) the profile's embedded benchmark and write its report."""

    voc = ensure_benchmark(profile.benchmark(profile.default_variant))
    benchmark_report(voc, reports, profile=profile)  # its generation time: what the generator recorded
    return voc


def export_html(notebook: Path, dest: Path) -> tuple[Path, int]:
    """An executed notebook as a static HTML page (widget state dropped); returns the page and its
    size in bytes (pages over :data:`MAX_HTML_BYTES` are written too, and reported by the caller)."""
    import nbformat  # lazy: heavy: the Jupyter stack, only where a notebook is exported
    from nbconvert import HTMLExporter  # lazy: heavy: the Jupyter stack, only where a notebook is exported

    nb = nbformat.read(str(notebook), as_version=4)
    nb.metadata.pop("widgets", None)
    body, _ = HTMLExporter().from_notebook_node(nb)
    body = compact_images(machine_independent(body))
    write_text(dest, body)
    return dest, len(body.encode())


#: embedded PNGs larger than this are embedded as JPEG in a published page (the PNG files stay lossless)
PNG_TO_JPEG_BYTES = 200_000


def compact_images(html: str, limit: int = PNG_TO_JPEG_BYTES, quality: int = 85) -> str:
    """A page's large embedded PNGs (attention overlays: photograph-like, poorly compressed by PNG)
    re-encoded as JPEG, so a page stays small whatever its figures; small PNGs (plots, text) are
    kept as they are."""

    def jpeg(m: re.Match) -> str:
        raw = base64.b64decode(m.group(1))
        if len(raw) <= limit:
            return m.group(0)
        buf = io.BytesIO()
        Image.open(io.BytesIO(raw)).convert("RGB").save(buf, "JPEG", quality=quality, optimize=True)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()

    return re.sub(r"data:image/png;base64,([A-Za-z0-9+/=\n]+)", jpeg, html)


def machine_independent(text: str) -> str:
    """Where this checkout, its runs and the data cache live, replaced by placeholders, so the
    published pages do not depend on the machine that made them."""

    for path, name in ((runs_root(), "runs"), (repo_root() / "reports", "reports"), (default_cache_dir(), "$WSSS_CACHE"),
                       (repo_root(), ".")):
        text = text.replace(str(Path(path).resolve()), name).replace(str(path), name)
    return text


def showcase(points, reports: Path) -> list[tuple[Path, int]]:
    """The seed-0 executed notebook of each stage, as HTML in ``reports/notebooks/`` (page, bytes)."""
    out = []
    for nb, want in SHOWCASE.items():
        for p in points:
            if p.notebook == nb and all(p.params.get(k) == v for k, v in want.items()):
                src = p.folder / nb
                if src.exists():
                    out.append(export_html(src, reports / "notebooks" / f"{Path(nb).stem}.html"))
                break
    return out


def run_results_notebook(reports: Path, quick: bool) -> tuple[Path, int]:
    """Execute notebook 07 (tables and figures into ``reports``); the executed notebook goes to
    ``<runs root>/results/``, its HTML to ``reports/notebooks/`` (returned with its size)."""
    from wsss_lib.experiments.kernels import execute_notebook  # lazy: heavy: the Jupyter stack, only where a notebook is executed

    src = repo_root() / "notebooks" / RESULTS_NOTEBOOK
    dst = runs_root() / "results" / RESULTS_NOTEBOOK
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.partial.ipynb")
    execute_notebook(src, tmp, parameters={"reports_dir": str(Path(reports).resolve()), "quick": quick}, cwd=src.parent)
    os.replace(tmp, dst)
    return export_html(dst, reports / "notebooks" / f"{Path(RESULTS_NOTEBOOK).stem}.html")


def main(argv: list[str] | None = None) -> int:

    ap = argparse.ArgumentParser(prog="python -m wsss_lib.experiments.main", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the quick profile: tiny settings for a smoke run")
    ap.add_argument("--reports", type=Path, default=None,
                    help="output folder (default: the profile's: reports/, or reports/quick/ with --quick)")
    ap.add_argument("-j", "--jobs", type=_jobs, default=2, help="grid points executed at once (default 2)")
    ap.add_argument("--grids", nargs="+", default=list(MAIN_GRIDS),
                    help=f"grid files under notebooks/grids/, in order (default: {' '.join(MAIN_GRIDS)})")
    ap.add_argument("--segmentation", action="store_true",
                    help=f"also run {' and '.join(SEGMENTATION_GRIDS)} (the 3-seed segmentation tables)")
    ap.add_argument("--setting", action="store_true",
                    help=f"also run {', '.join(SETTING_GRIDS)} (the setting comparison, reports/setting.md)")
    ap.add_argument("--keep-stale", action="store_true",
                    help="keep points finished by code that has changed since (listed loudly; the tables say so)")
    voc = ap.add_argument_group("PASCAL VOC 2012 (make voc): the papers' recipes on real data, instead of the embedded benchmark")
    voc.add_argument("--data", type=Path, default=None, metavar="VOCDEVKIT",
                     help="the VOC 2012 folder (VOCdevkit, VOCdevkit/VOC2012 or the folder above): runs the VOC job")
    voc.add_argument("--sbd", type=Path, default=None, metavar="DATASET",
                     help="SBD's benchmark_RELEASE/dataset folder: the stages train on train_aug (10,582 images)")
    voc.add_argument("--saliency", type=Path, default=None, metavar="FOLDER",
                     help="the saliency maps (<image id>.png) of the training images, for the pseudo labels")
    voc.add_argument("--split", default=None, help="the training split (default: train_aug where SBD or train_aug.txt "
                     "is there, else train)")
    args = ap.parse_args(argv)
    if args.data is None and (args.sbd or args.saliency or args.split):
        ap.error("--sbd, --saliency and --split go with --data (the VOC job)")

    with stale_policy_env(args.keep_stale):  # the points' kernels inherit it
        return run_voc(args) if args.data is not None else run_main_job(args, argv)


def interrupted(what: str) -> int:
    """Say how to resume an interrupted job; its exit status (130, as a shell's for Ctrl-C)."""
    print(f"\ninterrupted: {what}; run the same command again to resume (finished points are kept, "
          "interrupted runs resume from their last checkpoint)", file=sys.stderr)
    return 130


def run_voc(args) -> int:
    """The VOC job (:mod:`wsss_lib.experiments.voc`): its inputs checked first, errors as one line."""
    try:
        return run_voc_job(args.data, args.sbd, args.saliency, args.quick, args.jobs, args.reports, repo_root(),
                           split=args.split)
    except (VOCJobError, DataError, GridError, RunsFolderError, DiskFullError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted("the VOC job")


def run_main_job(args, argv) -> int:
    """The benchmark, the grids, the results notebook and the HTML pages, the timings (see :func:`main`)."""

    try:
        profile = resolve_profile(args.quick, announce=True)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for flag, extra in ((args.segmentation, SEGMENTATION_GRIDS), (args.setting, SETTING_GRIDS)):
        if flag:
            args.grids = list(args.grids) + [g for g in extra if g not in args.grids]
    reports = args.reports or profile.reports_dir(repo_root())
    grids_dir = repo_root() / "notebooks" / "grids"
    quick = True if profile.quick else None
    t0 = time.perf_counter()
    timings = {}
    try:  # names, files and values checked before any work or any write to reports/
        grids = [g for name in args.grids for g in load_grids(grids_dir / name if not Path(name).exists() else name)]
        ensure_benchmark(profile.benchmark(profile.default_variant))  # the data the points are identified by
        points = plan(grids, quick)  # every point checked and identified before anything runs
        reports.mkdir(parents=True, exist_ok=True)
        benchmark(reports, profile)
        timings["benchmark"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        summary = run_batch(grids, args.jobs, quick, points=points)
    except (GridError, RunsFolderError, DiskFullError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted("the main job")
    timings["grids (batch runner)"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    pages = [run_results_notebook(reports, profile.quick), *showcase(points, reports)]
    timings["results notebook + HTML"] = time.perf_counter() - t2
    large = [(p, n) for p, n in pages if n > MAX_HTML_BYTES]
    for p, n in large:
        print(f"[main] note: {p.name} is {n / 2**20:.1f} MiB (over {MAX_HTML_BYTES / 2**20:.0f} MiB)", file=sys.stderr)
    if reports.resolve() == (repo_root() / FULL_REPORTS).resolve() and not profile.quick:

        sync_docs(repo_root())  # the table blocks of README.md and of the docs/ pages that hold some
    total = time.perf_counter() - t0
    failed = summary[summary["status"] == "failed"]
    write_timings(reports, summary, timings, total, args, argv, large)
    write_json(reports / "environment.json", environment_summary())
    write_index(reports)
    print(f"[main] {len(summary)} points, {len(failed)} failed, {len(pages)} notebooks as HTML; "
          f"done in {total:.0f} s; see {reports}")
    return 1 if len(failed) else 0


#: the full profile's reports folder (the one the tables of the README and docs/ are copied from)
FULL_REPORTS = "reports"


def write_timings(reports: Path, summary, timings: dict, total: float, args, argv, large) -> None:
    cols = [c for c in summary.columns if c not in ("folder", "error", "notebook")]
    table = summary[cols].astype(object).where(summary[cols].notna(), "").to_markdown(index=False, floatfmt=".3f")
    argv_s = " ".join(argv if argv is not None else sys.argv[1:])
    notes = [f"- {p.relative_to(reports)}: {n / 2**20:.1f} MiB, over the {MAX_HTML_BYTES / 2**20:.0f} MiB a page "
             "should stay under" for p, n in large]
    write_text(reports / "timings.md", "\n".join([
        f"# Timings of the last `python -m wsss_lib.experiments.main{(' ' + argv_s) if argv_s else ''}`",
        "", f"{len(summary)} grid points ({', '.join(args.grids)}), {args.jobs} at a time, on "
        f"{os.cpu_count()} CPU cores. A point found finished is `cached` (0 s); a point's time includes "
        "waiting for a shared upstream run that another point was making.", "",
        "| phase | seconds |", "|---|---:|", *[f"| {k} | {v:.0f} |" for k, v in timings.items()],
        f"| total | {total:.0f} |", "", *(["## Pages over their size budget", "", *notes, ""] if notes else []),
        "## Batch summary", "", table, ""]))


REPORT_PAGES = [("benchmark.md", "the embedded benchmark: design, measured statistics, saliency quality, CAM properties"),
                ("oaa.md", "classifier + OAA: CAM / OAA-AVE / OAA-MAX, per class, attention evolution, gate variants"),
                ("oaa_plus.md", "OAA+ (MCE, HL): the analogue of OAA Table 2"),
                ("amr.md", "AMR, AMR + threshold + area, the official preset: the report's Tables 1 and 2"),
                ("amr_ablation.md", "AMR: each of the report's modifications alone"),
                ("segmentation.md", "segmentation mIoU on pseudo labels (OAA Table 2 / AMR columns), data fraction (Table 3)"),
                ("setting.md", "the setting comparison: benchmark variant x pretraining (make setting)"),
                ("bench_oaa.md", "benchmark: OAA store overhead per training step, store memory"),
                ("bench_cam.md", "benchmark: AMR's official inference, batched, vs the official loop on the same output"),
                ("timings.md", "how long the last main job took, and its batch summary table")]


def write_index(reports: Path) -> Path:
    lines = ["# Reports", "", "Written by `make run` (`python -m wsss_lib.experiments.main`: the grids through the batch runner, "
             "then `notebooks/07_results_tables.ipynb`) and `python -m wsss_lib.speed.bench`; versions in "
             "`environment.json`.", ""]
    lines += [f"- [{name}]({name}): {what}" for name, what in REPORT_PAGES if (reports / name).exists()]
    nbs = sorted((reports / "notebooks").glob("*.html"))
    if nbs:
        lines += ["", "The executed seed-0 notebooks (static HTML, nothing to run):", ""]
        lines += [f"- [{p.stem}](notebooks/{p.name})" for p in nbs]
    return write_text(reports / "index.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
