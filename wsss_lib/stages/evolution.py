"""Stage 2: attention evolution (OAA Figure 1) from a classifier run's per-epoch snapshots.

Nothing is trained: the figure of the snapshot images' attention epoch by epoch, the drift
measure (IoU of consecutive epochs' attention regions, :func:`wsss_lib.formulas.drift.consecutive_region_iou`), and
the discovery figure (:func:`wsss_lib.figures.plots.discovery_figure`) with the classifier run's drift over
every training pair (:mod:`wsss_lib.formulas.drift`, its ``drift.json``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsss_lib.engine.config import StageConfig
from wsss_lib.figures.evolution import attention_evolution_figure, discovery_figure
from wsss_lib.figures.picks import detected_snapshot_rows
from wsss_lib.figures.plots import save_figure
from wsss_lib.formulas.drift import consecutive_region_iou, summary_metrics
from wsss_lib.runs.folders import write_metrics
from wsss_lib.stages.base import RunContext, Stage
from wsss_lib.util.io import read_json, torch_load, write_json


@dataclass
class EvolutionConfig(StageConfig):
    n_images: int = 4  # rows of the static figure
    threshold: float = 0.5  # attention region threshold of the drift measure

    def validate(self) -> "EvolutionConfig":
        self.check_int("n_images", 1)
        self.check_number("threshold", 0.0, 1.0, closed_hi=False)
        return self


class EvolutionStage(Stage):
    name = "evolution"
    prefix = "evolution"
    Config = EvolutionConfig
    upstream = {"oaa_run": "classifier"}
    main_metrics = ("drift_iou_mean",)
    quick_note = "the quick classifier run has 6 short epochs: the drift of a tiny run"
    notebook = "02_attention_evolution.ipynb"
    outputs = ("metrics.json", "attention_evolution.png", "discovery.png", "drift.json")

    def execute(self, ctx: RunContext) -> None:

        cfg, run = ctx.cfg, ctx.upstream["oaa_run"]
        snaps = torch_load(run / "snapshots.pt")
        rows = detected_snapshot_rows(snaps, ctx.layout, min(cfg.n_images, len(snaps["indices"])))
        rule = ("Rows: the first snapshot images (in id order) whose final CAM of their first present class is not "
                "empty and peaks on its object.")
        save_figure(attention_evolution_figure(snaps, ctx.layout, rows=rows, rule=rule),
                    ctx.out / "attention_evolution.png")
        # the classifier run's drift over every training pair
        summary = read_json(run / "drift.json") if (run / "drift.json").exists() else None
        save_figure(discovery_figure(snaps, ctx.layout, summary=summary, threshold=cfg.threshold),
                    ctx.out / "discovery.png")
        drift = consecutive_region_iou(snaps, ctx.layout.labels, cfg.threshold)
        finite = [float(d) for d in drift if np.isfinite(d)]
        # epoch pair e -> e+1 (epochs counted from 1); undefined pairs (no region) are null, never NaN
        write_json(ctx.out / "drift.json", {"threshold": cfg.threshold,
                                           "pairs": [[e + 1, e + 2] for e in range(len(drift))],
                                           "iou": [float(d) if np.isfinite(d) else None for d in drift]})
        metrics = {"epochs": float(snaps["maps"].shape[0]), "snapshot_images": float(len(snaps["indices"])),
                   **(summary_metrics(summary) if summary else {})}
        if finite:  # undefined drift (fewer than two epochs, or no region above the threshold) is left out
            metrics.update(drift_iou_mean=float(np.mean(finite)), drift_iou_last=finite[-1])
        write_metrics(ctx.out, metrics)


STAGE = EvolutionStage()

__all__ = ["EvolutionConfig", "EvolutionStage", "STAGE"]
