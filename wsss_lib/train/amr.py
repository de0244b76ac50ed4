"""Stage 4: AMR (Qin et al., AAAI 2022) and the reproduction report's two modifications.

Variants (report Table 1 rows, plus each modification alone):

=============== ===================================== =========================
variant          Gaussian modulation                   loss
=============== ===================================== =========================
AMR              ``G`` (eq. 1)                          eq. 5 + eq. 6 (eq. 7)
AMR+threshold    ``G`` thresholded (report eq. 9)       eq. 7
AMR+area         ``G``                                  eq. 7 + area (report eq. 10)
AMR+both         thresholded                            eq. 7 + area
=============== ===================================== =========================

The two branches' CAMs are written once; the weighted CAM (eq. 8) is formed for every ``xi`` of
the sweep at evaluation time.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..attention import attention_maps, class_scores
from ..losses import amr_total_loss, area_regularizer, cps_loss, multilabel_bce
from ..models.amr import PLACEMENTS, build_amr, weighted_cam
from ..runs import is_finished, prepare_run, run_data_root, write_metrics
from .classifier import run_classifier_stage
from .common import dense_source, flat_metrics, infer_attention, save_and_score, training_set
from .config import TrainConfig
from .engine import Batch, LoopConfig, fit, resolve_device, seed_everything

VARIANTS = {"AMR": (False, False), "AMR+threshold": (True, False), "AMR+area": (False, True),
            "AMR+both": (True, True)}
REPORT_XI = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass
class AMRConfig(TrainConfig):
    """AMR hyper-parameters. Defaults: the paper's loss weights (eq. 5 averages the branches, eq. 6
    weight 1) and, to keep the CPU budget, the official code's efficient recipe for the spotlight
    branch: initialized from a trained CAM classifier (``init_from``, default the classifier run
    of the same seed) and frozen."""

    variant: str = "AMR"
    threshold: float = 0.3  # report eq. 9 (the report gives no value; our choice)
    area_weight: float = 0.1  # report eq. 10 weight (the report gives no value; our choice)
    w_cls_s: float = 0.5
    w_cls_c: float = 0.5
    w_cps: float = 1.0  # official code: 0.05 (with w_cls 0.5 / 0.5)
    placement: str = "stage"  # "stage" | "bottleneck" (ResNet only, official)
    gaussian_stats: str = "sample"  # "sample" | "batch" (official)
    gaussian_normalize: bool = False  # official: True (divide by sqrt(2 pi) sigma)
    spatial_pool: str = "avg"  # "avg" (report) | "avgmax" (official)
    reduction: int = 16
    init_from: str = "auto"  # "auto": the classifier run of this seed; "": none; or a run folder
    freeze_spotlight: bool = True
    xi: tuple[float, ...] = REPORT_XI
    xi_main: float = 0.5  # the report's choice; the table reports this one and the sweep

    def validate(self) -> "AMRConfig":
        super().validate()
        self.check("variant", self.variant in VARIANTS, f"one of {', '.join(VARIANTS)}")
        self.check("placement", self.placement in PLACEMENTS, f"one of {PLACEMENTS}")
        self.check("gaussian_stats", self.gaussian_stats in ("sample", "batch"), "'sample' or 'batch'")
        self.check("spatial_pool", self.spatial_pool in ("avg", "avgmax"), "'avg' or 'avgmax'")
        self.xi = tuple(float(x) for x in self.xi)
        self.check("xi", bool(self.xi) and all(0 <= x <= 1 for x in self.xi), "a non-empty list of numbers in [0, 1]")
        self.check("xi_main", 0 <= self.xi_main <= 1, "a number in [0, 1]")
        self.check("threshold", 0 <= self.threshold < 1, "a number in [0, 1)")
        self.check("freeze_spotlight", not (self.freeze_spotlight and not self.init_from),
                   "False when init_from is empty (a frozen random spotlight branch is no CAM)")
        return self


def run_amr_stage(data_root: str = "", run_dir: str = "", seed: int = 0, device: str = "auto",
                  quick: bool = False, progress: bool = True, stop_after_steps: int | None = None,
                  **params) -> Path:
    """Train (or resume, or reuse) an AMR run; returns its folder."""
    cfg = AMRConfig.from_params(quick=quick, **params)
    dev = resolve_device(device)
    init_run = None
    if cfg.init_from == "auto":
        init_run = run_classifier_stage(data_root=data_root, seed=seed, device=device, quick=quick, progress=progress,
                                        backbone=cfg.backbone, pretrained=cfg.pretrained,
                                        output_stride=cfg.output_stride)
    elif cfg.init_from:
        init_run = Path(cfg.init_from)
        if not (init_run / "checkpoint.pt").exists():
            raise FileNotFoundError(f"init_from={cfg.init_from!r} has no checkpoint.pt: expected a "
                                    "classifier run folder (notebook 01)")
    if init_run is not None:
        root = run_data_root(init_run)
    else:
        from .data_setup import resolve_data_root
        root = resolve_data_root(data_root, quick)
    use_threshold, use_area = VARIANTS[cfg.variant]
    all_params = {"data_root": str(root), "seed": seed, "quick": quick, "device": str(dev),
                  "init_run": str(init_run.resolve()) if init_run else "", **asdict(cfg)}
    out = prepare_run(f"amr-{cfg.variant.replace('+', '_')}", all_params, run_dir)
    if is_finished(out):
        return out
    seed_everything(seed)
    ts = training_set(root, cfg.crop_size, cfg.output_stride)
    model = build_amr(cfg.backbone, ts.num_classes, pretrained=cfg.pretrained, output_stride=cfg.output_stride,
                      placement=cfg.placement, freeze_spotlight=cfg.freeze_spotlight,
                      reduction=cfg.reduction, spatial_pool=cfg.spatial_pool, stats=cfg.gaussian_stats,
                      normalize=cfg.gaussian_normalize, threshold=cfg.threshold if use_threshold else None).to(dev)
    if init_run is not None:
        sd = torch.load(init_run / "checkpoint.pt", map_location=dev, weights_only=False)["model"]
        model.spotlight.load_state_dict(sd)
    opt = torch.optim.SGD(model.param_groups(cfg.lr, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)

    def step(b: Batch) -> torch.Tensor:
        F_s, F_c = model(b.views)
        F_s, F_c = F_s.float(), F_c.float()
        M_s, M_c = attention_maps(F_s), attention_maps(F_c)
        l_area = None
        if use_area:
            l_area = area_regularizer(M_c, b.labels)
            if not cfg.freeze_spotlight:
                l_area = 0.5 * (l_area + area_regularizer(M_s, b.labels))
        return amr_total_loss(multilabel_bce(class_scores(F_s), b.labels), multilabel_bce(class_scores(F_c), b.labels),
                              cps_loss(M_s, M_c, b.labels), cfg.w_cls_s, cfg.w_cls_c, cfg.w_cps,
                              l_area, cfg.area_weight if use_area else 0.0)

    loop = LoopConfig(cfg.epochs, cfg.batch_size, seed, ts.crop, cfg.augment, cfg.scale_range,
                      cfg.num_workers, cfg.checkpoint_every, cfg.amp)
    res = fit(model, opt, cfg.schedule, ts.dataset, loop, out, step, None, dev, progress,
              desc=cfg.variant, stop_after_steps=stop_after_steps)
    t0 = time.perf_counter()
    (M_s, M_c), _ = infer_attention(model, ts.dataset, ts.size, ts.crop, dev, progress=progress)
    sources = {"amr_spotlight": dense_source(M_s, ts.layout), "amr_compensation": dense_source(M_c, ts.layout)}
    xis = sorted(set(cfg.xi) | {cfg.xi_main})
    for xi in xis:
        sources[f"amr_xi{xi:g}"] = dense_source(weighted_cam(M_s, M_c, xi), ts.layout)
    evals = save_and_score(out, root, sources, {"history": res.history, "xi": xis})
    metrics = {**flat_metrics(evals), "amr_miou": evals[f"amr_xi{cfg.xi_main:g}"]["miou"],
               "amr_best_xi": max(xis, key=lambda x: evals[f"amr_xi{x:g}"]["miou"]),
               "train_seconds": res.seconds, "eval_seconds": time.perf_counter() - t0,
               "final_loss": res.history[-1]["loss"]}
    write_metrics(out, metrics)
    return out


__all__ = ["AMRConfig", "VARIANTS", "run_amr_stage"]
