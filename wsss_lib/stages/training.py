"""The stage that trains a network with the shared engine (:class:`TrainingStage`): the training set, the model, SGD over its parameter groups, the stage's own step, the resumable engine, and the evaluation with the run's health figures."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, ClassVar

import torch

from wsss_lib.engine.common import TrainingSet, flat_metrics, save_and_score, training_set
from wsss_lib.engine.config import AttentionTrainConfig, StageConfig, TrainConfig
from wsss_lib.engine.health import health_metrics, probe_views
from wsss_lib.engine.loop import Batch, LoopConfig, fit
from wsss_lib.engine.resources import resource_metrics
from wsss_lib.models.official import load_official_checkpoint
from wsss_lib.models.weights import Weights, weights_for
from wsss_lib.runs.folders import write_metrics
from wsss_lib.runs.profile import Profile
from wsss_lib.stages.base import RunContext, Stage
from wsss_lib.util.distributed import is_main


class TrainingStage(Stage):
    """A stage that trains a network with the shared engine, then evaluates it.

    The sequence (:meth:`execute`) is the same for every training stage: the training set, the
    model, SGD over its parameter groups, the stage's own step, the resumable engine, and on rank 0
    the evaluation (:meth:`score`). By default the evaluation writes and scores attention sources
    (:meth:`attention`); a stage that evaluates otherwise (segmentation: val mIoU) overrides
    :meth:`score`, and :meth:`loop` where its schedule differs."""

    Config: ClassVar[type[TrainConfig]] = AttentionTrainConfig
    outputs = ("metrics.json", "evaluation.json", "checkpoint.pt")
    distributed = True
    trains = True

    def weights(self, cfg, profile: Profile) -> dict[str, Weights | None]:
        if cfg.backbone == "tiny" and cfg.pretrained and cfg.width != profile.pretrain.width:
            raise StageConfig.invalid("width", cfg.width, f"{profile.pretrain.width}, the width of the profile's "
                                      f"pretrained tiny backbone (profile {profile.name!r}); or pretrained=False")
        return {cfg.backbone: weights_for(cfg.backbone, cfg.pretrained, profile.pretrain)}

    def expected_outputs(self, cfg) -> tuple[str, ...]:
        return (*self.outputs, *(f"attention/{s}.pt" for s in self.sources))

    def build_model(self, ctx: RunContext) -> torch.nn.Module:
        raise NotImplementedError

    def training_step(self, ctx: RunContext, model) -> tuple[Callable[[Batch], torch.Tensor], dict]:
        """The loss of one batch, and the extra objects the checkpoint must hold."""
        raise NotImplementedError

    def attention(self, ctx: RunContext, model) -> dict[str, dict]:
        """The attention sources this run writes (name -> source), after training."""
        raise NotImplementedError

    def extra_metrics(self, ctx: RunContext, model, evals: dict) -> dict:
        return {}

    #: the attention sources whose empty maps the run's health figures count (empty: every source)
    health_sources: ClassVar[tuple[str, ...]] = ()

    def health_nets(self, model) -> dict[str, torch.nn.Module]:
        """The networks whose never-active head units the run's health figures count (name -> net;
        ``""``: the model itself): :mod:`wsss_lib.engine.health`."""
        return {"": model}

    def param_groups(self, ctx: RunContext, model) -> list[dict]:
        """The optimizer's parameter groups (default: the model's own, at the config's lr and decay)."""
        return model.param_groups(ctx.cfg.lr, ctx.cfg.weight_decay)

    def evaluation_extra(self, ctx: RunContext) -> dict:
        return {}

    def progress_label(self, cfg) -> str:
        return self.name

    def training_set(self, ctx: RunContext) -> TrainingSet:
        cfg = ctx.cfg
        return training_set(ctx.root, cfg.crop_size, cfg.output_stride, getattr(cfg, "store_size", 0),
                            layout=ctx.layout)

    def loop(self, ctx: RunContext) -> LoopConfig:
        """The engine's settings (epochs, batch, augmentation...) for this run."""
        return ctx.cfg.loop(ctx.seed, ctx.ts.crop)

    #: the kind of official checkpoint this stage can score instead of training (``""``: none)
    official_kind: ClassVar[str] = ""

    def official_checkpoint(self, cfg) -> Path | None:
        """The official checkpoint this run scores instead of training (``None``: train)."""
        return None

    def official_training_set(self, ctx: RunContext, model) -> TrainingSet:
        """The training set an official checkpoint is scored on (default: the stage's own)."""
        return self.training_set(ctx)

    def score_official(self, ctx: RunContext, path: Path) -> None:
        """Score an official checkpoint's maps like a trained model's; nothing is trained."""
        if not is_main():  # scoring trains nothing: rank 0 alone
            return

        model = load_official_checkpoint(path, self.official_kind).to(ctx.device)
        ctx.ts = self.official_training_set(ctx, model)
        if model.num_classes != ctx.ts.num_classes:
            raise ValueError(f"init_from={str(path)!r}: the official checkpoint has {model.num_classes} classes, the "
                             f"data at {ctx.root} has {ctx.ts.num_classes} foreground classes")
        self.score(ctx, model, {"train_seconds": 0.0})

    def execute(self, ctx: RunContext) -> None:
        official = self.official_checkpoint(ctx.cfg)
        if official is not None:
            return self.score_official(ctx, official)
        cfg = ctx.cfg
        ctx.ts = self.training_set(ctx)
        model = self.build_model(ctx).to(ctx.device)
        opt = torch.optim.SGD(self.param_groups(ctx, model), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
        step, state = self.training_step(ctx, model)
        loop = self.loop(ctx)
        res = fit(model, opt, cfg.schedule, ctx.ts.dataset, loop, ctx.out, step, state,
                  ctx.device, ctx.progress, desc=self.progress_label(cfg), stop_after_steps=ctx.stop_after_steps)
        if not is_main():  # in a process group, rank 0 scores and writes
            return
        self.score(ctx, model, {"history": res.history, "train_seconds": res.seconds,
                                "final_loss": res.history[-1]["loss"]})

    def score(self, ctx: RunContext, model, train_info: dict) -> None:
        """Write and score the attention sources; ``metrics.json`` (also for a model not trained here)."""
        t0 = time.perf_counter()
        sources = self.attention(ctx, model)
        evals = save_and_score(ctx.out, ctx.root, sources,
                               {"history": train_info.get("history", []), **self.evaluation_extra(ctx)}, ctx.layout,
                               device=ctx.device)
        probe = probe_views(ctx.ts.dataset, ctx.ts.crop, ctx.device)
        health = health_metrics(self.health_nets(model), probe,
                                {k: sources[k] for k in (self.health_sources or tuple(sources)) if k in sources})
        metrics = {**flat_metrics(evals), **self.extra_metrics(ctx, model, evals), **health,
                   **{k: v for k, v in train_info.items() if k != "history"}}
        metrics["eval_seconds"] = time.perf_counter() - t0
        metrics.update(resource_metrics(ctx.out, len(ctx.ts.dataset)))
        write_metrics(ctx.out, metrics)
