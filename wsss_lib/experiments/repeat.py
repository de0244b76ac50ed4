"""How far the main job's numbers move when it is run again elsewhere: another clone, another
runs folder, another number of threads per run.

    make run                                          # the first run: runs/ of this checkout
    (cd /elsewhere/clone && WSSS_RUNS=/elsewhere/runs make run ARGS="-j 1")   # the repeat: 2 threads a run
    python -m wsss_lib.experiments.repeat --other /elsewhere/runs   # -> reports/repeat.md

Points are matched by their folder name, which is their identity (the resolved configuration, data,
weights and upstream runs: the thread count is not part of it, so both runs name the same point
the same way). For every headline metric of every matched point the table gives both values and
their difference, and, per stage and metric, the largest difference and the decimal digits it
supports: ``d`` digits when every point moved by less than half a unit of the ``d``-th digit (a
number that moves in the third digit is not printed to the third). Tables and discussions quote
numbers to those digits. Every paired comparison of the tables (a row against its reference, seed by
seed) is made from both folders too: both verdicts, and how far the per-seed differences moved, which
sets the digits of the tables' paired differences and their "ordering in the repeat" column.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from wsss_lib.experiments.results import collect
from wsss_lib.reporting.tables.core import paired, paired_verdict
from wsss_lib.reporting.tables.pages import ALL_TABLES
from wsss_lib.runs.folders import runs_root
from wsss_lib.runs.profile import FULL, Profile
from wsss_lib.stages import stage_of_notebook
from wsss_lib.util.io import read_json, write_json, write_text
from wsss_lib.util.paths import REPO

#: besides each stage's main metrics: the health figures and the segmentation numbers
EXTRA_METRICS = ("dead_head_units", "empty_maps_oaa_plus", "dead_head_units_compensation", "seg_miou", "pseudo_miou")


def supported_digits(max_delta: float, most: int = 3) -> int:
    """The decimal digits a value that moves by ``max_delta`` supports: the largest ``d <= most``
    with ``max_delta < 0.5 * 10**-d`` (0 when it moves by half a unit or more)."""
    for d in range(most, 0, -1):
        if max_delta < 0.5 * 10.0 ** -d:
            return d
    return 0


def _metrics_of(notebook: str, columns) -> list[str]:
    st = stage_of_notebook(notebook)
    main = list(st.main_metrics) if st is not None else []
    return [m for m in dict.fromkeys(main + list(EXTRA_METRICS)) if m in columns]


def _threads(df: pd.DataFrame) -> str:
    counts = set()
    for d in df.get("run_dir", pd.Series(dtype=object)).dropna():
        p = Path(d) / "params.json"
        if p.exists():
            counts.add(read_json(p).get("environment", {}).get("cpu_threads"))
    return ", ".join(str(c) for c in sorted(c for c in counts if c is not None)) or "?"


def compare(first: pd.DataFrame, repeat: pd.DataFrame) -> pd.DataFrame:
    """One row per (matched point, metric): both values and their absolute difference."""
    b = repeat.set_index("point")
    rows = []
    for _, a in first.iterrows():
        if a["point"] not in b.index:
            continue
        r = b.loc[a["point"]]
        label = ", ".join(f"{k[2:]}={a[k]}" for k in sorted(first.columns)
                          if k.startswith("p.") and k != "p.quick" and pd.notna(a[k]))
        for m in _metrics_of(a["notebook"], first.columns):
            va, vb = a.get(m), r.get(m)
            if pd.notna(va) and pd.notna(vb):
                rows.append({"notebook": a["notebook"], "point": label, "metric": m, "first": float(va),
                             "repeat": float(vb), "|difference|": abs(float(va) - float(vb))})
    return pd.DataFrame(rows)


def summary(diffs: pd.DataFrame) -> pd.DataFrame:
    """Per notebook and metric: points, the largest and the median difference, supported digits."""
    g = diffs.groupby(["notebook", "metric"])["|difference|"]
    out = pd.DataFrame({"points": g.size(), "largest": g.max(), "median": g.median()})
    out["digits supported"] = [supported_digits(v) for v in out["largest"]]
    out["bit for bit"] = g.apply(lambda s: bool((s == 0).all()))
    return out


def orderings(first: pd.DataFrame, repeat: pd.DataFrame, profile: Profile = FULL) -> pd.DataFrame:
    """Every paired comparison of the tables (each row against its table's reference row, per seed:
    :func:`wsss_lib.reporting.tables.core.paired`) made from both runs folders: the verdicts of both,
    and how far the per-seed differences moved (the seeds both made)."""
    rows = []
    for name, table in ALL_TABLES.items():
        if table.columns:
            continue
        ref_a, a = paired(table, first, profile)
        ref_b, b = paired(table, repeat, profile)
        if ref_a is None or ref_a != ref_b:
            continue
        for label in (label for label in a if label in b):  # in the table's order
            seeds = sorted(a[label].keys() & b[label].keys())
            if not seeds:
                continue
            da, db = [a[label][s] for s in seeds], [b[label][s] for s in seeds]
            rows.append({"table": name, "row": label, "against": ref_a, "seeds": ", ".join(map(str, seeds)),
                         "first": ", ".join(f"{x:+.4f}" for x in da), "repeat": ", ".join(f"{x:+.4f}" for x in db),
                         "ordering": paired_verdict(da), "ordering in the repeat": paired_verdict(db),
                         "largest move": max(abs(x - y) for x, y in zip(da, db))})
    return pd.DataFrame(rows)


def report(first_root: Path, other_root: Path) -> tuple[str, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    first, repeat = collect(first_root / "batch"), collect(other_root / "batch")
    diffs = compare(first, repeat)
    if diffs.empty:
        raise ValueError(f"no point of {first_root} is finished in {other_root} too: nothing to compare")
    summ = summary(diffs)
    orders = orderings(first, repeat)
    same = int((orders["ordering"] == orders["ordering in the repeat"]).sum()) if not orders.empty else 0
    fmt = lambda v: f"{v:.2e}" if 0 < v < 1e-3 else f"{v:.4f}"  # noqa: E731
    text = "\n".join([
        "# The main job run twice: how far each number moves", "",
        "`python -m wsss_lib.experiments.repeat` (wsss_lib/experiments/repeat.py). The first run: this checkout's "
        f"runs folder, threads per run {_threads(first)}; the repeat: another clone and runs folder, threads per run "
        f"{_threads(repeat)}. {len(set(diffs['point']))} points matched by identity. On one machine with the same "
        "threads, a run is reproduced bit for bit (a killed run resumes to the same weights and maps: "
        "tests/test_runs.py, tests/test_classifier_stage.py); what moves below is the arithmetic of another thread "
        "count (the order of floating-point sums), amplified by training.", "",
        "## Per stage and metric", "",
        summ.reset_index().to_markdown(index=False, floatfmt=".4f"), "",
        "A metric is quoted to the digits its largest difference supports (`digits supported`: every point "
        "moved by less than half a unit of that digit).", "",
        "## The orderings in both runs", "",
        "Every paired comparison of the tables (a row against its table's reference row, seed by seed) that both "
        f"runs made: {same} of {len(orders)} keep their verdict. An ordering is claimed where every seed agrees; "
        "one that holds in the repeat too does not depend on the thread count. The paired differences are printed "
        "to the digits their largest move supports.", "",
        (orders.to_markdown(index=False, floatfmt=".4f") if not orders.empty else "_No table row in both runs._"), "",
        "## Every point", "",
        diffs.assign(**{"|difference|": diffs["|difference|"].map(fmt)}).to_markdown(index=False, floatfmt=".4f"), ""])
    return text, diffs, summ, orders


def digits_record(summ: pd.DataFrame, orders: pd.DataFrame | None = None) -> dict:
    """What the tables read (:func:`wsss_lib.reporting.tables.core.repeat_record`): per metric, the
    fewest digits any stage's points of it support, and the largest difference behind that; per table,
    the digits its paired differences support and, per row, the verdict on the repeat's runs."""
    by_metric = summ.reset_index().groupby("metric")
    record = {"digits": {m: int(g["digits supported"].min()) for m, g in by_metric},
              "largest": {m: float(g["largest"].max()) for m, g in by_metric}}
    if orders is not None and not orders.empty:
        by_table = orders.groupby("table")
        record["difference_digits"] = {t: supported_digits(float(g["largest move"].max())) for t, g in by_table}
        record["difference_largest"] = {t: float(g["largest move"].max()) for t, g in by_table}
        record["orderings"] = {t: dict(zip(g["row"], g["ordering in the repeat"])) for t, g in by_table}
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m wsss_lib.experiments.repeat", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--other", type=Path, required=True, help="the runs folder of the repeat")
    ap.add_argument("--first", type=Path, default=None, help="the runs folder of the first run (default: this one's)")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "repeat.md")
    args = ap.parse_args(argv)
    try:
        text, _, summ, orders = report(args.first or runs_root(), args.other)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_text(args.out, text)
    write_json(args.out.with_suffix(".json"), digits_record(summ, orders))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
