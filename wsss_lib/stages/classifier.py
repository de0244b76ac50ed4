"""Stage 1: the CAM classifier with Online Attention Accumulation (OAA).

One run yields, for every training image, the final model's attention (``cam``) and one
accumulated map per fusion of :data:`wsss_lib.formulas.accumulation.FUSIONS` (``oaa_max``, eq. 5;
``oaa_ave``, eq. 10), plus per-epoch snapshots of a fixed subset of images, the checkpoint and
``metrics.json``. ``init_from`` may name an official OAA / OAA+ checkpoint: its CAMs are scored,
nothing is trained.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn

from wsss_lib.data.transforms import views_to_image_frame
from wsss_lib.data.voc import VOCLayout, VOCSegDataset
from wsss_lib.engine.common import build_attention_net, dense_source, infer_attention, training_set
from wsss_lib.engine.config import AttentionTrainConfig
from wsss_lib.engine.loop import Batch
from wsss_lib.formulas.accumulation import FUSION_SOURCES, FUSIONS, GATES, OAAStore
from wsss_lib.formulas.attention import attention_maps, class_scores
from wsss_lib.formulas.diagnostics import drift_of_recording
from wsss_lib.formulas.drift import DriftRecorder, summary_metrics
from wsss_lib.formulas.evaluation import mean_average_precision
from wsss_lib.models.backbones import has_training_batchnorm
from wsss_lib.stages.base import RunContext
from wsss_lib.stages.training import TrainingStage
from wsss_lib.util.io import file_digest, torch_save, write_json
from wsss_lib.util.row_buffer import RowBuffer

#: the run's folder of finished epochs' drift record (written once each, read on resume, removed when the run ends)
DRIFT_EPOCHS = "drift_epochs"

#: the values a preset sets (explicit parameters win)
PRESETS: dict[str, dict] = {
    "paper": {},
    # OAA-PyTorch's training details: its gate on float32 probabilities, accumulation from the second
    # epoch with its last-epoch fallback, whole images without flips or crops (its loader resizes the
    # short side and keeps the aspect ratio: the same on square images; on VOC our views stay squares)
    # and its optimizer (scripts/train.py + train.sh): lr 1e-3 on a loss averaged over 5 accumulated
    # batches, Nesterov momentum 0.9, weight decay 5e-4, new layers drawn from N(0, 0.01)
    "official": {"gate": "topk_prob", "gate_start_epoch": 1, "last_epoch_fallback": True, "augment": "none",
                 "lr": 1e-3, "nesterov": True, "weight_decay": 5e-4, "head_init": "normal"},
}


@dataclass
class ClassifierConfig(AttentionTrainConfig):
    """Hyper-parameters of the classifier + OAA stage (defaults: the embedded benchmark on CPU).

    The OAA paper on VOC: VGG16 (pretrained), lr 1e-3 (new layers x10), momentum 0.9, weight decay
    2e-4, batch 5, step schedule (x0.1 after 2/3 of the iterations), no geometric augmentation.
    ``preset="official"`` sets the official code's training details (:data:`PRESETS`).
    """

    PRESETS = PRESETS

    preset: str = "paper"  # "paper" | "official" (PRESETS)
    epochs: int = 15
    gate: str = "paper"
    gate_start_epoch: int = 0
    last_epoch_fallback: bool = False
    store_size: int = 0  # 0: crop_size / output_stride (the feature map's own resolution)
    n_snapshots: int = 8
    #: False: the plain CAM classifier (the OAA store is never updated, no OAA map is made or scored),
    #: e.g. to measure a benchmark's properties before any OAA result on it exists
    accumulate: bool = True
    init_from: str = ""  # an official OAA / OAA+ checkpoint (.pth): score its CAMs, train nothing

    def validate(self) -> "ClassifierConfig":
        super().validate()
        self.check("gate", self.gate in GATES, f"one of {GATES}")
        self.check_int("gate_start_epoch")
        self.check_int("store_size")
        self.check_int("n_snapshots", 1)
        self.check("accumulate", isinstance(self.accumulate, bool), "True or False")
        self.check("init_from", not self.init_from or Path(self.init_from).is_file(),
                   "empty, or an existing official OAA/OAA+ checkpoint file (.pth)")
        return self


class SnapshotRecorder:
    """Attention of a fixed subset of training images at every epoch, in the image frame.

    Kept on the training device in a :class:`~wsss_lib.util.row_buffer.RowBuffer` (a row per epoch
    and recorded image) and written without host synchronisation (images outside the subset go to
    its scratch row); merged across ranks like the OAA store."""

    def __init__(self, indices: list[int], num_classes: int, size: tuple[int, int], epochs: int,
                 num_images: int | None = None, device: torch.device | str = "cpu") -> None:
        self.indices = list(indices)
        n = len(self.indices)
        pos = torch.full((max(num_images or 0, max(self.indices, default=-1) + 1),), n, dtype=torch.long)  # every image
        pos[torch.tensor(self.indices, dtype=torch.long)] = torch.arange(n)
        self._pos = pos.to(device)
        self.buffer = RowBuffer(n, {"maps": ((num_classes, *size), torch.float32), "seen": ((), torch.bool)},
                                lead=(epochs,), device=device)

    @property
    def maps(self) -> torch.Tensor:
        return self.buffer.real("maps").cpu()

    @property
    def seen(self) -> torch.Tensor:
        return self.buffer.real("seen").cpu()

    @torch.no_grad()
    def record(self, epoch: int, indices: torch.Tensor, maps_img: torch.Tensor) -> None:
        rows = self._pos[indices]  # images outside the subset -> the scratch row
        self.buffer["maps"][epoch, rows] = maps_img.detach().float()
        self.buffer["seen"][epoch].index_fill_(0, rows, True)
        self.buffer.touched[epoch].index_fill_(0, rows, True)

    def merge_shards(self) -> None:
        self.buffer.merge_shards()

    def state_dict(self) -> dict:
        return {"indices": self.indices, **self.buffer.state()}

    def load_state_dict(self, sd: dict) -> None:
        self.buffer.load(sd, "attention snapshots")


class ClassifierStage(TrainingStage):
    name = "classifier"
    prefix = "classifier"  # run folders runs/classifier-<hash> (before: runs/oaa-<hash>; found by folder or identity)
    Config = ClassifierConfig
    sources = ("cam", *FUSION_SOURCES)
    source_names = {"cam": "CAM", **FUSION_SOURCES}
    main_metrics = tuple(f"{s}_miou" for s in ("cam", *FUSION_SOURCES)) + ("cls_mAP_val",)
    quick_note = "6 short epochs on the tiny benchmark: it learns something (val mAP about 0.5), no more"
    notebook = "01_train_classifier_oaa.ipynb"
    splits = ("train", "val")  # val: the classification mAP

    def run_name(self, cfg: ClassifierConfig) -> str:
        return "classifier-official-ckpt" if cfg.init_from else "classifier"

    def identity(self, cfg: ClassifierConfig) -> dict:
        ident = super().identity(cfg)
        if cfg.init_from:  # identified by the file's digest, not its path
            ident.update(init_from=Path(cfg.init_from).name, official_checkpoint_sha256=file_digest(cfg.init_from))
        return ident

    # -- training -----------------------------------------------------------------------------
    def expected_outputs(self, cfg: ClassifierConfig) -> tuple[str, ...]:
        if cfg.init_from:  # an official checkpoint: its CAMs scored, nothing trained
            return ("metrics.json", "evaluation.json", "attention/cam.pt")
        outputs = (*super().expected_outputs(cfg), "snapshots.pt", "drift.json")
        if not cfg.accumulate:  # the plain CAM classifier: no OAA maps
            outputs = tuple(o for o in outputs if o not in {f"attention/{s}.pt" for s in FUSION_SOURCES})
        return outputs

    def weights(self, cfg: ClassifierConfig, profile):
        return {} if cfg.init_from else super().weights(cfg, profile)  # an official checkpoint brings its own

    def build_model(self, ctx: RunContext):
        return build_attention_net(ctx.cfg, ctx.ts.num_classes, ctx.weights)

    def training_step(self, ctx: RunContext, model):
        cfg, size = ctx.cfg, ctx.ts.size
        store = OAAStore(ctx.layout.ids, torch.from_numpy(ctx.layout.labels), size, gate=cfg.gate,
                         start_epoch=cfg.gate_start_epoch, last_epoch_fallback=cfg.last_epoch_fallback,
                         device=ctx.device)
        idx = np.linspace(0, len(ctx.layout) - 1, min(cfg.n_snapshots, len(ctx.layout))).round().astype(int).tolist()
        snaps = SnapshotRecorder(idx, ctx.ts.num_classes, size, cfg.epochs, len(ctx.layout), ctx.device)
        drift = DriftRecorder(store.slot_of, cfg.epochs, size, spill_dir=ctx.out / DRIFT_EPOCHS)
        # one network mode for the store, the drift record and the CAM row: a pretrained backbone's
        # BatchNorm is frozen (training forward = evaluation forward); where BatchNorm trains (from
        # scratch), the store is fed by an extra evaluation-mode forward, the mode the CAM is read in
        eval_feed = has_training_batchnorm(model)
        ctx.state.update(store=store, snapshots=snaps, drift=drift, store_forward="eval" if eval_feed else "train")

        def step(b: Batch) -> torch.Tensor:
            F = b.model(b.views)
            logits = class_scores(F.float())
            loss = Fn.binary_cross_entropy_with_logits(logits, b.labels)
            with torch.no_grad():
                F_store, logits_store = F.detach(), logits.detach()
                if eval_feed:
                    model.eval()
                    F_store = model(b.views)
                    logits_store = class_scores(F_store.float())
                    model.train()
                A_img, valid = views_to_image_frame(attention_maps(F_store.float()), b.geo, size)
                if cfg.accumulate:
                    store.update(b.indices, A_img, valid, logits_store, b.labels, b.epoch, last_epoch=b.last_epoch)
                snaps.record(b.epoch, b.indices, A_img)
                drift.record(b.epoch, b.indices, A_img, valid)
            return loss

        return step, {"store": store, "snapshots": snaps, "drift": drift}

    def progress_label(self, cfg) -> str:
        return "classifier+OAA" if cfg.accumulate else "classifier (plain CAM)"

    def attention(self, ctx: RunContext, model) -> dict[str, dict]:
        ts = ctx.ts
        cam_maps, _ = infer_attention(model, ts.dataset, ts.size, ts.crop, ctx.device, progress=ctx.progress)
        sources = {"cam": dense_source(cam_maps, ctx.layout)}
        store: OAAStore | None = ctx.state.get("store")
        if store is None:  # an official checkpoint: CAM only (OAA maps exist only while training)
            return sources
        fusions = FUSIONS if ctx.cfg.accumulate else {}
        sources.update({f.source: store.attention_source(name) for name, f in fusions.items()})
        snaps = ctx.state["snapshots"]
        torch_save(ctx.out / "snapshots.pt", {"indices": snaps.indices, "ids": [ctx.layout.ids[i] for i in snaps.indices],
                                              "maps": snaps.maps.half(), "seen": snaps.seen,
                                              "final_cam": cam_maps[snaps.indices].half(),
                                              **{f.source: store.dense(name, snaps.indices).half()
                                                 for name, f in fusions.items()}})
        return sources

    def score(self, ctx: RunContext, model, train_info: dict) -> None:
        super().score(ctx, model, train_info)
        shutil.rmtree(ctx.out / DRIFT_EPOCHS, ignore_errors=True)  # only a resume needed it; metrics.json is written

    def extra_metrics(self, ctx: RunContext, model, evals: dict) -> dict:
        store: OAAStore | None = ctx.state.get("store")
        if store is None:
            return {}
        val_layout = VOCLayout(ctx.root, "val")
        _, val_logits = infer_attention(model, VOCSegDataset(val_layout, with_mask=False), ctx.ts.size, ctx.ts.crop,
                                        ctx.device)
        summary = drift_of_recording(ctx.state["drift"], store, ctx.layout, progress=ctx.progress)
        write_json(ctx.out / "drift.json", summary)
        out = {**summary_metrics(summary), "cls_mAP_val": mean_average_precision(val_logits.numpy(), val_layout.labels),
               "store_forward_eval": float(ctx.state.get("store_forward") == "eval")}
        if ctx.cfg.accumulate:
            out.update(oaa_accepted_fraction=float((store.counts > 0).float().mean()),
                       oaa_mean_accepted_updates=float(store.counts.float().mean()),
                       store_megabytes=store.nbytes() / 2**20)
        return out

    # -- an official checkpoint: score it, train nothing ---------------------------------------------
    official_kind = "oaa"

    def official_checkpoint(self, cfg: ClassifierConfig) -> Path | None:
        return Path(cfg.init_from) if cfg.init_from else None

    def official_training_set(self, ctx: RunContext, model):
        cfg = ctx.cfg  # maps at the checkpoint's own output stride
        return training_set(ctx.root, cfg.crop_size, model.output_stride, cfg.store_size, layout=ctx.layout)


STAGE = ClassifierStage()
run_classifier_stage = STAGE  # the stage is called like the function it replaces

__all__ = ["ClassifierConfig", "ClassifierStage", "SnapshotRecorder", "STAGE", "run_classifier_stage"]
