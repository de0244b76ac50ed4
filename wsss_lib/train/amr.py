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

Presets (``preset``): ``"paper"`` (default) is the report's equations: paper-form AMM (per-image
Gaussian statistics, eq. 2's std, mean spatial pool), CPS (eq. 6) on max-normalized maps of the
present classes, loss weights 0.5/0.5/1. ``"official"`` is the official code's recipe: official-form
AMM (:data:`wsss_lib.models.amm.AMM_FORMS`), CPS on the raw ReLU CAMs of all classes
(``cps_maps="raw"``), weights 0.5/0.5/0.05 (the 0.05 was tuned for that raw scale), the spotlight
branch frozen, the compensation branch's first stage detached (``detach_stem``), AMM inside every
bottleneck on ResNets (the ``tiny`` net has no bottlenecks: there the AMM sits after each stage).
Parameters given explicitly override the preset; ``params.json`` records every resolved value.

``init_from`` may also name an official AMR checkpoint file (``.pth``, the AMR repository's
``resnet50_amr``): then nothing is trained, and its two branches are read with our batched inference
(:func:`wsss_lib.models.official.load_official_checkpoint`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..attention import attention_maps, class_scores
from ..losses import amr_total_loss, area_regularizer, cps_loss, multilabel_bce
from ..models.amm import AMM_FORMS, SPATIAL_POOLS
from ..models.amr import PLACEMENTS, build_amr, weighted_cam
from ..io import file_digest
from ..runs import data_identity, is_finished, prepare_run, run_data_root, run_identity, stage_entry, write_metrics
from .classifier import run_classifier_stage
from .common import dense_source, flat_metrics, infer_attention, save_and_score, training_set
from .config import TrainConfig
from .engine import Batch, LoopConfig, fit, resolve_device, seed_everything

VARIANTS = {"AMR": (False, False), "AMR+threshold": (True, False), "AMR+area": (False, True),
            "AMR+both": (True, True)}
REPORT_XI = (0.1, 0.3, 0.5, 0.7, 0.9)
#: every AMR run scores the weighted CAM (eq. 8) at each of these xi
XI_SWEEP = tuple(round(0.1 * i, 1) for i in range(11))
CPS_MAPS = ("normalized", "raw")
#: the values a preset sets (explicit parameters win); "placement" is resolved per backbone
PRESETS: dict[str, dict] = {
    "paper": {},
    "official": {"amm_form": "official", "cps_maps": "raw", "w_cls_s": 0.5, "w_cls_c": 0.5, "w_cps": 0.05,
                 "freeze_spotlight": True, "detach_stem": True, "placement": "bottleneck"},
}


@dataclass
class AMRConfig(TrainConfig):
    """AMR hyper-parameters. Defaults: the paper's loss weights (eq. 5 averages the branches, eq. 6
    weight 1) and, to keep the CPU budget, the official code's efficient recipe for the spotlight
    branch: initialized from a trained CAM classifier (``init_from``, default the classifier run
    of the same seed) and frozen."""

    preset: str = "paper"  # "paper" | "official" (see the module docstring)
    variant: str = "AMR"
    threshold: float = 0.3  # report eq. 9 (the report gives no value; our choice)
    area_weight: float = 0.1  # report eq. 10 weight (the report gives no value; our choice)
    w_cls_s: float = 0.5
    w_cls_c: float = 0.5
    w_cps: float = 1.0  # official code: 0.05 (with w_cls 0.5 / 0.5)
    placement: str = "stage"  # "stage" | "bottleneck" (ResNet only, official)
    amm_form: str = "paper"  # "paper" | "official" (numerically the official net/amm.py)
    gaussian_stats: str | None = None  # None: the form's; "sample" (paper) | "batch" (official)
    gaussian_normalize: bool | None = None  # None: the form's; official: True (divide by sqrt(2 pi) sigma)
    spatial_pool: str | None = None  # None: the form's; "avg" (report) | "maxavg" (official)
    reduction: int = 16
    cps_maps: str = "normalized"  # eq. 6 on max-normalized maps of present classes | "raw" ReLU CAMs (official)
    detach_stem: bool = False  # official: True (no gradient into the compensation branch's first stage)
    init_from: str = "auto"  # "auto": the classifier run of this seed; "": none; or a run folder
    freeze_spotlight: bool = True
    xi: tuple[float, ...] = REPORT_XI
    xi_main: float = 0.5  # the report's choice; the table reports this one and the sweep

    def validate(self) -> "AMRConfig":
        super().validate()
        self.check("preset", self.preset in PRESETS, f"one of {', '.join(PRESETS)}")
        self.check("variant", self.variant in VARIANTS, f"one of {', '.join(VARIANTS)}")
        self.check("placement", self.placement in PLACEMENTS, f"one of {PLACEMENTS}")
        self.check("placement", self.placement != "bottleneck" or self.backbone.startswith("resnet"),
                   "'stage' for a backbone without bottlenecks (tiny, vgg16)")
        self.check("amm_form", self.amm_form in AMM_FORMS, f"one of {', '.join(AMM_FORMS)}")
        self.check("gaussian_stats", self.gaussian_stats in (None, "sample", "batch"), "None, 'sample' or 'batch'")
        self.check("spatial_pool", self.spatial_pool in (None, *SPATIAL_POOLS), f"None or one of {SPATIAL_POOLS}")
        self.check("cps_maps", self.cps_maps in CPS_MAPS, f"one of {CPS_MAPS}")
        self.check("xi", isinstance(self.xi, (list, tuple)) and bool(self.xi)
                   and all(isinstance(x, (int, float)) and round(float(x), 1) in XI_SWEEP for x in self.xi),
                   f"a non-empty list of values of the scored sweep {XI_SWEEP}")
        self.xi = tuple(round(float(x), 1) for x in self.xi)
        self.check("xi_main", isinstance(self.xi_main, (int, float)) and round(float(self.xi_main), 1) in XI_SWEEP,
                   f"one of {XI_SWEEP}")
        self.xi_main = round(float(self.xi_main), 1)
        self.check("threshold", 0 <= self.threshold < 1, "a number in [0, 1)")
        self.check("freeze_spotlight", not (self.freeze_spotlight and not self.init_from),
                   "False when init_from is empty (a frozen random spotlight branch is no CAM)")
        return self

    @classmethod
    def from_params(cls, quick: bool = False, seed=0, device="auto", **overrides) -> "AMRConfig":
        """As :meth:`TrainConfig.from_params`, with the preset's values applied under ``overrides``."""
        preset = overrides.get("preset", cls.preset)
        if preset not in PRESETS:
            raise cls.invalid("preset", preset, f"one of {', '.join(PRESETS)}")
        values = dict(PRESETS[preset])
        if values.get("placement") == "bottleneck" and not str(overrides.get("backbone", cls.backbone)).startswith("resnet"):
            values["placement"] = "stage"  # no bottlenecks to put the AMM into
        return super().from_params(quick=quick, seed=seed, device=device, **{**values, **overrides})


@stage_entry
def run_amr_stage(data_root: str = "", run_dir: str = "", seed: int = 0, device: str = "auto",
                  quick: bool = False, progress: bool = True, stop_after_steps: int | None = None,
                  **params) -> Path:
    """Train (or resume, or reuse) an AMR run; returns its folder."""
    cfg = AMRConfig.from_params(quick=quick, seed=seed, device=device, **params)
    dev = resolve_device(device)
    init_run = official = None
    if cfg.init_from == "auto":
        init_run = run_classifier_stage(data_root=data_root, seed=seed, device=device, quick=quick, progress=progress,
                                        backbone=cfg.backbone, pretrained=cfg.pretrained,
                                        output_stride=cfg.output_stride)
    elif cfg.init_from and Path(cfg.init_from).is_file():
        official = Path(cfg.init_from)  # an official AMR checkpoint: inference only
    elif cfg.init_from:
        init_run = Path(cfg.init_from)
        if not (init_run / "checkpoint.pt").exists():
            raise FileNotFoundError(f"init_from={cfg.init_from!r} is neither an official AMR checkpoint file nor a "
                                    "run folder with checkpoint.pt: expected a classifier run folder (notebook 01) "
                                    "or a .pth file of the official AMR code")
    if init_run is not None:
        root = run_data_root(init_run)
    else:
        from .data_setup import resolve_data_root
        root = resolve_data_root(data_root, quick)
    use_threshold, use_area = VARIANTS[cfg.variant]
    # xi and xi_main only choose what to show: every run scores the whole sweep XI_SWEEP, so one
    # AMR run serves every xi (they are left out of its identity)
    all_params = {"data_root": str(root), "data": data_identity(root), "seed": seed, "quick": quick,
                  "device": str(dev), "init_run": run_identity(init_run) if init_run else "",
                  "official_checkpoint_sha256": file_digest(official) if official else "",
                  **{k: v for k, v in asdict(cfg).items() if k not in ("xi", "xi_main")}}
    # init_from is identified by what it names (the upstream run's identity, or the checkpoint's
    # digest), never by a path: "auto" and the same run's folder are one run
    all_params["init_from"] = official.name if official is not None else ("run" if init_run else "")
    out = prepare_run(f"amr-{cfg.variant.replace('+', '_')}" + ("-official-ckpt" if official else ""),
                      all_params, run_dir, upstream={"init_run": init_run})
    if is_finished(out):
        return out
    seed_everything(seed)
    ts = training_set(root, cfg.crop_size, cfg.output_stride)
    if official is not None:
        return _score_official_checkpoint(official, ts, root, out, cfg, dev, progress)
    model = build_amr(cfg.backbone, ts.num_classes, pretrained=cfg.pretrained, output_stride=cfg.output_stride,
                      placement=cfg.placement, freeze_spotlight=cfg.freeze_spotlight, detach_stem=cfg.detach_stem,
                      reduction=cfg.reduction, form=cfg.amm_form, spatial_pool=cfg.spatial_pool,
                      stats=cfg.gaussian_stats, normalize=cfg.gaussian_normalize,
                      threshold=cfg.threshold if use_threshold else None).to(dev)
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
        if cfg.cps_maps == "raw":  # official: raw ReLU CAMs, every class
            l_cps = cps_loss(F_s.relu(), F_c.relu())
        else:  # eq. 6 on max-normalized maps (eq. 2) of the present classes
            l_cps = cps_loss(M_s, M_c, b.labels)
        return amr_total_loss(multilabel_bce(class_scores(F_s), b.labels), multilabel_bce(class_scores(F_c), b.labels),
                              l_cps, cfg.w_cls_s, cfg.w_cls_c, cfg.w_cps, l_area, cfg.area_weight if use_area else 0.0)

    loop = LoopConfig(cfg.epochs, cfg.batch_size, seed, ts.crop, cfg.augment, cfg.scale_range,
                      cfg.num_workers, cfg.checkpoint_every, cfg.amp)
    res = fit(model, opt, cfg.schedule, ts.dataset, loop, out, step, None, dev, progress,
              desc=cfg.variant, stop_after_steps=stop_after_steps)
    return _score_branches(model, ts, root, out, cfg, dev, progress,
                           {"history": res.history, "train_seconds": res.seconds,
                            "final_loss": res.history[-1]["loss"]})


def _score_branches(model, ts, root: Path, out: Path, cfg: AMRConfig, dev, progress: bool, train_info: dict) -> Path:
    """Both branches' maps, the weighted CAM for every xi (eq. 8), scored; metrics.json."""
    t0 = time.perf_counter()
    (M_s, M_c), _ = infer_attention(model, ts.dataset, ts.size, ts.crop, dev, progress=progress)
    sources = {"amr_spotlight": dense_source(M_s, ts.layout), "amr_compensation": dense_source(M_c, ts.layout)}
    xis = list(XI_SWEEP)
    for xi in xis:
        sources[f"amr_xi{xi:g}"] = dense_source(weighted_cam(M_s, M_c, xi), ts.layout)
    evals = save_and_score(out, root, sources, {"history": train_info.get("history", []), "xi": xis})
    metrics = {**flat_metrics(evals), "amr_miou": evals["amr_xi0.5"]["miou"],  # the report's xi
               "amr_best_xi": max(xis, key=lambda x: evals[f"amr_xi{x:g}"]["miou"]),
               "eval_seconds": time.perf_counter() - t0,
               **{k: v for k, v in train_info.items() if k != "history"}}
    write_metrics(out, metrics)
    return out


def _score_official_checkpoint(path: Path, ts, root: Path, out: Path, cfg: AMRConfig, dev, progress: bool) -> Path:
    from ..models.official import load_official_checkpoint

    model = load_official_checkpoint(path, "amr").to(dev)
    k = model.spotlight.num_classes
    if k != ts.num_classes:
        raise ValueError(f"init_from={str(path)!r}: the official checkpoint has {k} classes, the data at {root} has "
                         f"{ts.num_classes} foreground classes")
    return _score_branches(model, ts, root, out, cfg, dev, progress, {"train_seconds": 0.0})


__all__ = ["AMRConfig", "CPS_MAPS", "PRESETS", "VARIANTS", "XI_SWEEP", "run_amr_stage"]
