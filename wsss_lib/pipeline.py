"""The main job (README command 1): the whole pipeline on the embedded benchmark, into ``reports/``.

    python -m wsss_lib.pipeline                 # default benchmark, default seeds
    python -m wsss_lib.pipeline --quick         # tiny settings (smoke test, < 1 minute)
    python -m wsss_lib.pipeline --only benchmark

Every stage is a function of explicit parameters and upstream run folders; runs are cached by a
hash of their parameters under ``runs/``, so a second invocation reuses finished runs and resumes
interrupted ones.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .data.synthetic import DEFAULT_SPEC, QUICK_SPEC, ensure_benchmark
from .io import read_json, write_json
from .report import benchmark_report, environment_summary

STAGES = ("benchmark",)


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def run_benchmark_stage(reports: Path, quick: bool) -> Path:
    spec = QUICK_SPEC if quick else DEFAULT_SPEC
    t0 = time.perf_counter()
    voc = ensure_benchmark(spec)
    took = time.perf_counter() - t0
    gen_file = voc.parents[1] / "generation_time.json"
    gen_s = read_json(gen_file)["seconds"] if gen_file.exists() else took
    md = benchmark_report(voc, reports, generation_seconds=gen_s)
    print(f"[benchmark] {voc} (generated in {gen_s:.1f} s); report: {md}")
    return voc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m wsss_lib.pipeline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    ap.add_argument("--reports", type=Path, default=None, help="output folder (default: reports/, "
                    "or reports/quick/ with --quick)")
    ap.add_argument("--only", choices=STAGES, action="append", help="run only these stages")
    args = ap.parse_args(argv)
    reports = args.reports or (repo_root() / "reports" / ("quick" if args.quick else ""))
    reports.mkdir(parents=True, exist_ok=True)
    stages = args.only or list(STAGES)
    t0 = time.perf_counter()
    if "benchmark" in stages:
        run_benchmark_stage(reports, args.quick)
    write_json(reports / "environment.json", environment_summary())
    print(f"[pipeline] done in {time.perf_counter() - t0:.1f} s; see {reports}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
