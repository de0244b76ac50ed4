"""Stage 3: OAA+, the integral attention model (OAA section 3.3).

The classifier network without GAP and classification loss is trained on the accumulated maps
of a classifier + OAA run (normalized to ``[0, 1]``) as pixel-wise soft labels, with MCE (eq. 6),
the hybrid loss (eqs. 7-9, per class) or the official code's batch-global hybrid loss. Its
attention at inference comes straight from the class-aware conv (eq. 2).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..attention_io import load_attention
from ..data.transforms import image_frame_to_views
from ..losses import OAA_PLUS_LOSSES
from ..models.cam import build_cam_net
from ..runs import data_identity, is_finished, prepare_run, run_data_root, run_identity, stage_entry, write_metrics
from .classifier import run_classifier_stage
from .common import dense_source, flat_metrics, infer_attention, save_and_score, training_set
from .config import TrainConfig
from .engine import Batch, LoopConfig, fit, resolve_device, seed_everything

SOURCES = ("oaa_max", "oaa_ave", "cam")


@dataclass
class OAAPlusConfig(TrainConfig):
    loss: str = "hl"  # "mce" (eq. 6) | "hl" (eqs. 7-9) | "hl_official"
    source: str = "oaa_max"  # which accumulated maps are the soft labels

    def validate(self) -> "OAAPlusConfig":
        super().validate()
        self.check("loss", self.loss in OAA_PLUS_LOSSES, f"one of {', '.join(OAA_PLUS_LOSSES)}")
        self.check("source", self.source in SOURCES, f"one of {', '.join(SOURCES)}")
        return self


class SoftLabels:
    """Dense soft labels per image, built from an attention source's slots, max-normalized to [0, 1]."""

    def __init__(self, source: dict, num_images: int, num_classes: int, device: torch.device) -> None:
        maps = source["maps"].float()
        mx = maps.amax(dim=(1, 2), keepdim=True)
        self.maps = torch.where(mx > 0, maps / mx.clamp_min(1e-12), torch.zeros_like(maps)).to(device)
        self.slot_of = torch.full((num_images, num_classes), -1, dtype=torch.long)
        self.slot_of[source["slot_image"], source["slot_class"]] = torch.arange(maps.shape[0])
        self.slot_of = self.slot_of.to(device)

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        """``B x K x H x W`` soft labels in the image frame (zeros for absent classes)."""
        slots = self.slot_of[indices]  # B x K
        out = torch.zeros((*slots.shape, *self.maps.shape[1:]), device=self.maps.device)
        has = slots >= 0
        out[has] = self.maps[slots[has]]
        return out


def resolve_oaa_run(oaa_run: str | Path, data_root: str, seed: int, device: str, quick: bool,
                    progress: bool = True) -> Path:
    """A finished classifier + OAA run folder: the one given, or the default one for these settings."""
    if oaa_run:
        run = Path(oaa_run)
        if not (run / "attention").is_dir() or not (run / "params.json").exists():
            raise FileNotFoundError(f"oaa_run={str(run)!r} is not a finished classifier + OAA run folder "
                                    "(expected params.json and attention/ in it; run notebook 01 first)")
        return run
    return run_classifier_stage(data_root=data_root, seed=seed, device=device, quick=quick, progress=progress)


@stage_entry
def run_oaa_plus_stage(oaa_run: str = "", data_root: str = "", run_dir: str = "", seed: int = 0,
                       device: str = "auto", quick: bool = False, progress: bool = True,
                       stop_after_steps: int | None = None, **params) -> Path:
    """Train (or resume, or reuse) an OAA+ run on the accumulated maps of ``oaa_run``."""
    cfg = OAAPlusConfig.from_params(quick=quick, seed=seed, device=device, **params)
    dev = resolve_device(device)
    upstream = resolve_oaa_run(oaa_run, data_root, seed, device, quick, progress)
    root = run_data_root(upstream)
    all_params = {"oaa_run": run_identity(upstream), "data_root": str(root), "data": data_identity(root),
                  "seed": seed, "quick": quick, "device": str(dev), **asdict(cfg)}
    out = prepare_run(f"oaaplus-{cfg.loss}", all_params, run_dir, upstream={"oaa_run": upstream})
    if is_finished(out):
        return out
    seed_everything(seed)
    ts = training_set(root, cfg.crop_size, cfg.output_stride)
    src = load_attention(upstream / "attention" / f"{cfg.source}.pt")
    if src["image_ids"] != ts.layout.ids:
        raise ValueError(f"{upstream}: its attention maps were made for other images than {root} train")
    labels = SoftLabels(src, len(ts.layout), ts.num_classes, dev)
    model = build_cam_net(cfg.backbone, ts.num_classes, pretrained=cfg.pretrained,
                          output_stride=cfg.output_stride).to(dev)
    opt = torch.optim.SGD(model.param_groups(cfg.lr, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    loss_fn = OAA_PLUS_LOSSES[cfg.loss]

    def step(b: Batch) -> torch.Tensor:
        F = model(b.views).float()
        p = image_frame_to_views(labels.batch(b.indices), b.geo, tuple(F.shape[-2:])).clamp_(0, 1)
        return loss_fn(F, p)

    loop = LoopConfig(cfg.epochs, cfg.batch_size, seed, ts.crop, cfg.augment, cfg.scale_range,
                      cfg.num_workers, cfg.checkpoint_every, cfg.amp)
    res = fit(model, opt, cfg.schedule, ts.dataset, loop, out, step, None, dev, progress,
              desc=f"OAA+ ({cfg.loss})", stop_after_steps=stop_after_steps)
    t0 = time.perf_counter()
    maps, _ = infer_attention(model, ts.dataset, ts.size, ts.crop, dev, progress=progress)
    evals = save_and_score(out, root, {"oaa_plus": dense_source(maps, ts.layout)}, {"history": res.history})
    metrics = {**flat_metrics(evals), "train_seconds": res.seconds, "eval_seconds": time.perf_counter() - t0,
               "final_loss": res.history[-1]["loss"]}
    write_metrics(out, metrics)
    return out


__all__ = ["OAAPlusConfig", "run_oaa_plus_stage", "SoftLabels"]
