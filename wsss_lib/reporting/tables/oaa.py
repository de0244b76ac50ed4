"""The OAA paper's tables (Jiang et al., ICCV 2019), declared as data.

Table 2 (CAM, OAA-AVE, OAA-MAX, OAA+ with MCE and with the hybrid loss): here as CAM mIoU of each
source on the train split, and, the paper's own measure, as the val mIoU of a segmentation network
trained on each source's pseudo labels. Table 3: that network on a share of the training images.
Plus the gate variants, the per-class detail and the setting comparison (benchmark x pretraining).
"""

from __future__ import annotations

from wsss_lib.formulas.accumulation import FUSION_SOURCES
from wsss_lib.reporting.tables.core import Column, Row, Table
from wsss_lib.stages.amr import AMRConfig

#: the reproduction report's Table 1 (VOC test mIoU after refinement, %): Recurrence-AMR, Improvement-AMR
REPORT_TABLE1 = {"AMR": 53.2, "AMR+both": 54.5}

#: published figures (VOC 2012 val segmentation mIoU, %)
OAA_TABLE2 = {"CAM": 53.9, "OAA-AVE": 57.0, "OAA-MAX": 58.6, "OAA+ (MCE)": 51.2, "OAA+ (HL)": 59.6}
OAA_TABLE3 = {0.2: 54.6, 0.5: 57.3, 0.8: 58.9, 1.0: 59.6}  # OAA+ labels, share of the 10,582 training images

#: the classifier's attention sources: label -> source (the fusions from their registry)
OAA_SOURCES = {"CAM": "cam", **{label: src for src, label in sorted(FUSION_SOURCES.items(), key=lambda kv: kv[1])}}
#: the OAA+ losses of Table 2: label -> loss
OAA_PLUS_LOSSES = {"OAA+ (MCE)": "mce", "OAA+ (HL)": "hl"}


CAM_NOTE = ("CAM mIoU on the train split at each source's best background threshold (a 0.05-0.95 sweep per "
            "run); mean, std and n over seeds. The paper's column is segmentation mIoU on VOC val: another data "
            "set and measure, so compare orderings only.")


def cam_rows(params: dict | None = None) -> tuple[Row, ...]:
    """CAM, OAA-AVE, OAA-MAX: one classifier run per seed yields all three."""
    return tuple(Row(label, "classifier", dict(params or {}), "{source}_miou", {"source": src}, OAA_TABLE2.get(label))
                 for label, src in OAA_SOURCES.items())


def plus_rows(params: dict | None = None) -> tuple[Row, ...]:
    return tuple(Row(label, "oaa_plus", {**(params or {}), "loss": loss}, "oaa_plus_miou", {"source": "oaa_plus"},
                     OAA_TABLE2[label]) for label, loss in OAA_PLUS_LOSSES.items())


#: the segmentation rows: label -> (attention source, the upstream stage's parameters)
SEG_SOURCES = {"CAM": ("cam", {}), "OAA-AVE": ("oaa_ave", {}), "OAA-MAX": ("oaa_max", {}),
               "OAA+ (MCE)": ("oaa_plus", {"loss": "mce"}), "OAA+ (HL)": ("oaa_plus", {"loss": "hl"})}
SEG_MODES = ("saliency", "threshold")


def pseudo(source: str, attention_params: dict, mode: str | None = None) -> dict:
    """A segmentation call's parameters for pseudo labels of ``source`` (``mode``: None = the default)."""
    pp = {"source": source, "attention_params": dict(attention_params)}
    return {"pseudo_params": {**pp, **({"mode": mode} if mode else {})}}


def seg_rows(sources: dict, paper: dict, mode: str | None = None, **params) -> tuple[Row, ...]:
    return tuple(Row(label, "segmentation", {**params, **pseudo(src, att, mode)}, "seg_miou", paper=paper.get(label))
                 for label, (src, att) in sources.items())


def _by_mode(label: str, metric: str, mode: str, agg: str = "mean_std") -> Column:
    return Column(label, {"pseudo_params": {"mode": mode}}, metric, agg)


OAA_TABLE = Table("oaa_table", cam_rows(), title="OAA Table 2, rows 1-3: the CAM against the accumulated maps",
                  note=CAM_NOTE)
OAA_DETAIL = Table("oaa_detail", cam_rows(), (
    Column("best threshold", {}, "{source}_best_threshold", "mean"),
    Column("fg precision", {}, "{source}_fg_precision", "mean"),
    Column("fg recall", {}, "{source}_fg_recall", "mean")), index="source (mean over seeds)", paper="",
    title="Where each source's best threshold lies, and the foreground it finds there",
    note="fg precision / recall: of the pixels a source marks as some class, the share that is that class; of "
         "the object pixels, the share it marks (both at the best threshold, mean over seeds).")
OAA_PLUS_TABLE = Table("oaa_plus_table", cam_rows() + plus_rows(),
                       title="OAA Table 2: CAM, OAA-AVE, OAA-MAX and OAA+ trained with MCE or the hybrid loss (HL)",
                       note=CAM_NOTE)

#: the health figures every run records (wsss_lib.engine.health), as columns
HEALTH_NOTE = ("never-active head units: the share of the first head layer's units positive nowhere on a fixed "
               "probe batch (the first 32 training images); empty maps: the share of present (image, class) maps "
               "that are zero everywhere; final loss: the last epoch's mean training loss; mean ± std over seeds. "
               "A collapse shows here before it shows in the mIoU.")
OAA_PLUS_HEALTH = Table("oaa_plus_health", cam_rows() + plus_rows(), (
    Column("never-active head units", {}, "dead_head_units"), Column("empty maps", {}, "empty_maps_{source}"),
    Column("final loss", {}, "final_loss")), index="method", paper="",
    title="Health of the runs behind the OAA+ table: dead units, empty maps, final loss", note=HEALTH_NOTE)

#: the classifier's gate / schedule variants (grid oaa_gate.yaml), next to the default run
GATE_VARIANTS = ({}, {"preset": "official"}, {"gate_start_epoch": 5})
OAA_VARIANTS = Table("oaa_variants", tuple(
    Row(", ".join(f"{k}={v}" for k, v in p.items()) or "default: the paper's gate from epoch 1", "classifier", p)
    for p in GATE_VARIANTS), (
    *(Column(label, {}, f"{src}_miou") for label, src in OAA_SOURCES.items()),
    Column("OAA-MAX fg precision", {}, "oaa_max_fg_precision"), Column("OAA-MAX fg recall", {}, "oaa_max_fg_recall"),
    Column("pairs ever accepted", {}, "oaa_accepted_fraction")), index="variant", paper="",
    title="Gate and schedule variants of the accumulation (seed 0; our diagnostic, no paper figure)",
    note="CAM mIoU per source as above; (n=1): one seed, so no std. gate=paper: a present class is accumulated "
         "when its score exceeds every absent class's (OAA section 3.2); preset=official: the official code's details, "
         "a present class accumulated when it ranks among the image's k highest float32 probabilities (k = its number of "
         "labels; saturated ties in argsort's order), from the second epoch, the last epoch's map where the gate never "
         "accepted, whole images without flips; gate_start_epoch: the first epoch accumulated; "
         "pairs ever accepted: the share of (image, present class) pairs accumulated at least once.")

#: AMR's rows: the weighted CAM at the stage's default xi (the report's 0.5)
XI = AMRConfig.xi_main
SEG_PAPER = {**OAA_TABLE2, **{f"{k} (xi {XI:g})": f"{v:.1f} (report, test)" for k, v in REPORT_TABLE1.items()}}
SEG_ROWS = {**SEG_SOURCES, **{f"{k} (xi {XI:g})": (f"amr_xi{XI:g}", {"variant": k}) for k in REPORT_TABLE1}}
SEGMENTATION_TABLE = Table("segmentation_table", seg_rows(SEG_ROWS, SEG_PAPER), (
    *(_by_mode(f"seg mIoU (val), {m}", "seg_miou", m) for m in SEG_MODES),
    *(_by_mode(f"pseudo-label mIoU (train), {m}", "pseudo_miou", m) for m in SEG_MODES),
    _by_mode("ignored share, saliency", "pseudo_ignored", "saliency")),
    index="pseudo labels from", paper="paper (VOC seg. mIoU %)",
    title="The papers' own measure: a segmentation network trained on each source's pseudo labels",
    note="seg mIoU (val): the network on the val split; pseudo-label mIoU (train): the labels it was trained "
         "on against the masks (ignored pixels left out); saliency: attention for the class, the saliency map for "
         "the background, conflicts ignored (OAA section 4); threshold: the attention alone, background under a "
         "fixed threshold; ignored share: pixels left unlabelled.")
SEGMENTATION_DETAIL = Table("segmentation_detail", tuple(
    Row(f"{label}, {m}", "segmentation", pseudo(src, att, m), "") for label, (src, att) in SEG_ROWS.items()
    for m in SEG_MODES), tuple(Column(name, {}, metric, "mean") for name, metric in (
        ("pseudo fg precision", "pseudo_fg_precision"), ("pseudo fg recall", "pseudo_fg_recall"),
        ("pseudo ignored", "pseudo_ignored"), ("pseudo mIoU", "pseudo_miou"), ("seg mIoU", "seg_miou"))),
    index="source, mode (mean over seeds)", paper="",
    title="Pseudo-label quality behind the segmentation table",
    note="fg precision / recall of the pseudo labels' foreground against the masks, the share of ignored "
         "pixels, and the two mIoUs of the table above (mean over seeds).")
FRACTION_TABLE = Table("fraction_table", tuple(
    Row(f"{f:.0%}", "segmentation", {**pseudo("oaa_plus", {"loss": "hl"}, "saliency"), "fraction": f}, "seg_miou",
        paper=p) for f, p in OAA_TABLE3.items()), (
    Column("training images", {}, "train_images", "mean"), Column("seg mIoU (val)", {}, "seg_miou")),
    index="fraction", title="OAA Table 3: the segmentation network on a share of the training images",
    note="Pseudo labels from OAA+ (HL), saliency rule; seg mIoU on val, mean ± std over seeds; training images: "
         "how many the network saw.")

#: the settings compared by the setting grids: label -> the parameters every stage of a row gets
SETTINGS = {"v1, pretrained": {"data_root": "embedded:v1"}, "v1, scratch": {"data_root": "embedded:v1", "pretrained": False},
            "parts2, pretrained": {"data_root": "embedded:parts2"},
            "parts2, scratch": {"data_root": "embedded:parts2", "pretrained": False},
            "mini, pretrained": {"data_root": "embedded:mini"},
            "mini, scratch": {"data_root": "embedded:mini", "pretrained": False},
            "mini, MobileNetV2 (ImageNet)": {"data_root": "embedded:mini", "backbone": "mobilenet_v2", "output_stride": 16}}
SETTING_TABLE = Table("oaa_setting", cam_rows() + plus_rows(), tuple(
    Column(f"{name}: CAM mIoU", p) for name, p in SETTINGS.items()), index="source", paper="",
    title="The setting: OAA Table 2's CAM mIoU on each benchmark, pretrained and from scratch", note=CAM_NOTE)
SETTING_SEG_TABLE = Table("oaa_setting_seg", seg_rows(SEG_SOURCES, {}, "saliency"), tuple(
    Column(f"{name}: seg mIoU", p) for name, p in SETTINGS.items()), index="pseudo labels (saliency mode) from",
    paper="", title="The setting: segmentation mIoU (val) on each benchmark, pretrained and from scratch",
    note="Pseudo labels of each source by the saliency rule; seg mIoU on val, mean ± std over seeds (v1: benchmark "
         "version 1, parts2: its two-part variant, mini: version 2 with its network; scratch: no pretrained backbone).")
SETTING_DEAD_UNITS = Table("setting_dead_units", (
    Row("classifier (CAM, OAA-AVE, OAA-MAX)", "classifier", {}, "dead_head_units"), *plus_rows()), tuple(
    Column(name, p, "dead_head_units") for name, p in SETTINGS.items()), index="run", paper="",
    title="The setting's health: never-active head units of every run of the setting table", note=HEALTH_NOTE)
SETTING_EMPTY_MAPS = Table("setting_empty_maps", cam_rows() + plus_rows(), tuple(
    Column(name, p, "empty_maps_{source}") for name, p in SETTINGS.items()), index="source", paper="",
    title="The setting's health: the share of present (image, class) maps that are empty, per source",
    note=HEALTH_NOTE)
DRIFT_COLUMNS = {"cls_mAP_val": "cls mAP (val)", "drift_peak_shift_mean": "peak shift (image sides)",
                 "drift_consecutive_iou_mean": "IoU with previous epoch", "discovery_e01": "epoch 1 covers",
                 "single_epoch_coverage_last": "last epoch covers", "discovery_final": "MAX of all epochs covers",
                 "discovery_gain": "MAX - last epoch", "cam_mass_part1_last": "CAM mass on part 1",
                 "cam_mass_part2_last": "CAM mass on part 2", "cam_mass_part3_last": "CAM mass on part 3",
                 "cam_mass_body_last": "CAM mass on body", "peak_on_region_e01": "epoch 1 peaks on a region",
                 "peak_off_object_e01": "epoch 1 peaks off the object",
                 "drift_part_switch_mean": "dominant part switches / epoch",
                 "drift_pairs_switching_part": "pairs whose dominant part ever switches"}
DRIFT_TABLE = Table("drift_setting", tuple(Row(name, "classifier", p) for name, p in SETTINGS.items()),
                    tuple(Column(label, {}, metric, "mean") for metric, label in DRIFT_COLUMNS.items()),
                    index="setting (mean over seeds)", paper="",
                    title="How the attention moves during training, per setting (mean over seeds)",
                    note="covers: the share of the object inside the attention region (A > 0.5); peak shift in "
                         "image sides; part switches: how often the part holding most attention changes.")

TABLES = (OAA_TABLE, OAA_DETAIL, OAA_PLUS_TABLE, OAA_PLUS_HEALTH, OAA_VARIANTS, SEGMENTATION_TABLE, SEGMENTATION_DETAIL,
          FRACTION_TABLE)
#: the setting page's tables (rendered when a setting other than the default was run: make setting)
SETTING_TABLES = (SETTING_TABLE, SETTING_DEAD_UNITS, SETTING_EMPTY_MAPS, SETTING_SEG_TABLE, DRIFT_TABLE)

__all__ = ["HEALTH_NOTE", "OAA_SOURCES", "OAA_TABLE2", "OAA_TABLE3", "SEG_MODES", "SEG_ROWS", "SETTINGS", "SETTING_TABLES", "TABLES",
           "cam_rows",
           "plus_rows", "pseudo", "seg_rows"]
