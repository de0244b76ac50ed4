"""The one stage interface: what every stage declares, and the sequence they all share.

A stage is a :class:`Stage` subclass in its own module of :mod:`wsss_lib.stages`. It declares

- ``name`` (registry key) and ``prefix`` (run folders are ``runs/<prefix>-<hash of the identity>``);
- ``Config``: a :class:`~wsss_lib.engine.config.StageConfig` dataclass (defaults and ``validate``
  with errors that name the parameter; what the quick profile changes is in :mod:`wsss_lib.runs.profile`);
- ``upstream``: run argument -> the stage whose run it reads (``{"oaa_run": "classifier"}``), and
  ``upstream_params_field``: the config field holding the parameters of an upstream run made for it;
- ``inherits``: its settings that its upstream runs inherit (a segmentation run with
  ``pretrained=False`` reads from-scratch classifier runs without saying so twice);
- ``splits``: the data splits it reads (checked before any work); ``outputs``: what a finished run holds;
- ``sources`` (the attention sources it writes) and ``main_metrics`` (what tables show first);
- ``notebook``: the notebook that runs it;

and writes only its own lines: :meth:`Stage.execute` (or, for a training stage,
:meth:`~wsss_lib.stages.training.TrainingStage.build_model`, ``training_step`` and ``attention``
of :mod:`wsss_lib.stages.training`).

Calling a stage runs the shared sequence in two steps. :meth:`Stage.plan` does every cheap check and
resolves the run's identity without writing anything: the profile, the config (defaults, profile,
inherited settings, the given values), the upstream runs (planned the same way, or found and
checked), the data (every split it reads decodes), its other inputs (saliency maps, checkpoint
files), the weights it will load (they must be on this machine), and the identity: resolved config,
profile, data content, weights digest, outputs and upstream identities. :func:`execute_plan` then
makes the upstream runs, makes or finds the locked run folder, returns at once if the run is
finished, seeds and executes. A failed check therefore leaves no folder behind.

Notebooks call :func:`wsss_lib.stages.notebook.notebook_call` on their parameters cell's namespace.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from wsss_lib.data.voc import VOCLayout
from wsss_lib.engine.common import TrainingSet
from wsss_lib.engine.config import StageConfig
from wsss_lib.engine.data_setup import resolve_data_root
from wsss_lib.engine.loop import resolve_device, seed_everything
from wsss_lib.models.weights import Weights
from wsss_lib.runs.folders import (canonical, find_run, is_finished, params_hash, prepare_run, run_data_root,
                                   run_identity, runs_root, stage_entry, upstream_run)
from wsss_lib.runs.identity import code_digest, combine, data_identity, folder_identity
from wsss_lib.runs.profile import FULL, Profile, resolve_profile
from wsss_lib.stages.registry import get_stage
from wsss_lib.util.distributed import is_main, main_first
from wsss_lib.util.io import check_torch_file, read_json

#: the arguments every stage call takes besides its config's fields and its upstream runs
RUN_ARGS = ("data_root", "run_dir", "seed", "device", "quick")
#: config fields that cannot change a result (how many loader workers, how often a checkpoint is written)
NO_RESULT_FIELDS = ("num_workers", "checkpoint_every", "sbd_root")  # sbd_root: its content is identified instead
#: parameters every notebook takes besides its stages' (the batch runner's point folder)
NOTEBOOK_ARGS = ("point_dir",)


@dataclass
class Upstream:
    """An upstream run a stage asks for: the stage that makes it, the value given (a run folder or
    identity; ``""`` = that stage's run for the same data, seed and ``params``, made if missing)."""

    stage: str
    value: str = ""
    params: dict = field(default_factory=dict)
    param: str = ""  # the parameter the user gave it as, for messages (default: the run argument)
    hint: str = ""  # what else the parameter may be, for messages
    requires: tuple[str, ...] = ()  # files the downstream stage reads from it besides the stage's outputs


@dataclass
class RunPlan:
    """A run, resolved and checked, before anything is written (:meth:`Stage.plan`)."""

    stage: "Stage"
    cfg: StageConfig
    profile: Profile
    seed: int
    device: str
    root: Path
    upstream: dict[str, "RunPlan | Path"]
    weights: dict[str, Weights | None]
    params: dict  # the identity (hashed into the folder name; written to params.json)
    code: str  # the digest of the code the run depends on (its stage's, and its upstream runs')
    run_dir: str = ""

    @property
    def identity(self) -> str:
        """``<run name>-<hash>``: what downstream runs and grid points record."""

        return f"{self.stage.run_name(self.cfg)}-{params_hash(canonical(self.params))}"

    @property
    def folder(self) -> Path:
        return Path(self.run_dir) if self.run_dir else runs_root() / self.identity


@dataclass
class RunContext:
    """Everything one execution of a stage needs (built by the shared sequence)."""

    cfg: StageConfig
    seed: int
    profile: Profile
    device: torch.device
    root: Path
    layout: VOCLayout
    out: Path
    upstream: dict[str, Path]
    weights: dict[str, Weights | None] = field(default_factory=dict)
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
    #: upstream run argument -> the config field with the parameters of that run when it is made here
    upstream_params_field: ClassVar[dict[str, str]] = {}
    #: this stage's settings that its upstream runs inherit (when they are made for it)
    inherits: ClassVar[tuple[str, ...]] = ()
    #: the data splits this stage reads (each is checked before any work)
    splits: ClassVar[tuple[str, ...]] = ("train",)
    sources: ClassVar[tuple[str, ...]] = ()
    #: how tables and figures name the attention sources this stage writes (source -> display name)
    source_names: ClassVar[dict[str, str]] = {}
    main_metrics: ClassVar[tuple[str, ...]] = ()
    notebook: ClassVar[str] = ""
    #: files a finished run of this stage holds (checked when a later stage reads it)
    outputs: ClassVar[tuple[str, ...]] = ("metrics.json",)
    #: config fields left out of the run's identity (they choose what is shown, not what is made)
    display_only: ClassVar[tuple[str, ...]] = ()
    #: what the quick profile means for this stage's numbers (notebooks print it)
    quick_note: ClassVar[str] = ""
    #: every rank of a ``torchrun`` process group executes it (training stages); otherwise rank 0 only
    distributed: ClassVar[bool] = False
    #: it trains a network with the shared engine (:class:`~wsss_lib.stages.training.TrainingStage`)
    trains: ClassVar[bool] = False

    # -- what a stage may override --------------------------------------------------------------
    def display_name(self, source: str) -> str | None:
        """The display name of ``source`` if this stage writes it (:data:`source_names`), else ``None``."""
        return self.source_names.get(source)

    def upstream_requests(self, cfg, given: dict[str, str]) -> dict[str, Upstream]:
        """The upstream runs this call needs (default: every declared one, made if not given, with
        the parameters of :attr:`upstream_params_field`)."""
        return {arg: Upstream(stage, str(given.get(arg) or ""), dict(getattr(cfg, self.upstream_params_field[arg]))
                              if arg in self.upstream_params_field else {})
                for arg, stage in self.upstream.items()}

    def run_name(self, cfg) -> str:
        return self.prefix

    def identity(self, cfg) -> dict:
        """The config's part of the run identity (default: every field but ``display_only`` and the
        settings that cannot change a result, :data:`NO_RESULT_FIELDS`)."""
        return {k: v for k, v in asdict(cfg).items() if k not in self.display_only and k not in NO_RESULT_FIELDS}

    def weights(self, cfg, profile: Profile) -> dict[str, Weights | None]:
        """The pretrained weights the run loads, by backbone name (checked and identified when planned)."""
        return {}

    def expected_outputs(self, cfg) -> tuple[str, ...]:
        """What a finished run of ``cfg`` holds (part of its identity; checked when a later stage reads it)."""
        return self.outputs

    def inputs(self, cfg, root: Path, upstream: dict) -> dict:
        """Check the stage's other inputs before any work (saliency maps, checkpoint files...) and
        return what identifies them (added to the run's identity)."""
        return {}

    def execute(self, ctx: RunContext) -> None:
        """The stage's own work; must end with :func:`~wsss_lib.runs.folders.write_metrics`."""
        raise NotImplementedError

    def point_metrics(self, cfg, run: Path) -> dict:
        """Extra metrics a notebook publishes for its grid point (e.g. AMR's value at ``xi_main``)."""
        return {}

    # -- the shared sequence ------------------------------------------------------------------------
    def config(self, profile: Profile = FULL, seed: int = 0, device: str = "auto", inherited: dict | None = None,
               data_root: str = "", **params):
        """The resolved config of a call on ``data_root`` (whose benchmark variant brings its network
        settings, :meth:`~wsss_lib.runs.profile.Profile.data_network`)."""
        return self.Config.from_params(profile, seed=seed, device=device, inherited=inherited,
                                       data_defaults=profile.data_network(data_root, self.Config), **params)

    @classmethod
    def known_parameters(cls) -> tuple[str, ...]:
        """Every name a call of this stage takes: the run arguments, its upstream runs, its config."""
        return (*RUN_ARGS, *cls.upstream, *cls.Config.field_names())

    @classmethod
    def code(cls) -> str:
        """The digest of this stage's code (its module and every library module it imports)."""
        return code_digest(cls.__module__)

    def plan(self, data_root: str = "", run_dir: str = "", seed: int = 0, device: str = "auto",
             quick: "bool | Profile" = False, inherited: dict | None = None, progress: bool = True, **params) -> RunPlan:
        """Resolve and check this run, and every upstream run it needs, writing nothing (see the
        module docstring). ``params``: the config's fields (``None`` = default) and upstream run
        arguments; ``inherited``: settings passed on by a downstream stage."""
        profile = resolve_profile(quick)
        given = {k: params.pop(k) for k in list(params) if k in self.upstream}
        cfg = self.config(profile, seed=seed, device=device, inherited=inherited, data_root=data_root, **params)
        inherit_up = {**(inherited or {}), **{k: getattr(cfg, k) for k in (*DATA_FIELDS, *self.inherits)}}
        ups: dict[str, RunPlan | Path] = {}
        for arg, req in self.upstream_requests(cfg, given).items():
            ups[arg] = plan_upstream(arg, req, data_root=data_root, seed=seed, device=device, profile=profile,
                                     inherited=inherit_up, progress=progress)
        if ups:  # the data an upstream run was made on
            first = next(iter(ups.values()))
            root = first.root if isinstance(first, RunPlan) else _run_data_root(first)
        else:
            with main_first():  # under torchrun: rank 0 generates the embedded benchmark if missing
                root = resolve_data_root(data_root, profile)
        for arg, p in ups.items():  # an upstream run read the same training split
            if not isinstance(p, RunPlan):
                check_upstream_split(arg, p, cfg.train_split)
        for split in self.splits:  # every split decodes, before any folder is made (all bad files listed at once)
            split_layout(cfg, root, split).check(progress=progress and is_main())
        weights = self.weights(cfg, profile.for_data(data_root))
        ident = {"stage": self.name, "profile": profile.name, "data": data_identity(root), **sbd_identity(cfg, root),
                 "seed": seed,
                 **{arg: (p.identity if isinstance(p, RunPlan) else run_identity(p)) for arg, p in ups.items()},
                 **self.identity(cfg), **self.inputs(cfg, root, ups),
                 "weights": [w.identity(name) for name, w in weights.items() if w is not None],
                 "outputs": sorted(self.expected_outputs(cfg))}
        up_codes = [p.code if isinstance(p, RunPlan) else read_json(p / "params.json").get("code_digest", "")
                    for p in ups.values()]
        return RunPlan(self, cfg, profile, seed, device, root, ups, weights, ident,
                       combine(self.code(), *sorted(up_codes)), str(run_dir or ""))

    def __call__(self, data_root: str = "", run_dir: str = "", seed: int = 0, device: str = "auto",
                 quick: "bool | Profile" = False, progress: bool = True, stop_after_steps: int | None = None,
                 **params) -> Path:
        """Make (or resume, or reuse) this stage's run for these parameters; returns its folder.

        ``params``: the config's fields (``None`` = default) and the upstream run arguments."""
        plan = self.plan(data_root, run_dir, seed, device, quick, progress=progress, **params)
        return execute_plan(plan, progress, stop_after_steps)

    def __repr__(self) -> str:
        return f"<stage {self.name}: {self.Config.__name__}, upstream {self.upstream or '-'}>"


#: the config fields that say which data a run reads; every upstream run made for it inherits them
DATA_FIELDS = ("train_split", "sbd_root")


def split_layout(cfg, root: Path, split: str = "train") -> VOCLayout:
    """The index of ``split`` on ``root`` as a run of ``cfg`` reads it: ``"train"`` stands for the
    run's training split (``cfg.train_split``, e.g. ``train_aug`` with ``cfg.sbd_root``); other
    names (``val``) are read as they are."""
    name = cfg.train_split if split == "train" else split
    sbd = resolve_sbd_root(cfg.sbd_root) if name == "train_aug" and cfg.sbd_root else None
    return VOCLayout(root, name, sbd_root=sbd)


def resolve_sbd_root(sbd_root: str) -> Path:
    """The SBD ``dataset`` folder at or under ``sbd_root`` (the one holding ``cls/``); a clear error if none."""
    p = Path(sbd_root).expanduser()
    for cand in (p, p / "dataset", p / "benchmark_RELEASE" / "dataset"):
        if (cand / "cls").is_dir() and (cand / "train.txt").is_file():
            return cand.resolve()
    raise FileNotFoundError(f"sbd_root={sbd_root!r}: no SBD dataset folder there (expected benchmark_RELEASE/dataset "
                            "with cls/<id>.mat, train.txt and val.txt; SBD is at "
                            "http://home.bharathh.info/pubs/codes/SBD/download.html)")


def sbd_identity(cfg, root: Path) -> dict:
    """What identifies the SBD masks a ``train_aug`` run reads (their content; nothing when none are read)."""
    if cfg.train_split != "train_aug" or not cfg.sbd_root:
        return {}
    layout = split_layout(cfg, root)
    names = sorted({p.name for i in range(len(layout)) if (p := layout.mask_path(i)) is not None and p.suffix == ".mat"})
    sbd = resolve_sbd_root(cfg.sbd_root)
    return {"sbd": folder_identity(sbd / "cls", names)} if names else {}


def run_split_layout(run: Path) -> VOCLayout:
    """The training split a finished run read (its recorded ``train_split``, ``sbd_root``), on its data root."""
    info = read_json(Path(run) / "params.json")
    params = info.get("params", {})
    split = params.get("train_split", "train")
    sbd = info.get("paths", {}).get("sbd_root") or ""
    sbd_path = resolve_sbd_root(sbd) if split == "train_aug" and sbd else None
    return VOCLayout(run_data_root(run), split, sbd_root=sbd_path)


def check_upstream_split(arg: str, run: Path, split: str) -> None:
    """A given upstream run trained on the split this run reads (else a clear error, before any work)."""
    if not (Path(run) / "params.json").is_file():  # not a run of this suite (e.g. an official checkpoint file)
        return
    theirs = read_json(Path(run) / "params.json").get("params", {}).get("train_split", "train")
    if theirs != split:
        raise ValueError(f"{arg}={str(run)!r} was made on train_split={theirs!r}, this run reads "
                         f"train_split={split!r}: pass train_split={theirs!r} or an upstream run made on {split!r}")


def _run_data_root(run: Path) -> Path:

    return run_data_root(run)


def plan_upstream(arg: str, req: Upstream, *, data_root: str = "", seed: int = 0, device: str = "auto",
                  profile: Profile = FULL, inherited: dict | None = None, progress: bool = True) -> "RunPlan | Path":
    """The one way an upstream run is found: by folder or identity (``req.value``), checked to be a
    finished run of ``req.stage`` holding that stage's outputs (torch files readable); or, when no
    value is given, the plan of that stage's run for the same data, seed and ``req.params`` (with
    the ``inherited`` settings), made when the downstream run is executed (and said so)."""

    up = get_stage(req.stage)
    arg = req.param or arg
    if not req.value:
        if progress:
                print(f"[{arg}] not given: using the {up.name} run for seed {seed}"
                  + (f" with {req.params}" if req.params else "") + " (made now if it does not exist)",
                  file=sys.stderr, flush=True)
        return up.plan(data_root=data_root, seed=seed, device=device, quick=profile, inherited=inherited,
                       progress=progress, **req.params)
    try:
        run = find_run(req.value)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{arg}={req.value!r}: {e}; expected a finished {up.name} run "
                                f"(notebook {up.notebook}){req.hint}") from None
    made_by = run_stage(run)
    if made_by != up.name:
        raise ValueError(f"{arg}={req.value!r} is a run of stage {made_by!r}, not of stage {up.name!r} (expected "
                         f"a finished {up.name} run, notebook {up.notebook}{req.hint})")
    check_outputs(up, run, f"{arg}={req.value!r}")
    missing = [f for f in req.requires if not (run / f).exists()]
    if missing:
        raise FileNotFoundError(f"{arg}={req.value!r}: {run} has no {', '.join(missing)} (expected a {up.name} run "
                                f"that trained a network{req.hint})")
    return run


def run_stage(run: Path) -> str:
    """The stage that made a run, as its identity records it (``params.json``: ``params.stage``),
    never guessed from the folder's name."""
    info = read_json(Path(run) / "params.json")
    return str(info.get("params", {}).get("stage") or info.get("stage_name") or "?")


def expected_code(run: Path) -> str:
    """The code digest a run would record if it were made now: its stage's code and, through them,
    its upstream runs' (as found from its ``params.json``). A run whose recorded ``code_digest``
    differs is stale: it, or a run it was made from, was computed by other code."""

    info = read_json(Path(run) / "params.json")
    stage = get_stage(run_stage(run))
    ups = [a for a in info.get("paths", {}) if a not in ("data_root", "sbd_root")]
    return combine(stage.code(), *sorted(expected_code(upstream_run(run, a)) for a in ups))


def check_outputs(stage: Stage, run: Path, what: str) -> None:
    """A finished run of ``stage`` holds every output its identity lists, and its torch files are readable."""
    outputs = read_json(run / "params.json").get("params", {}).get("outputs") or stage.outputs
    missing = [f for f in outputs if not (run / f).exists()]
    if missing:
        raise FileNotFoundError(f"{what} is not a finished {stage.name} run: {', '.join(missing)} "
                                f"missing in {run} (run notebook {stage.notebook} to the end first)")
    for f in outputs:
        if f.endswith(".pt"):
            check_torch_file(run / f)


@stage_entry
def execute_plan(plan: RunPlan, progress: bool = True, stop_after_steps: int | None = None) -> Path:
    """Make the plan's upstream runs, then its run (or find it finished); returns its folder."""
    ups = {}
    for arg, p in plan.upstream.items():
        if isinstance(p, RunPlan):
            ups[arg] = execute_plan(p, progress)
            if is_main():
                check_outputs(p.stage, ups[arg], arg)
        else:
            ups[arg] = p
    stage = plan.stage
    paths = {"data_root": str(plan.root), **{k: str(Path(v).resolve()) for k, v in ups.items()},
             **({"sbd_root": str(resolve_sbd_root(plan.cfg.sbd_root))} if plan.cfg.sbd_root else {})}
    with main_first():  # rank 0 makes and locks the folder; the other ranks find it
        out, finished = prepare_run(stage.run_name(plan.cfg), plan.params, plan.code, plan.run_dir, paths,
                                    {"stage_name": stage.name})
    if finished:
        return out
    seed_everything(plan.seed)
    ctx = RunContext(plan.cfg, plan.seed, plan.profile, resolve_device(plan.device), plan.root,
                     split_layout(plan.cfg, plan.root), out, ups, plan.weights, progress and is_main(), stop_after_steps)
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


__all__ = ["DATA_FIELDS", "NOTEBOOK_ARGS", "RUN_ARGS", "RunContext", "RunPlan", "Stage", "Upstream",
           "check_outputs", "check_upstream_split", "execute_plan", "expected_code", "plan_upstream",
           "resolve_sbd_root", "run_split_layout", "run_stage", "split_layout"]
