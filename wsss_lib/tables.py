"""The paper-table analogues, rendered from the batch runner's results (:func:`wsss_lib.results.collect`).

Every table is a function of the tidy results frame (one row per finished grid point, ``p.<name>``
columns for the point's parameters, one column per metric): mean, std (ddof 1) and n over seeds,
next to the papers' own VOC figures in a column labelled as the paper's. Notebook
``07_results_tables.ipynb`` calls these and :func:`write_reports` writes them, with the figures,
into ``reports/``. A table whose points were not run is skipped (and said so), never invented.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .accumulation import FUSION_SOURCES
from .io import read_json, write_text
from .report import mean_std_table, write_table
from .runs import find_run

#: published figures (VOC, other data and metric than ours: see each page's text)
OAA_TABLE2 = {"CAM": 53.9, "OAA-AVE": 57.0, "OAA-MAX": 58.6, "OAA+ (MCE)": 51.2, "OAA+ (HL)": 59.6}
REPORT_TABLE1 = {"AMR": 53.2, "AMR+both": 54.5}  # the reproduction report's Recurrence / Improvement AMR
REPORT_TABLE2 = {0.1: 49.2, 0.3: 53.4, 0.5: 56.8, 0.7: 54.5, 0.9: 50.7}
OAA_TABLE3 = {0.2: 54.6, 0.5: 57.3, 0.8: 58.9, 1.0: 59.6}  # OAA+ labels, share of the 10,582 training images
NB = {"classifier": "01_train_classifier_oaa.ipynb", "evolution": "02_attention_evolution.ipynb",
      "oaa_plus": "03_train_oaa_plus.ipynb", "amr": "04_train_amr.ipynb",
      "segmentation": "05_pseudo_labels_segmentation.ipynb"}
#: the segmentation tables' rows: label -> (attention source, the upstream parameters as the grid
#: writes them; results.collect stores a mapping as its str())
SEG_ROWS = {"CAM": ("cam", "{}"), "OAA-AVE": ("oaa_ave", "{}"), "OAA-MAX": ("oaa_max", "{}"),
            "OAA+ (MCE)": ("oaa_plus", "{'loss': 'mce'}"), "OAA+ (HL)": ("oaa_plus", "{'loss': 'hl'}"),
            "AMR (xi 0.5)": ("amr_xi0.5", "{'variant': 'AMR'}"), "AMR+both (xi 0.5)": ("amr_xi0.5", "{'variant': 'AMR+both'}")}
SEG_MODES = ("saliency", "threshold")
#: the classifier's table rows: label -> attention source (fusions from their registry)
OAA_ROWS = {"CAM": "cam", **{label: src for src, label in sorted(FUSION_SOURCES.items(), key=lambda kv: kv[1])}}
#: the AMR table's rows: label -> the points' parameters (None: not set, i.e. the default)
AMR_ROWS = {"AMR": {"variant": "AMR", "preset": None}, "AMR+both": {"variant": "AMR+both", "preset": None},
            "AMR (official preset)": {"variant": "AMR", "preset": "official"}}
AMR_ABLATION_ROWS = {"AMR": {"variant": "AMR", "preset": None}, "AMR+threshold": {"variant": "AMR+threshold"},
                     "AMR+area": {"variant": "AMR+area"}, "AMR+both": {"variant": "AMR+both", "preset": None}}
#: the classifier points' parameters that make a gate / schedule variant (absent: the default run)
GATE_PARAMS = ("gate", "gate_start_epoch", "last_epoch_fallback")
PAPER_COL = "paper (VOC val seg. mIoU %)"


def select(df: pd.DataFrame, notebook: str, quick: bool = False, benchmark: str = "v1",
           pretrained: bool | None = None, **where) -> pd.DataFrame:
    """The finished points of ``notebook`` on ``benchmark`` (``v1``: embedded version 1; ``parts2``)
    whose parameters equal ``where``; ``None`` = the point did not set the parameter (the stage's
    default). ``pretrained``: only points whose run did (True) or did not (False) start from
    pretrained weights (``r.pretrained``: what the run was, whatever the default was when it was
    made); ``None``: either. One row per seed: a run shared by two points (e.g. two xi_main of one
    AMR run) is counted once."""
    if df.empty or "notebook" not in df:
        return df
    rows = df[df["notebook"] == notebook]
    bcol = rows["r.benchmark"].fillna("v1") if "r.benchmark" in rows else pd.Series("v1", index=rows.index)
    rows = rows[bcol == benchmark]
    if pretrained is not None:
        pcol = rows["r.pretrained"] if "r.pretrained" in rows else pd.Series(np.nan, index=rows.index, dtype=object)
        rows = rows[pcol.astype(object) == pretrained]
    qcol = rows["p.quick"] if "p.quick" in rows else pd.Series(False, index=rows.index)
    rows = rows[qcol.fillna(False).astype(bool) == quick]
    for k, v in where.items():
        col = rows[f"p.{k}"] if f"p.{k}" in rows else pd.Series(np.nan, index=rows.index, dtype=object)
        rows = rows[col.isna()] if v is None else rows[col.astype(object) == v]
    if "p.seed" not in rows:
        rows = rows.assign(**{"p.seed": 0})
    rows = rows.assign(**{"p.seed": rows["p.seed"].fillna(0).astype(int)})
    return rows.sort_values("p.seed").drop_duplicates(subset=["run", "p.seed"] if "run" in rows else ["p.seed"])


#: the main tables' setting: the default backbone (pretrained since issue 10). The AMR and
#: segmentation grids pin pretrained: false (measured before issue 10), so their tables do too.
MAIN_PRETRAINED = True
PINNED_PRETRAINED = False


def default_classifier_points(df: pd.DataFrame, quick: bool = False, pretrained: bool | None = MAIN_PRETRAINED,
                              benchmark: str = "v1") -> pd.DataFrame:
    return select(df, NB["classifier"], quick, benchmark, pretrained, init_from=None, **{k: None for k in GATE_PARAMS})


def _values(rows: pd.DataFrame, metric: str) -> list[float]:
    return [float(v) for v in rows[metric].dropna()] if metric in rows else []


def _table(rows: dict[str, list[float]], paper: dict[str, float] | None = None) -> pd.DataFrame:
    rows = {k: v for k, v in rows.items() if v}
    if not rows:
        return pd.DataFrame()
    t = mean_std_table(rows, "CAM mIoU")
    if paper is not None:
        t[PAPER_COL] = [f"{paper[k]:.1f}" if paper.get(k) is not None else "-" for k in t.index]
    return t


def oaa_table(df: pd.DataFrame, quick: bool = False) -> pd.DataFrame:
    """CAM, OAA-AVE, OAA-MAX of the default classifier runs (OAA Table 2, rows 1-3)."""
    pts = default_classifier_points(df, quick)
    return _table({label: _values(pts, f"{src}_miou") for label, src in OAA_ROWS.items()}, OAA_TABLE2)


def oaa_detail(df: pd.DataFrame, quick: bool = False) -> pd.DataFrame:
    pts = default_classifier_points(df, quick)
    if pts.empty:
        return pd.DataFrame()
    return pd.DataFrame({label: {"best threshold": pts[f"{src}_best_threshold"].mean(),
                                 "fg precision": pts[f"{src}_fg_precision"].mean(),
                                 "fg recall": pts[f"{src}_fg_recall"].mean()}
                         for label, src in OAA_ROWS.items()}).T.rename_axis("source (mean over seeds)")


def oaa_plus_table(df: pd.DataFrame, quick: bool = False) -> pd.DataFrame:
    """OAA Table 2 rows 1-5: CAM, OAA-AVE, OAA-MAX, OAA+ (MCE), OAA+ (HL) on OAA-MAX soft labels."""
    pts = default_classifier_points(df, quick)
    rows = {label: _values(pts, f"{src}_miou") for label, src in OAA_ROWS.items()}
    for loss in ("mce", "hl"):
        plus = select(df, NB["oaa_plus"], quick, pretrained=MAIN_PRETRAINED, loss=loss, source=None)
        rows[f"OAA+ ({loss.upper()})"] = _values(plus, "oaa_plus_miou")
    t = _table(rows, OAA_TABLE2)
    if not t.empty:
        order = {"CAM": "1", "OAA-AVE": "2", "OAA-MAX": "3", "OAA+ (MCE)": "4", "OAA+ (HL)": "5"}
        t.insert(0, "OAA Table 2 row", [order.get(k, "") for k in t.index])
    return t


def gate_variants(df: pd.DataFrame, quick: bool = False, seed: int = 0) -> pd.DataFrame:
    """The classifier's gate / schedule variants on one seed, next to the default run."""
    pts = select(df, NB["classifier"], quick, pretrained=PINNED_PRETRAINED, init_from=None)  # as oaa_gate.yaml
    pts = pts[pts["p.seed"] == seed] if not pts.empty else pts
    out = {}
    for _, r in pts.iterrows():
        set_ = {k: _plain(r.get(f"p.{k}")) for k in GATE_PARAMS if pd.notna(r.get(f"p.{k}", np.nan))}
        label = ", ".join(f"{k}={v}" for k, v in set_.items()) or "default (paper gate from epoch 1)"
        out[label] = {**{label_: r[f"{src}_miou"] for label_, src in OAA_ROWS.items()},
                      "OAA-MAX fg precision": r["oaa_max_fg_precision"], "OAA-MAX fg recall": r["oaa_max_fg_recall"],
                      "pairs ever accepted": r["oaa_accepted_fraction"]}
    if len(out) < 2:
        return pd.DataFrame()
    return pd.DataFrame(out).T.rename_axis(f"seed {seed}")


def _plain(v):
    """A parameter value as written in the grid (a column with gaps holds 5 as 5.0)."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def per_class_table(df: pd.DataFrame, quick: bool = False) -> pd.DataFrame:
    """Per-class IoU at each source's best threshold, mean over seeds; context classes starred."""
    from .data.synthetic import CLASS_NAMES, CONTEXT_OF_CLASS
    from .data.voc import read_class_names
    from .runs import run_data_root

    pts = default_classifier_points(df, quick)
    if pts.empty:
        return pd.DataFrame()
    runs = [find_run(r) for r in pts["run"]]
    cols = {}
    for label, src in OAA_ROWS.items():
        rows = [read_json(r / "evaluation.json")["sources"][src]["per_class_iou"] for r in runs]
        cols[label] = np.nanmean(np.array(rows, dtype=float), axis=0)
    classes = list(read_class_names(run_data_root(runs[0])))
    starred = {CLASS_NAMES[c] for c in CONTEXT_OF_CLASS}
    t = pd.DataFrame(cols, index=[f"{c} *" if c in starred else c for c in classes]).rename_axis("class")
    first, last = list(OAA_ROWS)[0], "OAA-MAX"
    t[f"{last} - {first}"] = t[last] - t[first]
    return t


def amr_points(df: pd.DataFrame, params: dict, quick: bool = False) -> pd.DataFrame:
    return select(df, NB["amr"], quick, init_from=None, **params)


def amr_table(df: pd.DataFrame, quick: bool = False, rows_spec: dict | None = None) -> pd.DataFrame:
    """The report's Table 1: the frozen spotlight (= CAM), each AMR row at xi 0.5, and its
    compensation branch alone."""
    rows_spec = rows_spec or AMR_ROWS
    first = amr_points(df, next(iter(rows_spec.values())), quick)
    rows = {"CAM (= frozen spotlight)": _values(first, "amr_spotlight_miou")}
    for label, params in rows_spec.items():
        pts = amr_points(df, params, quick)
        rows[f"{label} (xi 0.5)"] = _values(pts, "amr_miou")
        rows[f"{label} compensation only"] = _values(pts, "amr_compensation_miou")
    paper = {f"{k} (xi 0.5)": v for k, v in REPORT_TABLE1.items()}
    t = _table(rows, paper)
    return t.rename(columns={PAPER_COL: "report (VOC test mIoU %)"}) if not t.empty else t


def amr_xi_table(df: pd.DataFrame, quick: bool = False) -> pd.DataFrame:
    """The report's Table 2: mean over seeds of the weighted CAM at each xi, per AMR row."""
    cols = {}
    for label, params in AMR_ROWS.items():
        pts = amr_points(df, params, quick)
        if not pts.empty:
            cols[f"{label} mean"] = {x: pts[f"amr_xi{x:g}_miou"].mean() for x in REPORT_TABLE2}
    if not cols:
        return pd.DataFrame()
    t = pd.DataFrame(cols).rename_axis("xi")
    t["report (VOC test mIoU %)"] = [f"{REPORT_TABLE2[x]:.1f}" for x in t.index]
    return t


def amr_ablation_detail(df: pd.DataFrame, quick: bool = False) -> pd.DataFrame:
    out = {}
    for label, params in AMR_ABLATION_ROWS.items():
        pts = amr_points(df, params, quick)
        if not pts.empty:
            out[label] = {"compensation only": pts["amr_compensation_miou"].mean(),
                          "best xi (mean)": pts["amr_best_xi"].mean(),
                          "fg precision (xi 0.5)": pts["amr_xi0.5_fg_precision"].mean(),
                          "fg recall (xi 0.5)": pts["amr_xi0.5_fg_recall"].mean()}
    return pd.DataFrame(out).T.rename_axis("variant (mean over seeds)") if out else pd.DataFrame()


def _ms(vals: list[float]) -> str:
    if not vals:
        return "-"
    v = np.asarray(vals, dtype=float)
    return f"{v.mean():.3f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.3f}"


def _same_upstream(rows: pd.DataFrame, params: str) -> pd.DataFrame:
    """Rows whose ``attention_params`` equal ``params`` apart from ``pretrained`` (which the run's
    own ``r.pretrained`` decides)."""
    import ast

    if rows.empty or "p.attention_params" not in rows:
        return rows if params == "{}" else rows.iloc[:0]
    want = ast.literal_eval(params)

    def same(v) -> bool:
        got = ast.literal_eval(v) if isinstance(v, str) else {}
        got.pop("pretrained", None)
        return got == want

    return rows[rows["p.attention_params"].map(same)]


def seg_points(df: pd.DataFrame, label: str, mode: str, quick: bool = False, fraction=None,
               pretrained: bool | None = PINNED_PRETRAINED, benchmark: str = "v1") -> pd.DataFrame:
    """The points of one segmentation row; ``fraction`` None or 1.0 both mean the whole set (the same run)."""
    source, params = SEG_ROWS[label]
    fracs = (None, 1.0) if fraction in (None, 1.0) else (fraction,)
    parts = [_same_upstream(select(df, NB["segmentation"], quick, benchmark, pretrained, source=source, mode=mode,
                                   fraction=f), params) for f in fracs]
    found = [p for p in parts if not p.empty]
    if not found:
        return parts[0]
    rows = pd.concat(found)
    return rows.sort_values("p.seed").drop_duplicates(subset=["run", "p.seed"] if "run" in rows else ["p.seed"])


def segmentation_table(df: pd.DataFrame, quick: bool = False) -> pd.DataFrame:
    """OAA Table 2 and the AMR table, segmentation column: val mIoU of the network trained on each
    source's pseudo labels, both modes (mean ± std over seeds), with the labels' own quality."""
    out = {}
    for label in SEG_ROWS:
        row, n = {}, set()
        for mode in SEG_MODES:
            pts = seg_points(df, label, mode, quick)
            row[f"seg mIoU (val), {mode}"] = _ms(_values(pts, "seg_miou"))
            row[f"pseudo-label mIoU (train), {mode}"] = _ms(_values(pts, "pseudo_miou"))
            if mode == "saliency":
                row["ignored share, saliency"] = _ms(_values(pts, "pseudo_ignored"))
            n.add(len(pts))
        if max(n) == 0:
            continue
        row["n (seeds)"] = "/".join(str(len(seg_points(df, label, m, quick))) for m in SEG_MODES)
        key = label.replace(" (xi 0.5)", "")
        paper = OAA_TABLE2.get(label, REPORT_TABLE1.get(key))
        row["paper (VOC seg. mIoU %)"] = f"{paper:.1f}" + (" (report, test)" if key in REPORT_TABLE1 else "") \
            if paper is not None else "-"
        out[label] = row
    return pd.DataFrame(out).T.rename_axis("pseudo labels from") if out else pd.DataFrame()


def segmentation_detail(df: pd.DataFrame, quick: bool = False) -> pd.DataFrame:
    """Per source and mode: the means of the pseudo labels' precision / recall and of the val mIoU."""
    out = {}
    for label in SEG_ROWS:
        for mode in SEG_MODES:
            pts = seg_points(df, label, mode, quick)
            if not pts.empty:
                cols = {"pseudo fg precision": "pseudo_fg_precision", "pseudo fg recall": "pseudo_fg_recall",
                        "pseudo ignored": "pseudo_ignored", "pseudo mIoU": "pseudo_miou", "seg mIoU": "seg_miou"}
                # a metric absent from every point (e.g. pseudo mIoU when all pixels were ignored) is NaN
                out[(label, mode)] = {k: pts[c].mean() if c in pts else np.nan for k, c in cols.items()}
    if not out:
        return pd.DataFrame()
    t = pd.DataFrame(out).T
    t.index.names = ["source", "mode"]
    return t


def fraction_table(df: pd.DataFrame, quick: bool = False) -> pd.DataFrame:
    """OAA Table 3: segmentation mIoU with a share of the OAA+ (HL) pseudo-labelled images."""
    out = {}
    for f, paper in OAA_TABLE3.items():
        pts = seg_points(df, "OAA+ (HL)", "saliency", quick, fraction=f)
        if pts.empty:
            continue
        out[f"{f:.0%}"] = {"training images": int(pts["train_images"].iloc[0]), "seg mIoU (val)": _ms(_values(pts, "seg_miou")),
                           "values": ", ".join(f"{v:.3f}" for v in _values(pts, "seg_miou")), "n": len(pts),
                           "paper (VOC val seg. mIoU %)": f"{paper:.1f}"}
    return pd.DataFrame(out).T.rename_axis("fraction") if out else pd.DataFrame()


def segmentation_figure(df: pd.DataFrame, quick: bool = False):
    """Bars: val segmentation mIoU per source, both modes (mean over seeds, std as error bars)."""
    import matplotlib.pyplot as plt

    labels = [lab for lab in SEG_ROWS if any(not seg_points(df, lab, m, quick).empty for m in SEG_MODES)]
    fig, ax = plt.subplots(figsize=(7.5, 3.3))
    width = 0.38
    for k, mode in enumerate(SEG_MODES):
        vals = [_values(seg_points(df, lab, mode, quick), "seg_miou") for lab in labels]
        ax.bar(np.arange(len(labels)) + (k - 0.5) * width, [np.mean(v) if v else np.nan for v in vals], width,
               yerr=[np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals], capsize=3, label=f"{mode} pseudo labels")
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("segmentation mIoU (val)")
    ax.set_title("segmentation network trained on each source's pseudo labels (mean ± std over seeds)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    lo = np.nanmin([np.mean(v) for m in SEG_MODES for lab in labels
                    if (v := _values(seg_points(df, lab, m, quick), "seg_miou"))] or [0])
    ax.set_ylim(max(0, lo - 0.1), None)
    fig.tight_layout()
    return fig


# -- issue 10: the setting (backbone x benchmark variant) -------------------------------------------
#: the settings compared: label -> (benchmark, pretrained)
SETTINGS = {"v1, scratch": ("v1", False), "v1, pretrained": ("v1", True),
            "parts2, scratch": ("parts2", False), "parts2, pretrained": ("parts2", True)}
SETTING_ROWS = ("CAM", "OAA-AVE", "OAA-MAX", "OAA+ (MCE)", "OAA+ (HL)")


def setting_points(df: pd.DataFrame, label: str, benchmark: str, pretrained: bool, quick: bool = False) -> pd.DataFrame:
    """The classifier / OAA+ points of one OAA-table row in one setting (CAM mIoU)."""
    if label.startswith("OAA+"):
        loss = label.split("(")[1].rstrip(")").lower()  # "OAA+ (MCE)" -> "mce"
        return select(df, NB["oaa_plus"], quick, benchmark, pretrained, loss=loss, source=None)
    return default_classifier_points(df, quick, pretrained, benchmark)


def setting_table(df: pd.DataFrame, quick: bool = False) -> pd.DataFrame:
    """The OAA table (CAM mIoU, train; segmentation mIoU, val, saliency pseudo labels) per setting:
    mean ± std over seeds, n seeds in brackets where fewer than 3."""
    out = {}
    for row in SETTING_ROWS:
        r = {}
        for name, (bench, pre) in SETTINGS.items():
            pts = setting_points(df, row, bench, pre, quick)
            metric = "oaa_plus_miou" if row.startswith("OAA+") else f"{OAA_ROWS[row]}_miou"
            vals = _values(pts, metric)
            seg = _values(seg_points(df, row, "saliency", quick, pretrained=pre, benchmark=bench), "seg_miou")
            r[f"{name}: CAM mIoU"] = _ms(vals) + (f" (n={len(vals)})" if 0 < len(vals) < 3 else "")
            r[f"{name}: seg mIoU"] = _ms(seg) + (f" (n={len(seg)})" if 0 < len(seg) < 3 else "")
        out[row] = r
    t = pd.DataFrame(out).T.rename_axis("source")
    t = t.loc[:, [c for c in t.columns if (t[c] != "-").any()]]
    return t if t.shape[1] else pd.DataFrame()


DRIFT_COLS = {"cls_mAP_val": "cls mAP (val)", "drift_peak_shift_mean": "peak shift (image sides)",
              "drift_consecutive_iou_mean": "IoU with previous epoch", "discovery_e01": "epoch 1 covers",
              "single_epoch_coverage_last": "last epoch covers", "discovery_final": "MAX of all epochs covers",
              "discovery_gain": "MAX - last epoch", "cam_mass_part1_last": "CAM mass on part 1",
              "cam_mass_part2_last": "CAM mass on part 2", "cam_mass_body_last": "CAM mass on body",
              "drift_part_switch_mean": "dominant part switches / epoch",
              "drift_pairs_switching_part": "pairs whose dominant part ever switches"}


def _last_epoch(rows: pd.DataFrame) -> pd.DataFrame:
    """Add ``<metric>_last`` columns: the per-epoch metric at each run's last epoch."""
    rows = rows.copy()
    for base in ("single_epoch_coverage", "cam_mass_part1", "cam_mass_part2", "cam_mass_body"):
        def last(r, base=base):
            v = r.get("drift_epochs", np.nan)
            e = int(v) if pd.notna(v) else 0
            return r.get(f"{base}_e{e:02d}", np.nan)
        rows[f"{base}_last"] = rows.apply(last, axis=1) if not rows.empty else []
    return rows


def drift_table(df: pd.DataFrame, quick: bool = False) -> pd.DataFrame:
    """Drift of the plain classifier's attention per setting (mean over seeds; every training
    (image, class) pair seen at every epoch; threshold 0.5): what accumulation has to work with."""
    out = {}
    for name, (bench, pre) in SETTINGS.items():
        pts = _last_epoch(default_classifier_points(df, quick, pre, bench))
        if pts.empty or "discovery_final" not in pts or pts["discovery_final"].isna().all():
            continue
        pts = pts[pts["discovery_final"].notna()]
        out[f"{name} (n={len(pts)})"] = {label: float(pts[c].mean()) if c in pts and pts[c].notna().any() else np.nan
                                         for c, label in DRIFT_COLS.items()}
    return pd.DataFrame(out).T.rename_axis("setting") if out else pd.DataFrame()


def drift_figure(df: pd.DataFrame, quick: bool = False):
    """Discovery curves (solid: MAX so far; dashed: that epoch alone), mean over seeds, per setting."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    any_curve = False
    for k, (name, (bench, pre)) in enumerate(SETTINGS.items()):
        pts = default_classifier_points(df, quick, pre, bench)
        if pts.empty or "drift_epochs" not in pts or pts["drift_epochs"].isna().all():
            continue
        pts = pts[pts["drift_epochs"].notna()]
        e = int(pts["drift_epochs"].max())
        ep = np.arange(1, e + 1)
        disc = [pts.get(f"discovery_e{i:02d}", pd.Series(dtype=float)).mean() for i in ep]
        one = [pts.get(f"single_epoch_coverage_e{i:02d}", pd.Series(dtype=float)).mean() for i in ep]
        shift = [pts.get(f"drift_peak_shift_e{i:02d}", pd.Series(dtype=float)).mean() for i in ep]
        axes[0].plot(ep, disc, "-", color=f"C{k}", label=f"{name}: MAX so far")
        axes[0].plot(ep, one, "--", color=f"C{k}", alpha=.6, label=f"{name}: that epoch")
        axes[1].plot(ep, shift, "o-", color=f"C{k}", ms=3, label=name)
        any_curve = True
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("share of the object with A > 0.5")
    axes[0].set_ylim(0, 1)
    axes[0].set_title("discovery curve (mean over seeds)", fontsize=9)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("peak shift from previous epoch (image sides)")
    axes[1].set_title("how far the attention peak moves", fontsize=9)
    for ax in axes:
        ax.grid(alpha=.3)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    if any_curve:
        axes[0].legend(fontsize=6, ncol=2)
        axes[1].legend(fontsize=6)
    fig.tight_layout()
    return fig


# -- figures ----------------------------------------------------------------------------------------
def xi_curve_figure(xi_table: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    xs = list(xi_table.index)
    for col in [c for c in xi_table.columns if c.endswith(" mean")]:
        ax.plot(xs, xi_table[col], marker="o", label=f"{col[:-5]} (ours: CAM mIoU, train)")
    ax.set_xlabel("xi (weight of the spotlight branch, eq. 8)")
    ax.set_ylabel("CAM mIoU (train), mean over seeds")
    ax2 = ax.twinx()
    ax2.plot(xs, [REPORT_TABLE2[x] for x in xs], "k--", marker="x", label="report (VOC test mIoU %, right axis)")
    ax2.set_ylabel("report's mIoU (%)")
    ax.legend(fontsize=7, loc="lower left")
    ax2.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    ax.set_title("weighted CAM vs xi: ours (left axis) and the report's Table 2 (right axis)", fontsize=8)
    return fig


def _picks(layout, n: int = 6) -> list[int]:
    return list(range(0, len(layout), max(1, len(layout) // n)))[:n]


# -- the pages ----------------------------------------------------------------------------------------
def _notes(reports: Path, page: str) -> str:
    """The hand-written discussion of a page (``reports/notes/<page>``), appended verbatim."""
    f = reports / "notes" / page
    return ("\n" + f.read_text()) if f.exists() else ""


def _skip(name: str) -> str:
    return f"_No finished points for {name} yet: run its grid (see README, \"Ablation batches\")._\n"


def write_reports(df: pd.DataFrame, reports: str | Path, quick: bool = False) -> dict[str, pd.DataFrame]:
    """Render every table and figure from the results ``df`` into ``reports``; returns the tables."""
    import torch

    from .attention_io import load_attention
    from .data.voc import VOCLayout
    from .diagnostics import part_mass
    from .report import benchmark_report
    from .runs import run_data_root, upstream_run
    from .viz import save_figure, sources_figure, threshold_curves_figure

    reports = Path(reports)
    reports.mkdir(parents=True, exist_ok=True)
    tables = {"oaa_table": oaa_table(df, quick), "oaa_detail": oaa_detail(df, quick),
              "oaa_per_class": per_class_table(df, quick), "oaa_variants": gate_variants(df, quick),
              "oaa_plus_table": oaa_plus_table(df, quick), "amr_table": amr_table(df, quick),
              "amr_xi_table": amr_xi_table(df, quick),
              "amr_ablation": amr_table(df, quick, {k: v for k, v in AMR_ABLATION_ROWS.items()}),
              "amr_ablation_detail": amr_ablation_detail(df, quick),
              "segmentation_table": segmentation_table(df, quick), "segmentation_detail": segmentation_detail(df, quick),
              "fraction_table": fraction_table(df, quick),
              "oaa_setting": setting_table(df, quick), "drift_setting": drift_table(df, quick)}
    md = {name: write_table(t, reports / name) if not t.empty else _skip(name) for name, t in tables.items()}
    cls = default_classifier_points(df, quick)
    n_seeds = len(cls)

    if not cls.empty:  # figures of the first seed's classifier run
        run0 = find_run(cls.iloc[0]["run"])
        seed0 = int(cls.iloc[0]["p.seed"])
        root = run_data_root(run0)
        layout = VOCLayout(root, "train")
        ev = read_json(run0 / "evaluation.json")["sources"]
        save_figure(threshold_curves_figure(ev, f"seed {seed0}: CAM mIoU vs background threshold"),
                    reports / "oaa_threshold_curves.png")
        srcs = {name: load_attention(run0 / "attention" / f"{name}.pt") for name in OAA_ROWS.values()}
        save_figure(sources_figure(layout, srcs, _picks(layout)), reports / "oaa_sources.png")
        evo = select(df, NB["evolution"], quick)
        evo = evo[evo["run"].map(lambda r: upstream_run(find_run(r), "oaa_run") == run0)] if not evo.empty else evo
        if not evo.empty:
            shutil.copyfile(find_run(evo.iloc[0]["run"]) / "attention_evolution.png", reports / "attention_evolution.png")
        save_figure(drift_figure(df, quick), reports / "drift_setting.png")
        props = {label: part_mass(srcs[src], root) for label, src in OAA_ROWS.items()}
        props_df = pd.DataFrame(props).T[["part_mass_share", "part_area_share", "object_precision", "object_recall"]]
        props_md = write_table(props_df.rename_axis(f"seed {seed0}"), reports / "benchmark_cam_properties_table")
        write_text(reports / "benchmark_cam_properties.md", f"""## Measured under a trained classifier (seed {seed0})

Does the benchmark have the property it was built for? For each (image, class) map on the first 500
training images: the share of the attention mass (inside the object) that sits on the
discriminative part, against the part's share of the object's area, and the precision/recall of
`A > 0.3` against the object's pixels (`wsss_lib.diagnostics.part_mass`).

{props_md}

A part mass share well above the part area share means the map concentrates on the part.
""")
        benchmark_report(root, reports)  # re-rendered with the measured CAM properties
        hl = select(df, NB["oaa_plus"], quick, loss="hl", source=None)
        mce = select(df, NB["oaa_plus"], quick, loss="mce", source=None)
        hl, mce = (x[x["p.seed"] == seed0] for x in (hl, mce))
        if not hl.empty and not mce.empty:
            plus = {"cam": srcs["cam"], "oaa_max": srcs["oaa_max"],
                    "OAA+ (MCE)": load_attention(find_run(mce.iloc[0]["run"]) / "attention" / "oaa_plus.pt"),
                    "OAA+ (HL)": load_attention(find_run(hl.iloc[0]["run"]) / "attention" / "oaa_plus.pt")}
            save_figure(sources_figure(layout, plus, _picks(layout)), reports / "oaa_plus_sources.png")
        cls_map = float(cls["cls_mAP_val"].mean())
        params = read_json(run0 / "params.json")["params"]
        write_text(reports / "oaa.md", f"""# OAA on the embedded benchmark

Classifier + OAA, {n_seeds} seed(s) ({', '.join(map(str, cls['p.seed']))}), `ClassifierConfig`
defaults{' (quick)' if quick else ''}: backbone `{params['backbone']}`, {params['epochs']} epochs,
batch {params['batch_size']}, lr {params['lr']} ({params['schedule']}), augmentation
`{params['augment']}`, gate `{params['gate']}` (start epoch {params['gate_start_epoch']}, last-epoch
fallback {params['last_epoch_fallback']}). Classification mAP (val) {cls_map:.3f}. Grid:
`notebooks/grids/oaa_fusion.yaml`; rendered by `notebooks/07_results_tables.ipynb`.

CAM mIoU on the train split (best background threshold of a 0.05-0.95 sweep, per source and seed);
the paper's column is OAA Table 2 (segmentation mIoU on VOC val: another data set and another
measure, so only the ordering can be compared):

{md['oaa_table']}

Mean over seeds of the best threshold and of foreground precision/recall there:

{md['oaa_detail']}

Per-class IoU (mean over seeds; `*` marks the classes that co-occur with context: water under
barge, rails under tram, both background in the masks):

{md['oaa_per_class']}

![threshold curves](oaa_threshold_curves.png)

![sources](oaa_sources.png)

![attention evolution](attention_evolution.png)

## Gate and schedule variants (seed {seed0}; grid `notebooks/grids/oaa_gate.yaml`)

The same training with the official code's gate (top-k, k = number of labels, accumulation from the
second epoch, last-epoch fallback) and with the paper's gate but accumulation from epoch 6, to see
whether noisy early maps or the gate explain the OAA-MAX result:

{md['oaa_variants']}

## The setting: from scratch vs pretrained, version 1 vs the two-part benchmark (issue 10)

The papers fine-tune an ImageNet-pretrained network. Since issue 10 the embedded default does the
same with the `tiny` backbone pretrained on a generated source task (24 shape/texture classes,
disjoint from the benchmark's; `wsss_lib.pretrain`, reports/benchmark.md), head at 10x lr. The table
above uses that default; here is every setting side by side (grids `notebooks/grids/oaa_setting.yaml`
and `segmentation_setting.yaml`; 3 seeds; CAM mIoU on train, segmentation mIoU on val with
saliency-mode pseudo labels; `-`: not measured):

{md['oaa_setting']}

What the plain classifier's attention does over its epochs, per setting (every training (image,
class) pair; `wsss_lib.drift`; mean over seeds; coverage = share of the object with `A > 0.5`):

{md['drift_setting']}

![drift per setting](drift_setting.png)
{_notes(reports, 'oaa.md')}""")

    write_text(reports / "oaa_plus.md", f"""# OAA+ on the embedded benchmark

The analogue of OAA Table 2 (rows 1-5): CAM mIoU on the train split, mean ± std over seeds
(grids `oaa_fusion.yaml`, `oaa_plus_loss.yaml`). The paper's column is the *segmentation* mIoU on
VOC val of a DeepLab trained on each source's pseudo labels (with saliency), so only the ordering is
comparable, not the values.

{md['oaa_plus_table']}

![sources](oaa_plus_sources.png)
{_notes(reports, 'oaa_plus.md')}""")

    write_text(reports / "amr.md", f"""# AMR on the embedded benchmark

The analogue of the reproduction report's Table 1 (grid `notebooks/grids/amr.yaml`), weighted CAM at
xi = 0.5 (the report's value, fixed before looking at our sweep). The spotlight branch is each
seed's classifier run, frozen (the official recipe), so the CAM row is exactly the spotlight
branch. The report measured VOC *test* mIoU after refinement (Original-AMR 56.8, Recurrence-AMR
53.2, Improvement-AMR 54.5).

Rows "AMR" and "AMR+both" use the `paper` preset (the report's equations: paper-form AMM with
per-image Gaussian statistics, CPS (eq. 6) on max-normalized maps of the present classes, weights
0.5/0.5/1). "AMR (official preset)" uses the official code's recipe: the official AMM
(`wsss_lib.models.amm.AMM(form="official")`, tested equal to the official module), CPS on the raw
ReLU CAMs of all classes, weights 0.5/0.5/0.05, frozen spotlight, the compensation branch's first
stage detached; on the `tiny` backbone (no bottlenecks) the AMM sits after each stage.

{md['amr_table']}

The xi sweep (the report's Table 2), mean over seeds (every AMR run scores every xi; grid
`amr_xi.yaml` reads the same runs point by point):

{md['amr_xi_table']}

![xi curve](amr_xi_curve.png)
{_notes(reports, 'amr.md')}""")
    if not tables["amr_xi_table"].empty:
        save_figure(xi_curve_figure(tables["amr_xi_table"]), reports / "amr_xi_curve.png")

    write_text(reports / "amr_ablation.md", f"""# AMR ablation: each modification of the report alone

Gaussian threshold modulation (report eq. 9) and the area regularizer (report eq. 10), each alone
and together, weighted CAM at xi = 0.5 (grids `amr.yaml` and `amr_ablation.yaml`).

{md['amr_ablation']}

{md['amr_ablation_detail']}
{_notes(reports, 'amr_ablation.md')}""")

    if not tables["segmentation_table"].empty:
        save_figure(segmentation_figure(df, quick), reports / "segmentation.png")
    write_text(reports / "segmentation.md", f"""# Segmentation: the papers' own measure

A segmentation network (`network="small"`: the tiny backbone with a LargeFOV-style head, 6 epochs,
poly schedule, head at 10x lr) trained on each source's pseudo labels (notebook 05; grid
`notebooks/grids/segmentation.yaml`), scored on the val split's masks. Two pseudo-label modes:
*saliency* (OAA section 4, the official `gen_gt.py` thresholds, the embedded saliency detector of
`wsss_lib.saliency`) and *threshold* (background below 0.3, the IRN/AMR convention). The paper
column is OAA Table 2 (VOC val, DeepLab-LargeFOV) and, for AMR, the reproduction report's Table 1
(VOC test after refinement): other data, so compare orderings, not values.

{md['segmentation_table']}

![segmentation](segmentation.png)

Means over seeds of the pseudo labels' quality (train split; mIoU over labelled pixels, recall
counts ignored pixels as missed) next to the network's val mIoU:

{md['segmentation_detail']}

## Data fraction (OAA Table 3)

The network trained on nested random subsets of the OAA+ (HL) saliency-mode pseudo labels, the
same number of steps at every fraction (grid `notebooks/grids/data_fraction.yaml`):

{md['fraction_table']}
{_notes(reports, 'segmentation.md')}""")
    return tables


__all__ = ["AMR_ROWS", "OAA_TABLE2", "OAA_TABLE3", "SEG_ROWS", "fraction_table", "segmentation_table", "REPORT_TABLE1", "REPORT_TABLE2", "amr_table", "amr_xi_table", "gate_variants",
           "oaa_plus_table", "oaa_table", "per_class_table", "select", "write_reports"]
