"""The report pages: every declared table rendered from the results, the figures, and the prose of
``templates/`` filled with the values of the configs the runs used (never restated by hand).

:func:`write_reports` is what notebook 07 (and so ``make run``) calls. A table whose rows were not
run is skipped and said so; a page's hand-written discussion lives in ``reports/notes/<page>`` and
is appended verbatim.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd

from wsss_lib.data.spec import CLASS_NAMES, CONTEXT_OF_CLASS
from wsss_lib.data.voc import read_class_names
from wsss_lib.figures.picks import PICK_RULE, detected_picks
from wsss_lib.figures.plots import save_figure, sources_figure, threshold_curves_figure
from wsss_lib.formulas.diagnostics import part_mass, zone_rows
from wsss_lib.reporting.benchmark_page import benchmark_report, write_table
import wsss_lib.reporting.tables.amr as amr
import wsss_lib.reporting.tables.oaa as oaa
from wsss_lib.reporting.tables.core import Rendered, Table, differences, render, runs_of, write
from wsss_lib.runs.attention_io import load_attention
from wsss_lib.runs.folders import find_run, run_data_root, upstream_run
from wsss_lib.runs.profile import FULL, Profile
from wsss_lib.stages import display_name, get_stage
from wsss_lib.stages.base import run_split_layout
from wsss_lib.util.io import read_json, write_text

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: every table of the pages, by name
ALL_TABLES: dict[str, Table] = {t.name: t for t in (*oaa.TABLES, *amr.TABLES, *oaa.SETTING_TABLES)}


#: the per-class table is computed from evaluation files, not declared as a Table: its words here
PER_CLASS = ("Per-class IoU of each source (mean over seeds)",
             "IoU of each class at each source's best threshold; `*` marks the classes that co-occur with "
             "context (water under barge, rails under tram, both background in the masks); OAA-MAX - CAM: what "
             "accumulation changed for the class.")

#: the figures of the pages: file -> (title, what to look at)
FIGURES = {
    "oaa_sources.png": ("Attention of each source on six training images (seed 0)",
                        "One row per image, for the class named at the left: the CAM, the accumulated maps "
                        "(OAA-AVE, OAA-MAX) and the ground truth. Does OAA-MAX cover more of the object, or more "
                        "of its surroundings?"),
    "oaa_threshold_curves.png": ("CAM mIoU against the background threshold (seed 0)",
                                 "Each source's mIoU over the threshold sweep; the legend gives its best value and "
                                 "threshold. A source whose maps are larger peaks at a higher threshold."),
    "amr_xi_curve.png": ("The weighted CAM along xi (the report's Table 2)",
                         "Ours (left axis, CAM mIoU on train) against the report's (dashed, right axis): compare "
                         "the shapes and where each peaks, not the values."),
    "segmentation.png": ("Segmentation mIoU (val) per source of pseudo labels",
                         "Both pseudo-label rules, mean ± std over seeds: does the ordering follow the CAM mIoU "
                         "ordering of the tables above?"),
}


def describe(name: str) -> tuple[str, str]:
    """A table's title and how to read it (notebook 07 heads each table with these)."""
    if name == "oaa_per_class":
        return PER_CLASS
    t = ALL_TABLES.get(name)
    return (t.title or name, t.note) if t else (name, "")


def _skip(name: str) -> str:
    return f"_No finished points for {name} yet: run its grid (see README, \"Ablation batches\")._\n"


def _notes(reports: Path, page: str) -> str:
    """The hand-written discussion of a page (``reports/notes/<page>``), appended verbatim."""
    f = reports / "notes" / page
    return ("\n" + f.read_text()) if f.exists() else ""


def _page(reports: Path, name: str, **values) -> None:
    text = Template((TEMPLATES / name).read_text()).substitute(notes=_notes(reports, name), **values)
    write_text(reports / name, text)


def _config(stage: str, profile: Profile, **params) -> dict:

    return asdict(get_stage(stage).config(profile, **params))


def _weights(pretrained: bool) -> str:
    return "pretrained on the embedded pretraining task" if pretrained else "from scratch"


def write_reports(df: pd.DataFrame, reports: str | Path, profile: Profile = FULL) -> dict[str, Rendered]:
    """Render every table and figure from the results ``df`` into ``reports``; returns the tables."""
    reports = Path(reports)
    reports.mkdir(parents=True, exist_ok=True)
    setting = any(not runs_of(df, "classifier", p, profile).empty for p in oaa.SETTINGS.values() if p)
    tables = {name: render(t, df, profile) for name, t in ALL_TABLES.items()
              if setting or t not in oaa.SETTING_TABLES}
    md = {name: write(r, reports / name) if not r.empty else _skip(name) for name, r in tables.items()}
    for name, t in ALL_TABLES.items():  # the orderings the seeds support, for every one-value table
        if name in tables and not t.columns:
            d = differences(t, df, profile) if not tables[name].empty else pd.DataFrame()
            md[f"{name}_differences"] = (write(Rendered(d, tables[name].runs, t.declaration + " (paired differences)"),
                                                     reports / f"{name}_differences")
                                         if not d.empty else "_No paired differences (fewer than two rows run)._\n")
    cls_runs = runs_of(df, "classifier", {}, profile)
    md["oaa_per_class"] = _skip("oaa_per_class")
    if not cls_runs.empty:
        per_class = per_class_table(cls_runs)
        md["oaa_per_class"] = write(Rendered(per_class, cls_runs, f"{__name__}: per_class_table"),
                                    reports / "oaa_per_class")
        tables["oaa_per_class"] = Rendered(per_class, cls_runs)
        _classifier_figures(df, cls_runs, reports, profile)
    md["oaa_zones"] = zones_section(df, reports, profile)
    cls = _config("classifier", profile)
    seeds = ", ".join(str(int(s)) for s in cls_runs["r.seed"]) if not cls_runs.empty else "-"
    cls_map = f"{cls_runs['cls_mAP_val'].mean():.3f}" if "cls_mAP_val" in cls_runs else "-"
    _page(reports, "oaa.md", n_seeds=len(cls_runs), seeds=seeds, profile=profile.name, cls_map=cls_map,
          weights=_weights(cls["pretrained"]), **{k: cls[k] for k in ("backbone", "epochs", "batch_size", "lr",
          "schedule", "augment", "gate", "gate_start_epoch", "last_epoch_fallback")}, **md)
    plus = _config("oaa_plus", profile)
    _page(reports, "oaa_plus.md", profile=profile.name, plus_source=plus["source"], plus_epochs=plus["epochs"],
          plus_lr=f"{plus['lr']:g}", **md)
    a = _config("amr", profile)
    off = _config("amr", profile, preset="official")
    _page(reports, "amr.md", profile=profile.name, xi=f"{a['xi_main']:g}", weights=_weights(a["pretrained"]),
          off_w_cls_s=off["w_cls_s"], off_w_cls_c=off["w_cls_c"], off_w_cps=off["w_cps"],
          off_weight_decay=f"{off['weight_decay']:g}", off_momentum=f"{off['momentum']:g}",
          **{k: a[k] for k in ("backbone", "epochs", "w_cls_s", "w_cls_c", "w_cps", "threshold", "area_weight")}, **md)
    if not tables["amr_xi_table"].empty:

        save_figure(xi_curve_figure(tables["amr_xi_table"].frame), reports / "amr_xi_curve.png")
    _page(reports, "amr_ablation.md", profile=profile.name, xi=f"{a['xi_main']:g}", threshold=a["threshold"],
          area_weight=a["area_weight"], **md)
    seg, pl = _config("segmentation", profile), _config("pseudo_labels", profile)
    if not tables["segmentation_table"].empty:

        save_figure(segmentation_figure(tables["segmentation_table"]), reports / "segmentation.png")
    _page(reports, "segmentation.md", profile=profile.name, network=seg["network"], seg_epochs=seg["epochs"],
          seg_schedule=seg["schedule"], seg_lr=seg["lr"], seg_weights=_weights(seg["pretrained"]),
          fg_threshold=pl["fg_threshold"], conflict=pl["conflict"], bg_saliency=f"{pl['bg_saliency']:.3f}",
          pl_threshold=pl["threshold"], same_steps=seg["same_steps"], **md)
    if setting:  # a setting other than the default was run (make setting)

        save_figure(drift_figure(df, profile), reports / "drift_setting.png")
        _page(reports, "setting.md", profile=profile.name, **md)
    return tables


# -- tables that read run folders --------------------------------------------------------------------
#: the zone table's columns, in words
ZONE_COLUMNS = {"regions": "class regions", "body": "rest of body", "other_objects": "other objects",
                "context": "context", "band": "band (2 cells)", "background": "background"}


def run_zone_analysis(run: str | Path, voc_root: str | Path, max_images: int = 500, band_cells: float = 2.0,
                      new: str = "oaa_max", ref: str = "cam") -> list[dict]:
    """:func:`wsss_lib.formulas.diagnostics.zone_rows` of a classifier run's ``new`` source over its
    ``ref`` source, at their best thresholds (``evaluation.json``) and at 0.5."""

    run = Path(run)
    ev = read_json(run / "evaluation.json")["sources"]
    for name in (ref, new):
        if name not in ev or not (run / "attention" / f"{name}.pt").exists():
            raise ValueError(f"{run}: no attention source {name!r} (sources: {sorted(ev)})")
    a_ref, a_new = (load_attention(run / "attention" / f"{n}.pt") for n in (ref, new))
    return zone_rows(a_ref, a_new, ev[ref]["best_threshold"], ev[new]["best_threshold"], voc_root, max_images,
                     band_cells)


def zones_section(df: pd.DataFrame, reports: Path, profile: Profile) -> str:
    """Where OAA-MAX's extra pixels land (:func:`run_zone_analysis`), for
    the first seed's classifier run of every setting that has one (the default, and those of
    ``make setting``), at each source's best threshold and at 0.5; written as ``oaa_zones.md``."""

    rows = []
    used = []
    for name, params in oaa.SETTINGS.items():
        runs = runs_of(df, "classifier", params, profile)
        if runs.empty:
            continue
        first = runs.iloc[0]
        run = find_run(first["run"])
        for r in run_zone_analysis(run, run_data_root(run)):
            rows.append({"setting": f"{name} (seed {int(first['r.seed'])})", "thresholds": r["thresholds"],
                         **{label: r[z] for z, label in ZONE_COLUMNS.items()},
                         "body recall CAM -> MAX": f"{r['body_recall_ref']:.2f} -> {r['body_recall_new']:.2f}",
                         "added pixels": r["added_pixels"]})
        used.append(runs.iloc[:1])
    if not rows:
        return _skip("oaa_zones")
    frame = pd.DataFrame(rows).set_index("setting")
    return write(Rendered(frame, pd.concat(used), f"{__name__}: zones_section"), reports / "oaa_zones")

def per_class_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-class IoU at each source's best threshold, mean over the classifier runs; context classes starred."""

    folders = [find_run(r) for r in runs["run"]]
    cols = {}
    for label, src in oaa.OAA_SOURCES.items():
        rows = [read_json(r / "evaluation.json")["sources"][src]["per_class_iou"] for r in folders]
        cols[label] = np.nanmean(np.array(rows, dtype=float), axis=0)
    classes = list(read_class_names(run_data_root(folders[0])))
    starred = {CLASS_NAMES[c] for c in CONTEXT_OF_CLASS}
    t = pd.DataFrame(cols, index=[f"{c} *" if c in starred else c for c in classes]).rename_axis("class")
    first, last = list(oaa.OAA_SOURCES)[0], "OAA-MAX"
    t[f"{last} - {first}"] = t[last] - t[first]
    return t


# -- figures -------------------------------------------------------------------------------------------


def _classifier_figures(df: pd.DataFrame, cls_runs: pd.DataFrame, reports: Path, profile: Profile) -> None:
    """Figures of the first seed's classifier run, its OAA+ runs and its evolution run; the benchmark
    page with the CAM properties measured on that run."""

    first = cls_runs.iloc[0]
    run0, seed0 = find_run(first["run"]), int(first["r.seed"])
    root = run_data_root(run0)
    layout = run_split_layout(run0)
    ev = read_json(run0 / "evaluation.json")["sources"]
    shown = {label: ev[src] for label, src in oaa.OAA_SOURCES.items() if src in ev}  # the tables' names
    save_figure(threshold_curves_figure(shown, f"seed {seed0}: CAM mIoU vs background threshold"),
                reports / "oaa_threshold_curves.png")
    srcs = {name: load_attention(run0 / "attention" / f"{name}.pt") for name in oaa.OAA_SOURCES.values()}
    picks = detected_picks(layout, srcs["cam"], 6)
    save_figure(sources_figure(layout, {display_name(k): v for k, v in srcs.items()}, picks, rule=PICK_RULE),
                reports / "oaa_sources.png")
    evo = runs_of(df, "evolution", {}, profile)
    evo = evo[evo["run"].map(lambda r: upstream_run(find_run(r), "oaa_run") == run0)] if not evo.empty else evo
    if not evo.empty:
        shutil.copyfile(find_run(evo.iloc[0]["run"]) / "attention_evolution.png", reports / "attention_evolution.png")
    props = {label: part_mass(srcs[src], root) for label, src in oaa.OAA_SOURCES.items()}
    props_df = pd.DataFrame(props).T[["part_mass_share", "part_area_share", "object_precision", "object_recall"]]
    props_md = write_table(props_df.rename_axis(f"seed {seed0}"), reports / "benchmark_cam_properties_table")
    write_text(reports / "benchmark_cam_properties.md",
               Template((TEMPLATES / "benchmark_cam_properties.md").read_text()).substitute(seed=seed0, props=props_md))
    benchmark_report(root, reports, profile=profile)  # re-rendered with the measured CAM properties
    plus = {label: runs_of(df, "oaa_plus", {"loss": loss}, profile) for label, loss in oaa.OAA_PLUS_LOSSES.items()}
    plus = {label: r[r["r.seed"] == seed0] for label, r in plus.items()}
    if all(not r.empty for r in plus.values()):
        maps = {"CAM": srcs["cam"], "OAA-MAX": srcs["oaa_max"],
                **{label: load_attention(find_run(r.iloc[0]["run"]) / "attention" / "oaa_plus.pt")
                   for label, r in plus.items()}}
        save_figure(sources_figure(layout, maps, picks, rule=PICK_RULE), reports / "oaa_plus_sources.png")


def xi_curve_figure(xi_table: pd.DataFrame):
    """The weighted CAM along xi (left axis) next to the report's Table 2 (right axis), one legend
    below the axes (every entry visible)."""
    import matplotlib.pyplot as plt  # lazy: heavy: only where a figure is drawn

    fig, ax = plt.subplots(figsize=(5.8, 4.2))
    xs = [float(x) for x in xi_table.index]
    for col in [c for c in xi_table.columns if c.endswith(" mean")]:
        ax.plot(xs, xi_table[col].astype(float), marker="o", label=f"{col[:-5]} (ours: CAM mIoU, train)")
    ax.set_xlabel("xi (weight of the spotlight branch, eq. 8)")
    ax.set_ylabel("CAM mIoU (train), mean over seeds")
    ax2 = ax.twinx()
    ax2.plot(xs, [amr.REPORT_TABLE2[x] for x in xs], "k--", marker="x", label="report's Table 2 (VOC test mIoU %, right axis)")
    ax2.set_ylabel("report's mIoU (%)")
    handles = [h for a in (ax, ax2) for h in a.get_legend_handles_labels()[0]]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.17),
              ncol=2, frameon=False)
    ax.grid(alpha=0.3)
    ax.set_title("weighted CAM vs xi: ours (left axis) and the report's Table 2 (right axis)", fontsize=8)
    fig.tight_layout()
    return fig


def segmentation_figure(table: Rendered):
    """Bars: val segmentation mIoU per source, both pseudo-label modes (mean over seeds, std as error
    bars; a source with one seed has no error bar, and the title says so), drawn from the runs' values
    at full precision, not from the printed cells."""
    import matplotlib.pyplot as plt  # lazy: heavy: only where a figure is drawn

    modes = [c for c in table.frame.columns if c.startswith("seg mIoU (val), ")]
    labels = list(table.frame.index)
    fig, ax = plt.subplots(figsize=(7.5, 3.3))
    width = 0.8 / max(1, len(modes))
    lows, counts = [], []
    for k, col in enumerate(modes):
        vals = [np.asarray(table.values.get((label, col), []), dtype=float) for label in labels]
        if not any(v.size for v in vals):
            continue
        means = [v.mean() if v.size else np.nan for v in vals]
        ax.bar(np.arange(len(labels)) + (k - (len(modes) - 1) / 2) * width, means, width,
               yerr=[v.std(ddof=1) if v.size > 1 else 0.0 for v in vals], capsize=3,
               label=f"{col.split(', ')[-1]} pseudo labels")
        lows += [m for m in means if np.isfinite(m)]
        counts += [v.size for v in vals if v.size]
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("segmentation mIoU (val)")
    seeds = (f"{min(counts)} seed" + ("s" if min(counts) > 1 else "") + (": no error bars" if max(counts) == 1 else "")
             if counts and max(counts) < 2 else "mean ± std over seeds")
    ax.set_title(f"segmentation network trained on each source's pseudo labels ({seeds})", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(max(0, min(lows or [0.1]) - 0.1), None)
    fig.tight_layout()
    return fig


def drift_figure(df: pd.DataFrame, profile: Profile):
    """Discovery curves (solid: MAX so far; dashed: that epoch alone), mean over seeds, per setting."""
    import matplotlib.pyplot as plt  # lazy: heavy: only where a figure is drawn

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.9))
    any_curve = False
    for k, (name, params) in enumerate(oaa.SETTINGS.items()):
        pts = runs_of(df, "classifier", params, profile)
        if pts.empty or "drift_epochs" not in pts or pts["drift_epochs"].isna().all():
            continue
        e = int(pts["drift_epochs"].max())
        ep = np.arange(1, e + 1)
        col = lambda base, i: pts[f"{base}_e{i:02d}"].mean() if f"{base}_e{i:02d}" in pts else np.nan  # noqa: E731
        axes[0].plot(ep, [col("discovery", i) for i in ep], "-", color=f"C{k}", label=name)
        axes[0].plot(ep, [col("single_epoch_coverage", i) for i in ep], "--", color=f"C{k}", alpha=.6)
        axes[1].plot(ep, [col("drift_peak_shift", i) for i in ep], "o-", color=f"C{k}", ms=3)
        any_curve = True
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("share of the object with A > 0.5")
    axes[0].set_ylim(0, 1)
    axes[0].set_title("discovery curve (mean over seeds)\nsolid: MAX of the epochs so far; dashed: that epoch alone",
                      fontsize=9)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("peak shift from previous epoch (image sides)")
    axes[1].set_title("how far the attention peak moves", fontsize=9)
    for ax in axes:
        ax.grid(alpha=.3)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    if any_curve:  # one legend for both panels, below them: the colour is the setting
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
    else:
        fig.tight_layout()
    return fig


__all__ = ["ALL_TABLES", "drift_figure", "per_class_table", "segmentation_figure", "write_reports", "xi_curve_figure"]
