"""Stage 5a: pseudo labels from any run's attention source (OAA section 4; IRN/AMR convention).

Reads ``attention/<source>.pt`` of an upstream run (the classifier's ``cam`` / ``oaa_max`` /
``oaa_ave``, OAA+'s ``oaa_plus``, AMR's ``amr_xi<xi>`` / branches; an official checkpoint's CAMs via
a classifier run with ``init_from``), resizes each present class's map to its image, and writes
one VOC palette PNG per training image into ``SegmentationClassPseudo/`` (any segmentation code can
read the folder), by :func:`wsss_lib.formulas.label_rules.threshold_labels` or
:func:`wsss_lib.formulas.label_rules.saliency_labels`. ``metrics.json`` scores the labels against the
training masks: mIoU over the labelled pixels, foreground precision and recall (ignored pixels
count as missed), and the ignored share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as Fn
from tqdm.auto import tqdm

from wsss_lib.data.saliency import load_saliency, resolve_saliency_root
from wsss_lib.engine.config import StageConfig
from wsss_lib.engine.loop import loader_workers
from wsss_lib.formulas.label_rules import (IGNORE, official_attention_prep, saliency_labels, threshold_labels,
                                           write_label_png)
from wsss_lib.formulas.metrics import confusion_matrix, iou_from_confusion
from wsss_lib.runs.attention_io import load_attention
from wsss_lib.runs.folders import write_metrics
from wsss_lib.runs.identity import folder_identity
from wsss_lib.stages.base import RunContext, Stage, Upstream, split_layout
from wsss_lib.stages.registry import all_stages
from wsss_lib.util.io import write_json

MODES = ("threshold", "saliency")
ATTENTION_PREPS = ("float", "official")
LABEL_FOLDER = "SegmentationClassPseudo"


def stage_of_source(source: str) -> str:
    """The stage whose runs write attention source ``source`` (e.g. ``oaa_plus`` -> ``oaa_plus``)."""

    for st in all_stages():
        if source in st.sources:
            return st.name
    known = [s for st in all_stages() for s in st.sources]
    raise StageConfig.invalid("source", source, f"an attention source of some stage: {', '.join(known)}")


@dataclass
class PseudoLabelConfig(StageConfig):
    source: str = "oaa_max"  # the attention source (see stage_of_source)
    attention_params: dict = field(default_factory=dict)  # the upstream stage's parameters when attention_run is empty
    mode: str = "saliency"  # "threshold" (IRN/AMR) | "saliency" (OAA section 4)
    threshold: float = 0.3  # threshold mode: background below this attention
    fg_threshold: float = 0.3  # saliency mode (official gen_gt.py): scores below are dropped
    conflict: float = 0.9  # saliency mode: two or more scores above -> ignore
    bg_saliency: float = 32 / 255  # saliency mode: background pixels at least this salient -> ignore
    att_salient: float = 0.8  # saliency mode: background pixels attended above this -> ignore
    min_fg_ratio: float = 0.01  # saliency mode: images with less confident foreground -> all ignored
    saliency_root: str = ""  # folder of <id>.png saliency maps; empty: the embedded benchmark's generated ones
    attention_prep: str = "float"  # "float": bilinear resize of the float maps | "official": res.py (8-bit, bicubic, min-max, truncation)
    num_workers: int = 0  # loader workers making the labels (0: none on CPU; on CUDA, a few per GPU)

    def validate(self) -> "PseudoLabelConfig":
        self.check("source", isinstance(self.source, str), "the name of an attention source")
        stage_of_source(self.source)
        self.check("attention_params", isinstance(self.attention_params, dict), "a mapping (e.g. {'loss': 'mce'})")
        self.check("mode", self.mode in MODES, f"one of {', '.join(MODES)}")
        for name in ("threshold", "fg_threshold", "conflict", "bg_saliency", "att_salient", "min_fg_ratio"):
            self.check_number(name, 0.0, 1.0)
        self.check("saliency_root", isinstance(self.saliency_root, str), "a folder path, or empty")
        self.check("attention_prep", self.attention_prep in ATTENTION_PREPS, f"one of {', '.join(ATTENTION_PREPS)}")
        self.check_int("num_workers")
        return self


class PseudoLabelStage(Stage):
    name = "pseudo_labels"
    prefix = "pseudo"
    Config = PseudoLabelConfig
    upstream = {"attention_run": "classifier"}  # the actual stage follows `source` (upstream_requests)
    upstream_params_field = {"attention_run": "attention_params"}
    main_metrics = ("pseudo_miou", "pseudo_fg_precision", "pseudo_fg_recall", "pseudo_ignored")
    notebook = "05_pseudo_labels_segmentation.ipynb"
    outputs = ("metrics.json", "evaluation.json", LABEL_FOLDER)
    # the upstream run's identity is part of this run's; the parameters it was made with add nothing
    display_only = ("attention_params",)

    def upstream_requests(self, cfg: PseudoLabelConfig, given: dict) -> dict:
        value = str(given.get("attention_run") or "")
        return {"attention_run": Upstream(stage_of_source(cfg.source), value, dict(cfg.attention_params),
                                          hint=f" (a run that wrote attention/{cfg.source}.pt)")}

    def run_name(self, cfg: PseudoLabelConfig) -> str:
        return f"pseudo-{cfg.mode}"

    def identity(self, cfg: PseudoLabelConfig) -> dict:
        ident = super().identity(cfg)
        ident.pop("saliency_root")  # a path: the maps' content is the identity (see inputs)
        if cfg.mode == "threshold":  # saliency parameters do not matter then
            for k in ("fg_threshold", "conflict", "bg_saliency", "att_salient", "min_fg_ratio"):
                ident.pop(k)
        else:
            ident.pop("threshold")
        return ident

    def inputs(self, cfg: PseudoLabelConfig, root, upstream: dict) -> dict:
        """Saliency mode: every training image has its saliency map (checked before any work); the
        maps' content identifies them, wherever the folder lives."""
        if cfg.mode != "saliency":
            return {}

        folder = resolve_saliency_root(cfg.saliency_root, root, progress=False)
        ids = split_layout(cfg, root).ids
        missing = [i for i in ids if not (folder / f"{i}.png").is_file()]
        if missing:
            raise FileNotFoundError(f"saliency_root={str(folder)!r}: no saliency map for {len(missing)} of the {len(ids)} "
                                    f"training images (e.g. {folder / (missing[0] + '.png')}); expected one greyscale "
                                    "<image id>.png per image")
        return {"saliency": folder_identity(folder, [f"{i}.png" for i in ids])}

    def execute(self, ctx: RunContext) -> None:

        cfg, layout = ctx.cfg, ctx.layout
        run = ctx.upstream["attention_run"]
        src = load_attention(run / "attention" / f"{cfg.source}.pt")
        if src["image_ids"] != layout.ids:
            raise ValueError(f"attention_run={str(run)!r}: attention/{cfg.source}.pt was made for other images than "
                             f"the train split of {ctx.root}")
        sal_root = resolve_saliency_root(cfg.saliency_root, ctx.root, ctx.progress) if cfg.mode == "saliency" else None
        slots: dict[int, list[int]] = {}
        for s, i in enumerate(src["slot_image"].tolist()):
            slots.setdefault(i, []).append(s)
        folder = ctx.out / LABEL_FOLDER
        folder.mkdir(exist_ok=True)
        k1 = layout.num_classes
        jobs = LabelJobs(cfg, layout, src, slots, sal_root, folder)
        loader = torch.utils.data.DataLoader(jobs, batch_size=None, shuffle=False, collate_fn=_as_is,
                                             num_workers=loader_workers(ctx.device, cfg.num_workers))
        cm = np.zeros((k1, k1), dtype=np.int64)
        counts = dict.fromkeys(COUNTS, 0)
        for part in tqdm(loader, total=len(jobs), desc="pseudo labels", leave=False, disable=not ctx.progress):
            cm += part.pop("confusion")
            for k in COUNTS:
                counts[k] += part[k]
        fg_gt, fg_hit, labelled_fg, correct_fg, ignored, total, empty = (counts[k] for k in COUNTS)
        iou = iou_from_confusion(cm)
        # every pixel ignored (e.g. empty maps): no mIoU, and metrics.json leaves it out
        miou = {"pseudo_miou": float(np.nanmean(iou))} if np.isfinite(iou).any() else {}
        metrics = {**miou, "pseudo_fg_precision": correct_fg / max(labelled_fg, 1),
                   "pseudo_fg_recall": fg_hit / max(fg_gt, 1), "pseudo_ignored": ignored / max(total, 1),
                   "pseudo_images_all_ignored": float(empty), "pseudo_images": float(len(layout))}
        write_json(ctx.out / "evaluation.json", {
            "source": cfg.source, "mode": cfg.mode, "attention_run": str(run), "saliency_root": str(sal_root or ""),
            "class_names": list(layout.class_names), "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
            "confusion": cm.tolist(),
            "note": "mIoU over labelled pixels (255 left out); fg precision over labelled foreground; fg recall over "
                    "all ground-truth foreground (ignored pixels count as missed)"})
        write_metrics(ctx.out, metrics)


#: what :class:`LabelJobs` counts per image (summed over the split by the stage)
COUNTS = ("fg_gt", "fg_hit", "labelled_fg", "correct_fg", "ignored", "total", "empty")


def _as_is(item):
    return item


class LabelJobs(torch.utils.data.Dataset):
    """Image ``i``'s pseudo label made from its maps (and saliency map), written as a PNG and counted
    against its mask: one job per image, run in the loader's workers where it has any (on CUDA by
    default: the label rules are the official code's, on the host), each independent of the others."""

    def __init__(self, cfg: "PseudoLabelConfig", layout, src: dict, slots: dict, sal_root, folder) -> None:
        self.cfg, self.layout, self.src, self.slots, self.sal_root, self.folder = cfg, layout, src, slots, sal_root, folder

    def __len__(self) -> int:
        return len(self.layout)

    def __getitem__(self, i: int) -> dict:
        cfg, layout, src = self.cfg, self.layout, self.src
        gt = layout.load_mask(i)
        shape = gt.shape
        sl = self.slots.get(i, [])
        classes = src["slot_class"][sl].numpy()
        maps = src["maps"][sl]
        if not sl:
            att = np.zeros((0, *shape), np.float32)
        elif cfg.attention_prep == "official":
            att = official_attention_prep(maps.numpy(), shape)
        else:
            att = Fn.interpolate(maps[None], size=shape, mode="bilinear", align_corners=False)[0].numpy()
        if cfg.mode == "threshold":
            lab = threshold_labels(att, classes, cfg.threshold)
        else:
            sal = load_saliency(self.sal_root, layout.ids[i], shape)
            lab = saliency_labels(att, classes, sal, cfg.fg_threshold, cfg.conflict, cfg.bg_saliency,
                                  cfg.att_salient, cfg.min_fg_ratio)
        write_label_png(self.folder / f"{layout.ids[i]}.png", lab)
        valid = gt != IGNORE
        keep = valid & (lab != IGNORE)
        cm = confusion_matrix(torch.from_numpy(lab[keep].astype(np.int64)),
                              torch.from_numpy(gt[keep].astype(np.int64)), layout.num_classes)
        gfg = valid & (gt > 0)
        lfg = valid & (lab > 0) & (lab != IGNORE)
        return {"confusion": np.asarray(cm, dtype=np.int64), "fg_gt": int(gfg.sum()),
                "fg_hit": int((gfg & (lab == gt)).sum()), "labelled_fg": int(lfg.sum()),
                "correct_fg": int((lfg & (lab == gt)).sum()), "ignored": int((valid & (lab == IGNORE)).sum()),
                "total": int(valid.sum()), "empty": int((lab == IGNORE).all())}


STAGE = PseudoLabelStage()

__all__ = ["COUNTS", "LABEL_FOLDER", "LabelJobs", "MODES", "PseudoLabelConfig", "PseudoLabelStage", "STAGE", "stage_of_source"]
