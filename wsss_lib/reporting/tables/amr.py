"""The AMR reproduction report's tables (AMR: Qin et al., AAAI 2022), declared as data.

Table 1: the frozen spotlight branch (= the CAM), AMR and AMR with the report's two modifications
at the weighted CAM's xi (eq. 8), and the compensation branch alone; the official code's recipe as
a third row. Table 2: the weighted CAM along xi. The ablation: each modification alone.
"""

from __future__ import annotations

from wsss_lib.reporting.tables.core import Column, Row, Table
from wsss_lib.reporting.tables.oaa import HEALTH_NOTE, REPORT_TABLE1
from wsss_lib.stages.amr import AMRConfig

#: the report's Table 2 (VOC test mIoU, %) along xi
REPORT_TABLE2 = {0.1: 49.2, 0.3: 53.4, 0.5: 56.8, 0.7: 54.5, 0.9: 50.7}
REPORT_COL = "report (VOC test mIoU %)"
#: the weighted CAM's xi the tables show (the stage's default, the report's choice)
XI = AMRConfig.xi_main

#: Table 1's variants: label -> the AMR stage's parameters
AMR_VARIANTS = {"AMR": {"variant": "AMR"}, "AMR+both": {"variant": "AMR+both"},
                "AMR (official preset)": {"variant": "AMR", "preset": "official"}}
ABLATION_VARIANTS = {"AMR": {"variant": "AMR"}, "AMR+threshold": {"variant": "AMR+threshold"},
                     "AMR+area": {"variant": "AMR+area"}, "AMR+both": {"variant": "AMR+both"}}


def table1_rows(variants: dict) -> tuple[Row, ...]:
    first = next(iter(variants.values()))
    rows = [Row("CAM (= frozen spotlight)", "amr", first, "amr_spotlight_miou")]
    for label, params in variants.items():
        rows.append(Row(f"{label} (xi {XI:g})", "amr", params, f"amr_xi{XI:g}_miou", paper=REPORT_TABLE1.get(label)))
        rows.append(Row(f"{label} compensation only", "amr", params, "amr_compensation_miou"))
    return tuple(rows)


AMR_NOTE = ("CAM mIoU on the train split at the best background threshold, mean, std and n over seeds; "
            f"(xi {XI:g}): the weighted CAM xi*M_s + (1-xi)*M_c (report eq. 8); compensation only: M_c alone. The "
            "report's column is VOC test mIoU after refinement: compare orderings only.")
AMR_TABLE = Table("amr_table", table1_rows(AMR_VARIANTS), paper=REPORT_COL,
                  title="The reproduction report's Table 1: AMR, AMR with both modifications, the official recipe",
                  note=AMR_NOTE)
AMR_ABLATION = Table("amr_ablation", table1_rows(ABLATION_VARIANTS), paper=REPORT_COL,
                     title="AMR ablation: each modification of the report alone", note=AMR_NOTE)
AMR_HEALTH = Table("amr_health", tuple(Row(label, "amr", p) for label, p in AMR_VARIANTS.items()), (
    Column("never-active head units (compensation)", {}, "dead_head_units_compensation"),
    Column("empty maps (spotlight)", {}, "empty_maps_amr_spotlight"),
    Column("empty maps (compensation)", {}, "empty_maps_amr_compensation"), Column("final loss", {}, "final_loss")),
    index="variant", paper="", title="Health of the AMR runs: dead units, empty maps, final loss",
    note=HEALTH_NOTE + " The spotlight branch is frozen: its units are the classifier run's.")
AMR_XI_TABLE = Table("amr_xi_table", tuple(Row(f"{x:g}", "amr", {}, f"amr_xi{x:g}_miou", paper=p)
                                           for x, p in REPORT_TABLE2.items()),
                     tuple(Column(f"{label} mean", params, agg="mean") for label, params in AMR_VARIANTS.items()),
                     index="xi", paper=REPORT_COL,
                     title="The report's Table 2: the weighted CAM along xi",
                     note="CAM mIoU (train) of xi*M_s + (1-xi)*M_c, mean over seeds, per AMR variant; the "
                          "report's column is VOC test mIoU.")
AMR_ABLATION_DETAIL = Table("amr_ablation_detail", tuple(Row(label, "amr", p) for label, p in ABLATION_VARIANTS.items()), (
    Column("compensation only", {}, "amr_compensation_miou", "mean"), Column("best xi (mean)", {}, "amr_best_xi", "mean"),
    Column(f"fg precision (xi {XI:g})", {}, f"amr_xi{XI:g}_fg_precision", "mean"),
    Column(f"fg recall (xi {XI:g})", {}, f"amr_xi{XI:g}_fg_recall", "mean")),
    index="variant (mean over seeds)", paper="",
    title="AMR variants in detail: the compensation branch, the best xi, precision and recall",
    note="best xi: the xi of the highest CAM mIoU per run, averaged; fg precision / recall at xi = the table's.")

#: the two inferences of grid amr_inference.yaml (the first 100 training images; the official one on
#: a shorter schedule than its defaults: see the grid file)
INFERENCE_SUBSET = {"score_images": 100}
INFERENCES = {"plain": {**INFERENCE_SUBSET, "inference": "plain"},
              "official make_cam": {**INFERENCE_SUBSET, "inference": "official", "adv_iter": 8,
                                    "cam_scales": [1.0, 0.5, 1.5]}}
AMR_INFERENCE_TABLE = Table("amr_inference", tuple(
    Row(f"{label}{suffix}", "amr", params, metric)
    for label, params in (("AMR", {"variant": "AMR"}), ("AMR (official preset)", {"variant": "AMR", "preset": "official"}))
    for suffix, metric in ((f" (xi {XI:g})", f"amr_xi{XI:g}_miou"), (" compensation only", "amr_compensation_miou"),
                           (" spotlight only", "amr_spotlight_miou"))), tuple(
    Column(f"{name}, {what}", params, agg=agg) for name, params in INFERENCES.items()
    for what, agg in (("mean ± std", "mean_std"),)),
    index="variant and map", paper="",
    title="AMR read two ways: the plain CAM and the official make_cam (adversarial climbing), first 100 images",
    note="CAM mIoU on the first 100 training images (id order), mean ± std over seeds, the same trained networks read "
         "two ways: plain = each branch's ReLU CAM at one scale; official make_cam = Grad-CAM under adversarial climbing "
         "over scales 1.0, 0.5, 1.5 and their mirrors with adv_iter 8 (the official defaults, 27 over seven scales, "
         "cost about 12 s per image on 2 CPU cores). Grid amr_inference.yaml, not in make run.")

TABLES = (AMR_TABLE, AMR_HEALTH, AMR_XI_TABLE, AMR_ABLATION, AMR_ABLATION_DETAIL, AMR_INFERENCE_TABLE)

__all__ = ["ABLATION_VARIANTS", "AMR_HEALTH", "AMR_INFERENCE_TABLE", "AMR_VARIANTS", "INFERENCES", "REPORT_TABLE2", "TABLES", "XI", "table1_rows"]
