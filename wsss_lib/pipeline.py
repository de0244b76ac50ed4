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

import pandas as pd

from .data.synthetic import DEFAULT_SPEC, QUICK_SPEC, ensure_benchmark
from .io import read_json, write_json, write_text
from .runs import run_data_root
from .report import benchmark_report, environment_summary, mean_std_table, write_table

STAGES = ("benchmark", "oaa", "oaa_plus", "amr")
#: published figures, for the "paper" column of our tables (different data and metric: see the text)
OAA_TABLE2 = {"CAM": 53.9, "OAA-AVE": 57.0, "OAA-MAX": 58.6, "OAA+ (MCE)": 51.2, "OAA+ (HL)": 59.6}
REPORT_TABLE1 = {"CAM": None, "AMR": 53.2, "AMR+both": 54.5}
REPORT_TABLE2 = {0.1: 49.2, 0.3: 53.4, 0.5: 56.8, 0.7: 54.5, 0.9: 50.7}
DEFAULT_SEEDS = (0, 1, 2)


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


def execute_notebook(name: str, out_dir: Path, parameters: dict) -> Path | None:
    """Run ``notebooks/<name>`` with papermill into ``out_dir`` (the stage's run folder)."""
    import papermill as pm

    src = repo_root() / "notebooks" / name
    dst = Path(out_dir) / name
    t0 = time.perf_counter()
    pm.execute_notebook(str(src), str(dst), parameters=parameters, kernel_name="python3",
                        cwd=str(src.parent), progress_bar=False)
    print(f"[notebook] {name} executed in {time.perf_counter() - t0:.0f} s -> {dst}")
    return dst


def _collect(runs: dict[int, Path]) -> dict[int, dict]:
    return {seed: read_json(run / "metrics.json") for seed, run in runs.items()}


def run_oaa_stage(reports: Path, seeds: list[int], quick: bool, notebooks: bool = True,
                  used: list[Path] | None = None) -> dict[int, Path]:
    """Classifier + OAA for every seed; the CAM / OAA-AVE / OAA-MAX table and figures. The gate
    variants' run folders are appended to ``used``."""
    import torch

    from .attention_io import load_attention
    from .data.voc import VOCLayout
    from .diagnostics import part_mass
    from .train.classifier import run_classifier_stage
    from .viz import (attention_evolution_figure, save_figure, sources_figure,
                      threshold_curves_figure)

    runs = {}
    for seed in seeds:
        t0 = time.perf_counter()
        runs[seed] = run_classifier_stage(seed=seed, quick=quick)
        print(f"[oaa] seed {seed}: {runs[seed]} ({time.perf_counter() - t0:.0f} s)")
    metrics = _collect(runs)
    names = {"CAM": "cam", "OAA-AVE": "oaa_ave", "OAA-MAX": "oaa_max"}
    table = mean_std_table({label: [metrics[s][f"{key}_miou"] for s in seeds] for label, key in names.items()},
                           "CAM mIoU")
    md = write_table(table, reports / "oaa_table")
    detail = pd.DataFrame({label: {
        "best threshold": _mean(metrics, f"{key}_best_threshold"),
        "fg precision": _mean(metrics, f"{key}_fg_precision"),
        "fg recall": _mean(metrics, f"{key}_fg_recall")} for label, key in names.items()}).T
    detail_md = write_table(detail.rename_axis("source (mean over seeds)"), reports / "oaa_detail")
    cls_map = _mean(metrics, "cls_mAP_val")
    per_class = _per_class_table(runs, names)
    per_class_md = write_table(per_class, reports / "oaa_per_class")

    run0 = runs[seeds[0]]
    params = read_json(run0 / "params.json")["params"]
    data_root = run_data_root(run0)
    layout = VOCLayout(data_root, "train")
    evaluation = read_json(run0 / "evaluation.json")
    save_figure(threshold_curves_figure(evaluation["sources"], f"seed {seeds[0]}: CAM mIoU vs threshold"),
                reports / "oaa_threshold_curves.png")
    sources = {n: load_attention(run0 / "attention" / f"{n}.pt") for n in names.values()}
    picks = list(range(0, len(layout), max(1, len(layout) // 6)))[:6]
    save_figure(sources_figure(layout, sources, picks), reports / "oaa_sources.png")
    snaps = torch.load(run0 / "snapshots.pt", weights_only=False)
    save_figure(attention_evolution_figure(snaps, layout), reports / "attention_evolution.png")

    props = {label: part_mass(sources[key], data_root) for label, key in names.items()}
    props_df = pd.DataFrame(props).T[["part_mass_share", "part_area_share", "object_precision", "object_recall"]]
    props_md = write_table(props_df.rename_axis(f"seed {seeds[0]}"), reports / "benchmark_cam_properties_table")
    write_text(reports / "benchmark_cam_properties.md", f"""## Measured under a trained classifier (seed {seeds[0]})

Does the benchmark have the property it was built for? For each (image, class) map on the first 500
training images: the share of the attention mass (inside the object) that sits on the
discriminative part, against the part's share of the object's area, and the precision/recall of
`A > 0.3` against the object's pixels (`wsss_lib.diagnostics.part_mass`).

{props_md}

A part mass share well above the part area share means the map concentrates on the part.
""")
    benchmark_report(data_root, reports)  # re-render with the measured CAM properties

    write_text(reports / "oaa.md", f"""# OAA on the embedded benchmark

Classifier + OAA, {len(seeds)} seed(s) ({', '.join(map(str, seeds))}), configuration of
`ClassifierConfig` defaults{' (quick)' if quick else ''}: backbone `{params['backbone']}`,
{params['epochs']} epochs, batch {params['batch_size']}, lr {params['lr']} ({params['schedule']}),
augmentation `{params['augment']}`, gate `{params['gate']}` (start epoch {params['gate_start_epoch']},
last-epoch fallback {params['last_epoch_fallback']}). Classification mAP (val) {cls_map:.3f}.

CAM mIoU on the train split (best background threshold of a 0.05-0.95 sweep, per source and seed):

{md}

Mean over seeds of the best threshold and of foreground precision/recall there:

{detail_md}

Per-class IoU (mean over seeds; `*` marks the classes that co-occur with context: water under
barge, rails under tram, both background in the masks):

{per_class_md}

![threshold curves](oaa_threshold_curves.png)

![sources](oaa_sources.png)

![attention evolution](attention_evolution.png)

Run folders: {', '.join(_rel(r) for r in runs.values())}.
""")
    variants_md, variant_runs = _oaa_variants(reports, seeds[0], quick, metrics[seeds[0]])
    if used is not None:
        used += variant_runs
    text = (reports / "oaa.md").read_text() + variants_md
    write_text(reports / "oaa.md", text)
    if notebooks:
        execute_notebook("01_train_classifier_oaa.ipynb", run0, {"seed": seeds[0], "quick": quick})
        execute_notebook("02_attention_evolution.ipynb", run0, {"oaa_run": str(run0), "quick": quick})
    return runs


def run_oaa_plus_all(reports: Path, seeds: list[int], quick: bool, oaa_runs: dict[int, Path],
                     notebooks: bool = True) -> dict:
    """OAA+ with MCE and HL on each seed's OAA-MAX maps: the analogue of OAA Table 2."""
    from .attention_io import load_attention
    from .data.voc import VOCLayout
    from .train.oaa_plus import run_oaa_plus_stage
    from .viz import save_figure, sources_figure

    runs = {}
    for loss in ("mce", "hl"):
        for seed in seeds:
            t0 = time.perf_counter()
            runs[loss, seed] = run_oaa_plus_stage(oaa_run=str(oaa_runs[seed]), seed=seed, quick=quick, loss=loss)
            print(f"[oaa+] {loss} seed {seed}: {runs[loss, seed]} ({time.perf_counter() - t0:.0f} s)")
    up = _collect(oaa_runs)
    mine = {key: _collect({s: r for (l, s), r in runs.items() if l == key}) for key in ("mce", "hl")}
    rows = {"CAM": [up[s]["cam_miou"] for s in seeds], "OAA-AVE": [up[s]["oaa_ave_miou"] for s in seeds],
            "OAA-MAX": [up[s]["oaa_max_miou"] for s in seeds],
            "OAA+ (MCE)": [mine["mce"][s]["oaa_plus_miou"] for s in seeds],
            "OAA+ (HL)": [mine["hl"][s]["oaa_plus_miou"] for s in seeds]}
    table = mean_std_table(rows, "CAM mIoU")
    table.insert(0, "OAA Table 2 row", ["1", "2", "3", "4", "5"])
    table["paper (seg. val mIoU %)"] = [f"{OAA_TABLE2[k]:.1f}" for k in table.index]
    md = write_table(table, reports / "oaa_plus_table")
    run0 = oaa_runs[seeds[0]]
    layout = VOCLayout(run_data_root(run0), "train")
    srcs = {"cam": load_attention(run0 / "attention" / "cam.pt"),
            "oaa_max": load_attention(run0 / "attention" / "oaa_max.pt"),
            "oaa+ mce": load_attention(runs["mce", seeds[0]] / "attention" / "oaa_plus.pt"),
            "oaa+ hl": load_attention(runs["hl", seeds[0]] / "attention" / "oaa_plus.pt")}
    picks = list(range(0, len(layout), max(1, len(layout) // 6)))[:6]
    save_figure(sources_figure(layout, srcs, picks), reports / "oaa_plus_sources.png")
    write_text(reports / "oaa_plus.md", f"""# OAA+ on the embedded benchmark

The analogue of OAA Table 2 (rows 1-5): CAM mIoU on the train split, {len(seeds)} seed(s). The
paper's column is the *segmentation* mIoU on VOC val of a DeepLab trained on each source's pseudo
labels (with saliency), so only the ordering is comparable, not the values.

{md}

![sources](oaa_plus_sources.png)
""")
    if notebooks:
        execute_notebook("03_train_oaa_plus.ipynb", runs["hl", seeds[0]],
                         {"oaa_run": str(run0), "seed": seeds[0], "loss": "hl", "quick": quick})
    return {"table": table, "runs": runs}


#: the AMR table's rows: label -> run_amr_stage parameters (paper preset unless said)
AMR_ROWS = {"AMR": {"variant": "AMR"}, "AMR+both": {"variant": "AMR+both"},
            "AMR (official preset)": {"variant": "AMR", "preset": "official"}}
AMR_ABLATION_ROWS = {"AMR+threshold": {"variant": "AMR+threshold"}, "AMR+area": {"variant": "AMR+area"}}


def run_amr_all(reports: Path, seeds: list[int], quick: bool, oaa_runs: dict[int, Path],
                ablation: bool = False, notebooks: bool = True) -> dict:
    """AMR and AMR + both modifications (the report's Table 1), and the xi curve (its Table 2);
    with ``ablation``, also each modification alone (``amr_ablation.md``)."""
    import matplotlib.pyplot as plt

    from .train.amr import REPORT_XI, run_amr_stage
    from .viz import save_figure

    variants = tuple(AMR_ROWS)
    todo = {**AMR_ROWS, **(AMR_ABLATION_ROWS if ablation else {})}
    runs = {}
    for label, params in todo.items():
        for seed in seeds:
            t0 = time.perf_counter()
            runs[label, seed] = run_amr_stage(seed=seed, quick=quick, init_from=str(oaa_runs[seed]), **params)
            print(f"[amr] {label} seed {seed}: {runs[label, seed]} ({time.perf_counter() - t0:.0f} s)")
    up = _collect(oaa_runs)
    mets = {v: _collect({s: r for (vv, s), r in runs.items() if vv == v}) for v in variants}
    rows = {"CAM (= frozen spotlight)": [up[s]["cam_miou"] for s in seeds]}
    for v in variants:
        rows[f"{v} (xi 0.5)"] = [mets[v][s]["amr_miou"] for s in seeds]
        rows[f"{v} compensation only"] = [mets[v][s]["amr_compensation_miou"] for s in seeds]
    table = mean_std_table(rows, "CAM mIoU")
    md = write_table(table, reports / "amr_table")
    xi_rows = {}
    for v in variants:
        for x in REPORT_XI:
            vals = [mets[v][s][f"amr_xi{x:g}_miou"] for s in seeds]
            xi_rows.setdefault(x, {})[f"{v} mean"] = sum(vals) / len(vals)
    xi_df = pd.DataFrame(xi_rows).T.rename_axis("xi")
    report_col = [REPORT_TABLE2[x] for x in xi_df.index]
    xi_df["report (VOC test mIoU %)"] = [f"{v:.1f}" for v in report_col]
    xi_md = write_table(xi_df, reports / "amr_xi_table")
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for v in variants:
        ax.plot(list(xi_df.index), xi_df[f"{v} mean"], marker="o", label=f"{v} (ours, CAM mIoU)")
    ax.set_xlabel("xi")
    ax.set_ylabel("CAM mIoU (train), mean over seeds")
    ax2 = ax.twinx()
    ax2.plot(list(xi_df.index), report_col, "k--", marker="x", label="report (VOC, %)")
    ax2.set_ylabel("report's mIoU (%)")
    ax.legend(fontsize=7, loc="lower left")
    ax2.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    save_figure(fig, reports / "amr_xi_curve.png")
    write_text(reports / "amr.md", f"""# AMR on the embedded benchmark

The analogue of the reproduction report's Table 1 (CAM, AMR, AMR with Gaussian threshold
modulation and the area regularizer), {len(seeds)} seed(s), weighted CAM at xi = 0.5 (the report's
value, fixed before looking at our sweep). The spotlight branch is each seed's classifier,
frozen (the official recipe), so the CAM row is exactly the spotlight branch. The report measured
VOC *test* mIoU after refinement (Original-AMR 56.8, Recurrence-AMR 53.2, Improvement-AMR 54.5).

Rows "AMR" and "AMR+both" use the `paper` preset (the report's equations: paper-form AMM with
per-image Gaussian statistics, CPS (eq. 6) on max-normalized maps of the present classes, weights
0.5/0.5/1). "AMR (official preset)" uses the official code's recipe: the official AMM
(`wsss_lib.models.amm.AMM(form="official")`, tested equal to the official module), CPS on the raw
ReLU CAMs of all classes, weights 0.5/0.5/0.05, frozen spotlight, the compensation branch's first
stage detached; on the `tiny` backbone (no bottlenecks) the AMM sits after each stage.

{md}

The xi sweep (the report's Table 2), mean over seeds:

{xi_md}

![xi curve](amr_xi_curve.png)
""")
    if ablation:
        _amr_ablation(reports, seeds, runs, up)
    if notebooks:
        v0 = "AMR+both"
        execute_notebook("04_train_amr.ipynb", runs[v0, seeds[0]],
                         {"seed": seeds[0], "variant": v0, "init_from": str(oaa_runs[seeds[0]]), "quick": quick})
    return {"table": table, "xi": xi_df, "runs": runs}


OAA_VARIANTS = {
    "official gate (top-k, from epoch 2, last-epoch fallback)": {"gate": "topk", "gate_start_epoch": 1,
                                                                  "last_epoch_fallback": True},
    "paper gate, accumulation from epoch 6": {"gate_start_epoch": 5},
}


def _oaa_variants(reports: Path, seed: int, quick: bool, base: dict) -> tuple[str, list[Path]]:
    """Gate / schedule variants of OAA on one seed: is the gate or early noise why OAA does (not) help?"""
    from .train.classifier import run_classifier_stage

    rows = {"paper gate (default)": base}
    runs = []
    for label, kw in OAA_VARIANTS.items():
        if quick and kw.get("gate_start_epoch", 0) >= 2:
            kw = {**kw, "gate_start_epoch": 1}  # quick runs have 2 epochs
        run = run_classifier_stage(seed=seed, quick=quick, **kw)
        runs.append(run)
        rows[label] = read_json(run / "metrics.json")
    df = pd.DataFrame({label: {"CAM": m["cam_miou"], "OAA-AVE": m["oaa_ave_miou"], "OAA-MAX": m["oaa_max_miou"],
                               "OAA-MAX fg precision": m["oaa_max_fg_precision"],
                               "OAA-MAX fg recall": m["oaa_max_fg_recall"],
                               "pairs ever accepted": m["oaa_accepted_fraction"]}
                       for label, m in rows.items()}).T.rename_axis(f"seed {seed}")
    md = write_table(df, reports / "oaa_variants")
    return f"""
## Gate and schedule variants (seed {seed})

The same training with the official code's gate (top-k, k = number of labels, accumulation from
the second epoch, last-epoch fallback) and with the paper's gate but accumulation starting at
epoch 6, to see whether noisy early maps or the gate explain the OAA-MAX result:

{md}
""", runs


def _per_class_table(runs: dict[int, Path], names: dict[str, str]) -> pd.DataFrame:
    """Per-class IoU at each source's best threshold, mean over seeds; context classes starred."""
    import numpy as np

    from .data.synthetic import CLASS_NAMES, CONTEXT_OF_CLASS

    cols = {}
    for label, key in names.items():
        rows = [read_json(r / "evaluation.json")["sources"][key]["per_class_iou"] for r in runs.values()]
        cols[label] = np.nanmean(np.array(rows, dtype=float), axis=0)
    first = run_data_root(next(iter(runs.values())))
    from .data.voc import read_class_names

    classes = list(read_class_names(first))
    starred = {CLASS_NAMES[c] for c in CONTEXT_OF_CLASS}
    index = [f"{c} *" if c in starred else c for c in classes]
    df = pd.DataFrame(cols, index=index).rename_axis("class")
    df[f"{list(names)[-1]} - {list(names)[0]}"] = df.iloc[:, -1] - df.iloc[:, 0]
    return df


REPORT_PAGES = [("benchmark.md", "the embedded benchmark: design, measured statistics, CAM properties"),
                ("oaa.md", "classifier + OAA: CAM / OAA-AVE / OAA-MAX, per class, attention evolution"),
                ("oaa_plus.md", "OAA+ (MCE, HL): the analogue of OAA Table 2"),
                ("amr.md", "AMR and AMR + threshold + area: the report's Tables 1 and 2"),
                ("amr_ablation.md", "AMR: each of the report's modifications alone"),
                ("bench_oaa.md", "benchmark: OAA store overhead per training step, store memory"),
                ("bench_cam.md", "benchmark: batched multi-scale CAM inference vs a per-class loop"),
                ("timings.md", "how long the last pipeline run took")]


def write_index(reports: Path) -> Path:
    lines = ["# Reports", "", "Written by `python -m wsss_lib.pipeline` (README command 1) and "
             "`python -m wsss_lib.bench`; versions in `environment.json`.", ""]
    lines += [f"- [{name}]({name}): {what}" for name, what in REPORT_PAGES if (reports / name).exists()]
    return write_text(reports / "index.md", "\n".join(lines) + "\n")


def _amr_ablation(reports: Path, seeds: list[int], runs: dict, up: dict) -> None:
    rows = {"CAM (= frozen spotlight)": [up[s]["cam_miou"] for s in seeds]}
    detail = {}
    for v in ("AMR", "AMR+threshold", "AMR+area", "AMR+both"):
        mets = _collect({s: r for (vv, s), r in runs.items() if vv == v})
        rows[f"{v} (xi 0.5)"] = [mets[s]["amr_miou"] for s in seeds]
        detail[v] = {"compensation only": _mean(mets, "amr_compensation_miou"),
                     "best xi (mean)": _mean(mets, "amr_best_xi"),
                     "fg precision (xi 0.5)": _mean(mets, "amr_xi0.5_fg_precision"),
                     "fg recall (xi 0.5)": _mean(mets, "amr_xi0.5_fg_recall")}
    md = write_table(mean_std_table(rows, "CAM mIoU"), reports / "amr_ablation")
    md2 = write_table(pd.DataFrame(detail).T.rename_axis("variant (mean over seeds)"), reports / "amr_ablation_detail")
    write_text(reports / "amr_ablation.md", f"""# AMR ablation: each modification of the report alone

Gaussian threshold modulation (report eq. 9) and the area regularizer (report eq. 10), each alone
and together, {len(seeds)} seed(s), weighted CAM at xi = 0.5.

{md}

{md2}
""")


def _rel(path: Path) -> str:
    """A run folder as shown in reports: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(repo_root()))
    except ValueError:
        return str(path)


def _mean(metrics: dict[int, dict], key: str) -> float:
    return float(sum(m[key] for m in metrics.values()) / len(metrics))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m wsss_lib.pipeline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    ap.add_argument("--reports", type=Path, default=None, help="output folder (default: reports/, "
                    "or reports/quick/ with --quick)")
    ap.add_argument("--only", choices=STAGES, action="append", help="run only these stages")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help=f"seeds of every training stage (default: {' '.join(map(str, DEFAULT_SEEDS))}; quick: 0)")
    ap.add_argument("--no-notebooks", action="store_true", help="do not execute the notebooks with papermill")
    ap.add_argument("--amr-ablation", action="store_true",
                    help="also run AMR+threshold and AMR+area (each modification alone)")
    args = ap.parse_args(argv)
    reports = args.reports or (repo_root() / "reports" / ("quick" if args.quick else ""))
    reports.mkdir(parents=True, exist_ok=True)
    stages = args.only or list(STAGES)
    t0 = time.perf_counter()
    seeds = args.seeds or ([0] if args.quick else list(DEFAULT_SEEDS))
    timings: dict[str, float] = {}

    def timed(name, fn, *a, **kw):
        t = time.perf_counter()
        out = fn(*a, **kw)
        timings[name] = time.perf_counter() - t
        return out

    nb = not args.no_notebooks
    used: list[Path] = []
    if "benchmark" in stages:
        timed("benchmark", run_benchmark_stage, reports, args.quick)
    oaa_runs = None
    if any(st in stages for st in ("oaa", "oaa_plus", "amr")):
        oaa_runs = timed("classifier + OAA", run_oaa_stage, reports, seeds, args.quick, notebooks=nb, used=used)
        used += list(oaa_runs.values())
    if "oaa_plus" in stages:
        used += list(timed("OAA+ (MCE, HL)", run_oaa_plus_all, reports, seeds, args.quick, oaa_runs,
                           notebooks=nb)["runs"].values())
    if "amr" in stages:
        used += list(timed("AMR", run_amr_all, reports, seeds, args.quick, oaa_runs, args.amr_ablation,
                           notebooks=nb)["runs"].values())
    total = time.perf_counter() - t0
    lines = [f"# Timings of the last `python -m wsss_lib.pipeline {' '.join(argv if argv is not None else sys.argv[1:])}`",
             "", f"Seeds {seeds}; finished runs found in the cache are reused, so a stage whose runs were cached "
             "shows only its reporting time. The training time of each run is `train_seconds` in its metrics.json.",
             "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in timings.items()] + [f"| total | {total:.0f} |"]
    compute = {str(r): read_json(r / "metrics.json") for r in dict.fromkeys(used)}
    secs = sum(m.get("train_seconds", 0) + m.get("eval_seconds", 0) for m in compute.values())
    lines += ["", f"Compute inside the {len(compute)} runs behind these reports (training + evaluation, as "
              f"measured when each ran): {secs:.0f} s = {secs / 60:.1f} min. A `make run` from an empty "
              "`runs/` costs about this plus the reporting and notebook time above."]
    write_text(reports / "timings.md", "\n".join(lines) + "\n")
    write_json(reports / "environment.json", environment_summary())
    write_index(reports)
    print(f"[pipeline] done in {time.perf_counter() - t0:.1f} s; see {reports}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
