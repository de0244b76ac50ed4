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
bottleneck on ResNets (a backbone without bottlenecks gets the default ``"residual"`` placement: after
each stage, beside an identity path, as every official AMM; :mod:`wsss_lib.models.amr`).
Parameters given explicitly override the preset; ``params.json`` records every resolved value.

Inference (``inference``): ``"plain"`` (default) reads both branches' ReLU CAMs at one scale, as
every other source of the suite; ``"official"`` is the official ``make_cam``: Grad-CAM under
adversarial climbing over ``cam_scales`` and their mirrors (:mod:`wsss_lib.engine.adversarial_cam`,
``adv_iter``, ``ad_coeff``, ``ad_stepsize``, ``score_th`` as the official ``run_sample.py``), batched,
its stride-4 maps scored. It applies to a trained run and to an official checkpoint alike.

``init_from`` may also name an official AMR checkpoint file (``.pth``, the AMR repository's
``resnet50_amr``): then nothing is trained, and its two branches are read with our batched inference
(:func:`wsss_lib.models.official.load_official_checkpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch

from wsss_lib.engine.adversarial_cam import OFFICIAL_SCALES, ClimbSettings, autocast_agreement, official_cams, strided_size
from wsss_lib.engine.common import dense_source, infer_attention, present_slots
from wsss_lib.engine.config import AttentionTrainConfig
from wsss_lib.engine.loop import Batch, amp_dtype
from wsss_lib.formulas.attention import attention_maps, class_scores
from wsss_lib.formulas.evaluation import CAMEvaluator
from wsss_lib.formulas.losses import amr_total_loss, area_regularizer, cps_loss, multilabel_bce
from wsss_lib.models.amm import AMM_FORMS, SPATIAL_POOLS
from wsss_lib.models.amr import LR_GROUPS, PLACEMENTS, build_amr, weighted_cam
from wsss_lib.runs.attention_io import load_attention
from wsss_lib.stages.base import RunContext, Upstream, run_split_layout
from wsss_lib.stages.training import TrainingStage
from wsss_lib.util.distributed import is_main
from wsss_lib.util.io import file_digest, read_json, torch_load

VARIANTS = {"AMR": (False, False), "AMR+threshold": (True, False), "AMR+area": (False, True),
            "AMR+both": (True, True)}
REPORT_XI = (0.1, 0.3, 0.5, 0.7, 0.9)
#: every AMR run scores the weighted CAM (eq. 8) at each of these xi
XI_SWEEP = tuple(round(0.1 * i, 1) for i in range(11))
CPS_MAPS = ("normalized", "raw")
INFERENCES = ("plain", "official")
#: fields that choose how a trained AMR network is read and scored, not how it is trained: a run
#: that reads differently (official inference, or a part of the images) scores the checkpoint of the
#: run trained with the same other fields (its ``trained_run``) instead of training again
SCORING_FIELDS = ("inference", "adv_iter", "ad_coeff", "ad_stepsize", "score_th", "cam_scales", "score_images")
#: the meanings of AMR's ``init_from`` (the spotlight branch's initialization)
INIT_FROM = {
    "auto": "the classifier run (notebook 01) of the same data, seed, backbone: found, or made now",
    "": "nothing: both branches start from the backbone's own initialization (needs freeze_spotlight=False)",
    "<run folder or identity>": "that classifier run's checkpoint (e.g. runs/classifier-6d4fc2c452)",
    "<file.pth>": "an official AMR checkpoint: nothing is trained, its two branches are scored",
}
#: the values a preset sets (explicit parameters win); "placement" is resolved per backbone
PRESETS: dict[str, dict] = {
    "paper": {},
    # step/train_amr.py + run_sample.py: its loss weights and parameter groups (the compensation
    # branch's feature extractor at 10x, the class-aware convs at 0.1x), weight decay 1e-4, and its
    # PolyOptimizer's momentum: it passes the weight decay into torch's SGD at the place of momentum,
    # so the official SGD runs with momentum 1e-4
    "official": {"amm_form": "official", "cps_maps": "raw", "w_cls_s": 0.5, "w_cls_c": 0.5, "w_cps": 0.05,
                 "freeze_spotlight": True, "detach_stem": True, "placement": "bottleneck", "lr_groups": "official",
                 "weight_decay": 1e-4, "momentum": 1e-4},
}


@dataclass
class AMRConfig(AttentionTrainConfig):
    """AMR hyper-parameters. Defaults: the paper's loss weights (eq. 5 averages the branches, eq. 6
    weight 1) and, to keep the CPU budget, the official code's efficient recipe for the spotlight
    branch: initialized from a trained CAM classifier (``init_from``, default the classifier run
    of the same seed) and frozen."""

    PRESETS = PRESETS

    preset: str = "paper"  # "paper" | "official" (see the module docstring)
    variant: str = "AMR"
    threshold: float = 0.3  # report eq. 9 (the report gives no value; our choice)
    area_weight: float = 0.1  # report eq. 10 weight (the report gives no value; our choice)
    w_cls_s: float = 0.5
    w_cls_c: float = 0.5
    w_cps: float = 1.0  # official code: 0.05 (with w_cls 0.5 / 0.5)
    placement: str = "residual"  # PLACEMENTS: "residual" f + AMM(f) after each stage | "stage" AMM(f) (the report's literal reading) | "bottleneck" (ResNet only, official)
    amm_form: str = "paper"  # "paper" | "official" (numerically the official net/amm.py)
    gaussian_stats: str | None = None  # None: the form's; "sample" (paper) | "batch" (official)
    gaussian_normalize: bool | None = None  # None: the form's; official: True (divide by sqrt(2 pi) sigma)
    spatial_pool: str | None = None  # None: the form's; "avg" (report) | "maxavg" (official)
    reduction: int = 16
    cps_maps: str = "normalized"  # eq. 6 on max-normalized maps of present classes | "raw" ReLU CAMs (official)
    detach_stem: bool = False  # official: True (no gradient into the compensation branch's first stage)
    init_from: str = "auto"  # see INIT_FROM: "auto" | "" | a classifier run | an official .pth
    freeze_spotlight: bool = True
    lr_groups: str = "cam"  # LR_GROUPS: "cam" (each branch as the classifier) | "official" (train_amr.py)
    #: the xi values notebook 04 plots besides the run's sweep (any value in [0, 1]: :func:`xi_miou`)
    xi: tuple[float, ...] = REPORT_XI
    #: the point's headline xi (the report's 0.5): any value in [0, 1], scored exactly (:func:`xi_miou`)
    xi_main: float = 0.5
    inference: str = "plain"  # "plain" ReLU CAM at one scale | "official" make_cam (adversarial climbing)
    adv_iter: int = 27  # official inference: climbing iterations per scale and class (run_sample.py)
    ad_coeff: float = 7.0  # official inference: weight of the already-strong-region term
    ad_stepsize: float = 0.08  # official inference: step size of the climb
    score_th: float = 0.5  # official inference: share of the map's peak that marks a strong region
    cam_scales: tuple[float, ...] = OFFICIAL_SCALES  # official inference: scales, each with its mirror
    score_images: int = 0  # score the first N training images (in id order); 0: all

    def validate(self) -> "AMRConfig":
        super().validate()
        self.check("variant", self.variant in VARIANTS, f"one of {', '.join(VARIANTS)}")
        self.check("placement", self.placement in PLACEMENTS, f"one of {PLACEMENTS}")
        self.check("placement", self.placement != "bottleneck" or self.backbone.startswith("resnet"),
                   "'residual' or 'stage' for a backbone without bottlenecks (tiny, vgg16, mobilenet_v2)")
        self.check("amm_form", self.amm_form in AMM_FORMS, f"one of {', '.join(AMM_FORMS)}")
        self.check("gaussian_stats", self.gaussian_stats in (None, "sample", "batch"), "None, 'sample' or 'batch'")
        self.check("spatial_pool", self.spatial_pool in (None, *SPATIAL_POOLS), f"None or one of {SPATIAL_POOLS}")
        self.check("cps_maps", self.cps_maps in CPS_MAPS, f"one of {CPS_MAPS}")
        self.check("lr_groups", self.lr_groups in LR_GROUPS, f"one of {', '.join(LR_GROUPS)}")
        self.check("xi", isinstance(self.xi, (list, tuple)) and bool(self.xi)
                   and all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1 for x in self.xi),
                   "a non-empty list of numbers in [0, 1]")
        self.xi = tuple(float(x) for x in self.xi)
        self.check_number("xi_main", 0.0, 1.0)
        self.xi_main = float(self.xi_main)
        self.check_number("threshold", 0.0, 1.0, closed_hi=False)
        for name in ("area_weight", "w_cls_s", "w_cls_c", "w_cps"):
            self.check_number(name, 0.0, float("inf"))
        self.check_int("reduction", 1)
        self.check("inference", self.inference in INFERENCES, f"one of {', '.join(INFERENCES)}")
        self.check_int("adv_iter", 1)
        for name in ("ad_coeff", "ad_stepsize"):
            self.check_number(name, 0.0, float("inf"))
        self.check_number("score_th", 0.0, 1.0)
        self.check("cam_scales", isinstance(self.cam_scales, (list, tuple)) and bool(self.cam_scales)
                   and all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in self.cam_scales),
                   "a non-empty list of positive scales")
        self.cam_scales = tuple(float(x) for x in self.cam_scales)
        self.check_int("score_images")
        for name in ("freeze_spotlight", "detach_stem"):
            self.check(name, isinstance(getattr(self, name), bool), "True or False")
        self.check("init_from", isinstance(self.init_from, str), f"one of {', '.join(map(repr, INIT_FROM))}")
        self.check("freeze_spotlight", not (self.freeze_spotlight and not self.init_from),
                   "False when init_from is empty (a frozen random spotlight branch is no CAM)")
        return self

    @classmethod
    def preset_values(cls, preset: str, overrides: dict, inherited: dict) -> dict:
        """The preset's values; its "bottleneck" placement becomes "residual" on a backbone without
        bottlenecks (after each stage, beside an identity path, as every official AMM)."""
        values = dict(cls.PRESETS[preset])
        backbone = overrides.get("backbone") or inherited.get("backbone") or cls.backbone
        if values.get("placement") == "bottleneck" and not str(backbone).startswith("resnet"):
            values["placement"] = "residual"  # no bottlenecks to put the AMM into
        return values


class AMRStage(TrainingStage):
    name = "amr"
    prefix = "amr"
    Config = AMRConfig
    upstream = {"init_run": "classifier", "trained_run": "amr"}
    #: the classifier made as the spotlight branch starts from the same weights
    inherits = ("backbone", "pretrained", "output_stride", "width", "head_convs")
    sources = ("amr_spotlight", "amr_compensation", *(f"amr_xi{x:g}" for x in XI_SWEEP))
    main_metrics = ("amr_miou_at_xi_main", "amr_compensation_miou", "amr_spotlight_miou")
    quick_note = "2 epochs: both branches are barely trained"
    notebook = "04_train_amr.ipynb"
    # xi and xi_main only choose what is shown: every run scores the whole sweep XI_SWEEP, so one
    # AMR run serves every xi
    display_only = ("xi", "xi_main")
    health_sources = ("amr_spotlight", "amr_compensation")
    source_names = {"amr_spotlight": "AMR spotlight", "amr_compensation": "AMR compensation"}

    def display_name(self, source: str) -> str | None:
        """``amr_xi0.5`` -> ``AMR (xi 0.5)``, and the two branches' names."""
        return f"AMR (xi {source[len('amr_xi'):]})" if source.startswith("amr_xi") else self.source_names.get(source)

    def health_nets(self, model) -> dict:
        return {"compensation": model.compensation, "spotlight": model.spotlight}

    def param_groups(self, ctx: RunContext, model) -> list[dict]:
        return model.param_groups(ctx.cfg.lr, ctx.cfg.weight_decay, ctx.cfg.lr_groups)

    def upstream_requests(self, cfg: AMRConfig, given: dict) -> dict:
        if scores_only(cfg):  # read the network the same training made: nothing trained here
            training = {f.name: getattr(cfg, f.name) for f in fields(cfg)
                        if f.name not in SCORING_FIELDS and f.name not in self.display_only}
            # the trained run reads plainly, whatever a profile sets (the voc profile reads officially)
            training.update(inference="plain", score_images=0)
            return {"trained_run": Upstream("amr", str(given.get("trained_run") or ""), training, "trained_run",
                                            hint=" (an AMR run trained with the same parameters)")}
        if cfg.init_from == "auto":  # the classifier run made for it inherits backbone, pretrained, output stride
            return {"init_run": Upstream("classifier", "", {}, "init_from")}
        if cfg.init_from and not _is_checkpoint_file(cfg.init_from):
            return {"init_run": Upstream("classifier", cfg.init_from, param="init_from",
                                         hint=", or an official AMR checkpoint file (.pth)", requires=("checkpoint.pt",))}
        return {}

    def weights(self, cfg: AMRConfig, profile):
        return {} if _is_checkpoint_file(cfg.init_from) or scores_only(cfg) else super().weights(cfg, profile)

    def expected_outputs(self, cfg: AMRConfig) -> tuple[str, ...]:
        outs = super().expected_outputs(cfg)
        trains = not (_is_checkpoint_file(cfg.init_from) or scores_only(cfg))
        return outs if trains else tuple(o for o in outs if o != "checkpoint.pt")

    def run_name(self, cfg: AMRConfig) -> str:
        official = _is_checkpoint_file(cfg.init_from)
        return (f"amr-{cfg.variant.replace('+', '_')}" + ("-official-ckpt" if official else "")
                + ("-official-inference" if cfg.inference == "official" else "")
                + (f"-first{cfg.score_images}" if cfg.score_images else ""))

    def identity(self, cfg: AMRConfig) -> dict:
        ident = super().identity(cfg)
        # init_from is identified by what it names (the upstream run's identity is a parameter of
        # its own, the checkpoint by its digest), never by a path: "auto" and the same run's folder
        # are one run
        official = _is_checkpoint_file(cfg.init_from)
        ident["official_checkpoint_sha256"] = file_digest(cfg.init_from) if official else ""
        ident["init_from"] = Path(cfg.init_from).name if official else ("run" if cfg.init_from else "")
        if cfg.inference == "plain":  # the official inference's settings do not matter then
            for k in ("adv_iter", "ad_coeff", "ad_stepsize", "score_th", "cam_scales"):
                ident.pop(k)
        return ident

    def progress_label(self, cfg: AMRConfig) -> str:
        return cfg.variant

    def build_model(self, ctx: RunContext):
        cfg = ctx.cfg
        use_threshold, _ = VARIANTS[cfg.variant]
        model = build_amr(cfg.backbone, ctx.ts.num_classes, ctx.weights.get(cfg.backbone), output_stride=cfg.output_stride,
                          width=cfg.width, head_convs=cfg.head_convs, head_init=cfg.head_init, placement=cfg.placement, freeze_spotlight=cfg.freeze_spotlight, detach_stem=cfg.detach_stem,
                          reduction=cfg.reduction, form=cfg.amm_form, spatial_pool=cfg.spatial_pool,
                          stats=cfg.gaussian_stats, normalize=cfg.gaussian_normalize,
                          threshold=cfg.threshold if use_threshold else None)
        init_run = ctx.upstream.get("init_run")
        if init_run is not None:
            sd = torch_load(init_run / "checkpoint.pt")["model"]
            model.spotlight.load_state_dict(sd)
        return model

    def training_step(self, ctx: RunContext, model):
        cfg = ctx.cfg
        _, use_area = VARIANTS[cfg.variant]

        def step(b: Batch) -> torch.Tensor:
            F_s, F_c = b.model(b.views)
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
            return amr_total_loss(multilabel_bce(class_scores(F_s), b.labels),
                                  multilabel_bce(class_scores(F_c), b.labels), l_cps, cfg.w_cls_s, cfg.w_cls_c,
                                  cfg.w_cps, l_area, cfg.area_weight if use_area else 0.0)

        return step, {}

    def attention(self, ctx: RunContext, model) -> dict[str, dict]:
        """Both branches' maps and the weighted CAM (eq. 8) at every xi of :data:`XI_SWEEP`."""
        ts = ctx.ts
        if ctx.cfg.inference == "official":
            sources = self._official_sources(ctx, model)
        else:
            (M_s, M_c), _ = infer_attention(model, ts.dataset, ts.size, ts.crop, ctx.device, progress=ctx.progress)
            sources = {"amr_spotlight": dense_source(M_s, ctx.layout),
                       "amr_compensation": dense_source(M_c, ctx.layout)}
        M_s, M_c = sources["amr_spotlight"]["maps"], sources["amr_compensation"]["maps"]
        for xi in XI_SWEEP:
            sources[f"amr_xi{xi:g}"] = {**sources["amr_spotlight"], "maps": weighted_cam(M_s, M_c, xi)}
        return sources

    def _official_sources(self, ctx: RunContext, model) -> dict[str, dict]:
        """The official ``make_cam`` maps of both branches (stride 4 of the training crop, image frame)."""
        cfg, layout, ds = ctx.cfg, ctx.layout, ctx.ts.dataset
        settings = ClimbSettings(cfg.adv_iter, cfg.ad_coeff, cfg.ad_stepsize, cfg.score_th, cfg.cam_scales)
        images = _HWCImages(ds)  # read on indexing, never all held
        si, sc = present_slots(layout.labels)
        classes = [[] for _ in range(len(images))]
        for i, c in zip(si.tolist(), sc.tolist()):
            classes[i].append(c)
        autocast = make_cam_autocast(ctx.device, cfg.amp)
        if autocast is not None:  # bf16 on a GPU: how far its maps are from float64 ones, on a subset
            ctx.state["make_cam_autocast"] = autocast_agreement(model, images, classes, settings, ctx.device, autocast)
        cams = official_cams(model, images, classes, settings, ctx.device, progress=ctx.progress, autocast=autocast)
        size = strided_size((ctx.ts.crop, ctx.ts.crop), 4)
        out = {}
        for branch, source in (("spotlight", "amr_spotlight"), ("compensation", "amr_compensation")):
            maps = [torch.nn.functional.interpolate(c[branch]["strided"][None], size, mode="bilinear",
                                                    align_corners=False)[0] if c[branch]["strided"].shape[-2:] != size
                    else c[branch]["strided"] for c in cams if c]
            out[source] = {"image_ids": layout.ids, "slot_image": si, "slot_class": sc, "maps": torch.cat(maps)}
        return out

    def evaluation_extra(self, ctx: RunContext) -> dict:
        return {"xi": list(XI_SWEEP)}

    def extra_metrics(self, ctx: RunContext, model, evals: dict) -> dict:
        check = ctx.state.get("make_cam_autocast") or {}
        agreement = {f"make_cam_{check['dtype']}_{branch}_{k}": v for branch in ("spotlight", "compensation")
                     for k, v in check.get(branch, {}).items()}
        return {"amr_miou": evals["amr_xi0.5"]["miou"],  # the report's xi
                "amr_best_xi": max(XI_SWEEP, key=lambda x: evals[f"amr_xi{x:g}"]["miou"]), **agreement}

    def point_metrics(self, cfg: AMRConfig, run: Path) -> dict:
        """This point's ``xi_main`` picks the headline number: the run's sweep value there, or the
        weighted CAM scored exactly at an ``xi_main`` off the sweep (:func:`xi_miou`)."""
        return {"xi_main": cfg.xi_main, "amr_miou_at_xi_main": xi_miou(run, cfg.xi_main)}

    def execute(self, ctx: RunContext) -> None:
        trained = ctx.upstream.get("trained_run")
        if trained is None or self.official_checkpoint(ctx.cfg) is not None:
            return super().execute(ctx)
        if not is_main():
            return
        ctx.layout = ctx.layout.first(ctx.cfg.score_images)
        ctx.ts = self.training_set(ctx)
        model = self.build_model(ctx).to(ctx.device)
        model.load_state_dict(torch_load(trained / "checkpoint.pt")["model"])
        self.score(ctx, model, {"train_seconds": 0.0})

    # -- an official AMR checkpoint: inference only ---------------------------------------------------
    official_kind = "amr"

    def official_checkpoint(self, cfg: AMRConfig) -> Path | None:
        return Path(cfg.init_from) if _is_checkpoint_file(cfg.init_from) else None


class _HWCImages:
    """A dataset's images as ``H x W x 3`` uint8 arrays, read when indexed."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[i]["image"].permute(1, 2, 0).contiguous().numpy()


def sweep_name(xi: float) -> str | None:
    """The source name of ``xi`` in every run's sweep (``amr_xi0.3``), ``None`` off the sweep."""
    for x in XI_SWEEP:
        if abs(float(xi) - x) < 1e-9:
            return f"amr_xi{x:g}"
    return None


def weighted_source(run: str | Path, xi: float) -> dict:
    """The weighted CAM (report eq. 8) of an AMR run at any ``xi`` in [0, 1], blended from the run's
    two stored branch maps (:func:`~wsss_lib.models.amr.weighted_cam`)."""
    run = Path(run)
    spot = load_attention(run / "attention" / "amr_spotlight.pt")
    comp = load_attention(run / "attention" / "amr_compensation.pt")
    return {**spot, "maps": weighted_cam(spot["maps"], comp["maps"], float(xi))}


def xi_miou(run: str | Path, xi: float) -> float:
    """CAM mIoU of an AMR run's weighted CAM at ``xi``: the run's own score on the sweep
    (:data:`XI_SWEEP`), else the blend of its two branches scored exactly as the run scored its
    sources (the same images, the same threshold sweep)."""
    run = Path(run)
    name = sweep_name(xi)
    if name is not None:
        return float(read_json(run / "metrics.json")[f"{name}_miou"])
    params = read_json(run / "params.json")["params"]
    layout = run_split_layout(run)
    if params.get("score_images"):
        layout = layout.first(int(params["score_images"]))
    return float(CAMEvaluator(layout).evaluate(weighted_source(run, xi))["miou"])


def make_cam_autocast(device: torch.device, amp: bool) -> torch.dtype | None:
    """The dtype the official inference runs the network in: bf16 on a GPU that has it, with ``amp``
    (the training stages' switch); None (float32) elsewhere, and on a GPU without bf16 (fp16 would
    need a scaled climb)."""
    return torch.bfloat16 if amp_dtype(device, amp) == torch.bfloat16 else None


def scores_only(cfg: AMRConfig) -> bool:
    """The run reads a network trained by another AMR run (official inference, or a part of the
    images), unless it reads an official checkpoint file."""
    return (cfg.inference != "plain" or cfg.score_images > 0) and not _is_checkpoint_file(cfg.init_from)


def _is_checkpoint_file(init_from: str) -> bool:
    return bool(init_from) and init_from != "auto" and Path(init_from).is_file()


STAGE = AMRStage()
run_amr_stage = STAGE

__all__ = ["AMRConfig", "AMRStage", "CPS_MAPS", "INFERENCES", "INIT_FROM", "SCORING_FIELDS", "scores_only",
           "sweep_name", "weighted_source", "xi_miou", "PRESETS", "VARIANTS", "XI_SWEEP", "STAGE",
           "run_amr_stage"]
