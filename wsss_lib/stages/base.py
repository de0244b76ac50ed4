"""The one stage interface: what every stage declares, and the sequence they all share.

A stage is a :class:`Stage` subclass in its own module of :mod:`wsss_lib.stages`. It declares

- ``name`` (registry key) and ``prefix`` (run folders are ``runs/<prefix>-<hash of parameters>``);
- ``Config``: a :class:`~wsss_lib.train.config.StageConfig` dataclass (defaults, ``QUICK`` settings,
  ``validate`` with errors that name the parameter);
- ``upstream``: run argument -> the stage whose run it reads (``{"oaa_run": "classifier"}``);
- ``sources`` (the attention sources it writes) and ``main_metrics`` (what tables show first);
- ``notebook``: the notebook that runs it;

and writes only its own lines: :meth:`Stage.execute` (or, for a training stage,
:meth:`TrainingStage.build_model`, :meth:`TrainingStage.training_step` and
:meth:`TrainingStage.attention`). Calling a stage runs the shared sequence once for all of them:
validate the config, resolve the device, resolve upstream runs (:func:`resolve_upstream`), find
the data, check it, make or find the run folder (locked), return at once if the run is finished,
seed, then execute. :class:`TrainingStage` adds the training sequence: training set, model,
optimizer, the engine's resumable loop, attention, scoring, ``metrics.json``.

Notebooks call :func:`notebook_call` on their parameters cell's namespace: every parameter is
written once (in that cell), quick mode is resolved in one place
(:func:`~wsss_lib.train.config.resolve_quick`) and every value is validated before any work.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import torch

from ..data.voc import VOCLayout
from ..io import read_json
from ..runs import (data_identity, find_run, is_finished, prepare_run, publish_point, run_data_root,
                    run_identity, stage_entry, write_metrics)
from ..train.common import TrainingSet, flat_metrics, save_and_score, training_set
from ..train.config import StageConfig, TrainConfig, resolve_quick
from ..train.data_setup import resolve_data_root
from ..train.distributed import is_main, main_first
from ..train.engine import Batch, fit, resolve_device, seed_everything

#: the arguments every stage call takes besides its config's fields and its upstream runs
RUN_ARGS = ("data_root", "run_dir", "seed", "device", "quick")


@dataclass
class Upstream:
    """An upstream run a stage asks for: the stage that makes it, the value given (a run folder or
    identity; ``""`` = that stage's run for the same data, seed and ``params``, made if missing)."""

    stage: str
    value: str = ""
    params: dict = field(default_factory=dict)
    param: str = ""  # the parameter the user gave it as, for messages (default: the run argument)
    hint: str = ""  # what else the parameter may be, for messages


@dataclass
class RunContext:
    """Everything one execution of a stage needs (built by the shared sequence)."""

    cfg: StageConfig
    seed: int
    quick: bool
    device: torch.device
    root: Path
    layout: VOCLayout
    out: Path
    upstream: dict[str, Path]
    progress: bool = True
    stop_after_steps: int | None = None
    ts: TrainingSet | None = None
    state: dict = field(default_factory=dict)  # a stage's own objects (e.g. the OAA store)


class Stage:
    """The base of every stage (see the module docstring)."""

    name: ClassVar[str] = ""
    prefix: ClassVar[str] = ""
    Config: ClassVar[type[StageConfig]] = StageConfig
    upstream: ClassVar[dict[str, str]] = {}
    sources: ClassVar[tuple[str, ...]] = ()
    main_metrics: ClassVar[tuple[str, ...]] = ()
    notebook: ClassVar[str] = ""
    #: files a finished run of this stage holds (checked when a later stage reads it)
    outputs: ClassVar[tuple[str, ...]] = ("metrics.json",)
    #: config fields left out of the run's identity (they choose what is shown, not what is made)
    display_only: ClassVar[tuple[str, ...]] = ()
    #: what quick mode means for this stage's numbers (notebooks print it)
    quick_note: ClassVar[str] = ""
    #: every rank of a ``torchrun`` process group executes it (training stages); otherwise rank 0 only
    distributed: ClassVar[bool] = False

    # -- what a stage may override --------------------------------------------------------------
    def upstream_requests(self, cfg, given: dict[str, str]) -> dict[str, Upstream]:
        """The upstream runs this call needs (default: every declared one, made if not given)."""
        return {arg: Upstream(stage, str(given.get(arg) or ""), self.upstream_params(arg, cfg))
                for arg, stage in self.upstream.items()}

    def upstream_params(self, arg: str, cfg) -> dict:
        """Parameters passed to an upstream stage when it has to be made (e.g. the same backbone)."""
        return {}

    def run_name(self, cfg) -> str:
        return self.prefix

    def identity(self, cfg) -> dict:
        """The config's part of the run identity (default: every field but ``display_only``; plus the
        digest of the tiny backbone's source task when it starts from those weights)."""
        ident = {k: v for k, v in asdict(cfg).items() if k not in self.display_only}
        if getattr(cfg, "pretrained", False) and getattr(cfg, "backbone", "") == "tiny" \
                and getattr(cfg, "network", "small") == "small":
            from ..pretrain import DEFAULT_PRETRAIN

            ident["tiny_source_task"] = DEFAULT_PRETRAIN.digest()  # (quick runs: `quick` is in the identity)
        return ident

    def execute(self, ctx: RunContext) -> None:
        """The stage's own work; must end with :func:`~wsss_lib.runs.write_metrics`."""
        raise NotImplementedError

    def point_metrics(self, cfg, run: Path) -> dict:
        """Extra metrics a notebook publishes for its grid point (e.g. AMR's value at ``xi_main``)."""
        return {}

    # -- the shared sequence ------------------------------------------------------------------------
    def config(self, quick: bool = False, seed: int = 0, device: str = "auto", **params):
        return self.Config.from_params(quick=quick, seed=seed, device=device, **params)

    def __call__(self, data_root: str = "", run_dir: str = "", seed: int = 0, device: str = "auto",
                 quick: bool = False, progress: bool = True, stop_after_steps: int | None = None, **params) -> Path:
        """Make (or resume, or reuse) this stage's run for these parameters; returns its folder.

        ``params``: the config's fields (``None`` = default) and the upstream run arguments."""
        return _run_stage(self, data_root, run_dir, seed, device, quick, progress, stop_after_steps, params)

    def __repr__(self) -> str:
        return f"<stage {self.name}: {self.Config.__name__}, upstream {self.upstream or '-'}>"


@stage_entry
def _run_stage(stage: Stage, data_root, run_dir, seed, device, quick, progress, stop_after_steps, params) -> Path:
    given = {k: params.pop(k) for k in list(params) if k in stage.upstream}
    cfg = stage.config(quick=quick, seed=seed, device=device, **params)
    dev = resolve_device(device)
    ups = {arg: resolve_upstream(arg, req, data_root=data_root, seed=seed, device=device, quick=quick,
                                 progress=progress) for arg, req in stage.upstream_requests(cfg, given).items()}
    if ups:  # the data an upstream run was made on
        root = run_data_root(next(iter(ups.values())))
        layout = VOCLayout(root, "train")
    else:
        with main_first():  # under torchrun: rank 0 generates the embedded benchmark if missing
            root = resolve_data_root(data_root, quick)
        layout = VOCLayout(root, "train")
        layout.check(progress=progress and is_main())  # before any folder is made: lists every bad file at once
    all_params = {"data_root": str(root), "data": data_identity(root), "seed": seed, "quick": quick,
                  "device": dev.type, **{arg: run_identity(p) for arg, p in ups.items()}, **stage.identity(cfg)}
    with main_first():  # rank 0 makes and locks the folder; the other ranks find it
        out = prepare_run(stage.run_name(cfg), all_params, run_dir, upstream=ups)
        finished = is_finished(out)
    if finished:
        return out
    seed_everything(seed)
    ctx = RunContext(cfg, seed, quick, dev, root, layout, out, ups, progress and is_main(), stop_after_steps)
    if stage.distributed:  # every rank trains; rank 0 writes
        stage.execute(ctx)
    else:  # in a process group, rank 0 alone does a stage that trains nothing
        with main_first():
            if is_main():
                stage.execute(ctx)
    if not is_main():
        return out
    if not is_finished(out):
        raise RuntimeError(f"stage {stage.name} returned without writing {out / 'metrics.json'}")
    return out


def resolve_upstream(arg: str, req: Upstream, *, data_root: str = "", seed: int = 0, device: str = "auto",
                     quick: bool = False, progress: bool = True) -> Path:
    """The one way an upstream run is found: by folder or identity (``req.value``), checked to be a
    finished run of ``req.stage`` holding that stage's outputs; or, when no value is given, that
    stage's run for the same data, seed and ``req.params``, made now if missing (and said so)."""
    from . import get_stage

    up = get_stage(req.stage)
    arg = req.param or arg
    if not req.value:
        print(f"[{arg}] not given: using the {up.name} run for seed {seed}"
              + (f" with {req.params}" if req.params else "") + " (made now if it does not exist)",
              file=sys.stderr, flush=True)
        return up(data_root=data_root, seed=seed, device=device, quick=quick, progress=progress, **req.params)
    try:
        run = find_run(req.value)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{arg}={req.value!r}: {e}; expected a finished {up.name} run "
                                f"(notebook {up.notebook}){req.hint}") from None
    info = read_json(run / "params.json")
    if not str(info.get("stage", "")).startswith(up.prefix):
        raise ValueError(f"{arg}={req.value!r} is a {info.get('stage')!r} run, not a run of stage {up.name!r} "
                         f"(expected a folder runs/{up.prefix}-...; notebook {up.notebook})")
    missing = [f for f in up.outputs if not (run / f).exists()]
    if missing:
        raise FileNotFoundError(f"{arg}={req.value!r} is not a finished {up.name} run: {', '.join(missing)} "
                                f"missing in {run} (run notebook {up.notebook} to the end first)")
    return run


class TrainingStage(Stage):
    """A stage that trains a network with the shared engine, then writes and scores attention."""

    Config: ClassVar[type[TrainConfig]] = TrainConfig
    outputs = ("metrics.json", "evaluation.json", "checkpoint.pt")
    distributed = True

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

    def evaluation_extra(self, ctx: RunContext) -> dict:
        return {}

    def progress_label(self, cfg) -> str:
        return self.name

    def training_set(self, ctx: RunContext) -> TrainingSet:
        cfg = ctx.cfg
        return training_set(ctx.root, cfg.crop_size, cfg.output_stride, getattr(cfg, "store_size", 0),
                            layout=ctx.layout)

    def execute(self, ctx: RunContext) -> None:
        cfg = ctx.cfg
        ctx.ts = self.training_set(ctx)
        model = self.build_model(ctx).to(ctx.device)
        opt = torch.optim.SGD(model.param_groups(cfg.lr, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
        step, state = self.training_step(ctx, model)
        res = fit(model, opt, cfg.schedule, ctx.ts.dataset, cfg.loop(ctx.seed, ctx.ts.crop), ctx.out, step, state,
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
                               {"history": train_info.get("history", []), **self.evaluation_extra(ctx)})
        metrics = {**flat_metrics(evals), **self.extra_metrics(ctx, model, evals),
                   **{k: v for k, v in train_info.items() if k != "history"}}
        metrics["eval_seconds"] = time.perf_counter() - t0
        write_metrics(ctx.out, metrics)


@dataclass
class StageCall:
    """A notebook's stage call: the stage, its validated config, and the run arguments."""

    stage: Stage
    config: StageConfig
    quick: bool
    run_args: dict
    upstream: dict
    params: dict

    def run(self, progress: bool = True) -> Path:
        return self.stage(quick=self.quick, progress=progress, **self.run_args, **self.upstream, **self.params)

    def publish(self, point_dir: str, run: Path) -> dict:
        """The run's metrics (plus the stage's per-point extras), into the batch point's folder if any."""
        return publish_point(point_dir, run, self.stage.point_metrics(self.config, run))

    def __str__(self) -> str:
        ups = ", ".join(f"{k}={v!r}" for k, v in self.upstream.items()) or "-"
        return (f"stage {self.stage.name} (quick={self.quick}); upstream: {ups}\n"
                f"run arguments: {self.run_args}\nconfig: {self.config}")


def notebook_call(stage_name: str, namespace: dict, announce: bool = True) -> StageCall:
    """Build a stage call from a notebook's parameters cell (its ``globals()``), in one step.

    Picks the run arguments, the stage's upstream arguments and its config fields by name (each
    parameter is written once, in the parameters cell; ``None`` = the default), resolves quick mode
    (``WSSS_QUICK=1`` forces it) and validates everything before any work: a bad value fails here,
    naming the parameter."""
    from . import get_stage

    stage = get_stage(stage_name)
    quick = resolve_quick(namespace.get("quick", False), announce=announce)
    run_args = {k: namespace[k] for k in ("data_root", "run_dir", "seed", "device") if k in namespace}
    ups = {k: namespace[k] for k in stage.upstream if k in namespace}
    params = {k: namespace[k] for k in stage.Config.field_names() if namespace.get(k) is not None}
    cfg = stage.config(quick=quick, seed=run_args.get("seed", 0), device=run_args.get("device", "auto"), **params)
    if quick and announce and stage.quick_note:
        print(f"  {stage.name}: {stage.quick_note}")
    return StageCall(stage, cfg, quick, run_args, ups, params)


__all__ = ["RUN_ARGS", "RunContext", "Stage", "StageCall", "TrainingStage", "Upstream", "notebook_call",
           "resolve_upstream"]
