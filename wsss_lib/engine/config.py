"""Stage configurations: the base every stage's config derives from (defaults, validation whose
errors name the parameter), and the training hyper-parameters every training stage shares. What a
profile (full or quick) changes is in :mod:`wsss_lib.runs.profile`, applied by :meth:`StageConfig.from_params`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from wsss_lib.data.transforms import AUGMENTATIONS
from wsss_lib.engine.loop import SCHEDULES, LoopConfig
from wsss_lib.models.backbones import BACKBONES
from wsss_lib.models.cam import HEAD_INITS
from wsss_lib.runs.profile import FULL, Profile


def interval(lo: float, hi: float, closed_lo: bool = True, closed_hi: bool = True) -> str:
    """An interval as every message writes it: ``[0, 1]``, ``(0, 1]``, ``[0, inf)``."""
    hi_s = "inf" if hi == float("inf") else f"{hi:g}"
    return f"{'[' if closed_lo else '('}{lo:g}, {hi_s}{']' if closed_hi and hi != float('inf') else ')'}"


@dataclass
class StageConfig:
    """The base of every stage's config: a dataclass of the stage's own parameters (its defaults)
    and :meth:`validate` (errors name the parameter).

    A config with a ``preset`` field lists its presets in :attr:`PRESETS` (name -> the values it
    sets): a preset's values override the defaults, the profile's and the inherited settings;
    parameters given explicitly override the preset."""

    #: preset name -> the parameter values it sets (empty: the config has no presets)
    PRESETS: ClassVar[dict[str, dict]] = {}

    #: the training split the stage reads: ``train`` (VOC 2012's segmentation train list, the
    #: embedded benchmark's only training split), ``train_aug`` (VOC + SBD, the papers' 10,582
    #: images) or another list name of ``ImageSets/Segmentation``; passed on to the upstream runs
    train_split: str = "train"
    #: SBD's ``benchmark_RELEASE/dataset`` folder (``cls/*.mat``, ``train.txt``, ``val.txt``): how
    #: ``train_aug`` is built when the VOC folder has no ``ImageSets/Segmentation/train_aug.txt``;
    #: its content (not its location) enters the run's identity
    sbd_root: str = ""

    @staticmethod
    def invalid(name: str, value, expected: str) -> ValueError:
        hint = ""
        if isinstance(value, str):
            try:
                float(value)
                hint = (f" (it is the text {value!r}, not a number: YAML reads a number such as 1e-3 without a "
                        "decimal point as text; write 1.0e-3)")
            except ValueError:
                pass
        return ValueError(f"parameter {name}={value!r} is invalid: expected {expected}{hint}")

    def check(self, name: str, ok: bool, expected: str) -> None:
        if not ok:
            raise self.invalid(name, getattr(self, name), expected)

    def check_int(self, name: str, minimum: int = 0) -> None:
        v = getattr(self, name)
        self.check(name, isinstance(v, int) and not isinstance(v, bool) and v >= minimum, f"an integer >= {minimum}")

    def check_number(self, name: str, lo: float, hi: float, closed_hi: bool = True, closed_lo: bool = True) -> None:
        """``name`` is a number in the interval (one wording for every range: ``[0, 1]``, ``(0, 1]``)."""
        v = getattr(self, name)
        ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and (lo <= v if closed_lo else lo < v)
              and (v <= hi if closed_hi else v < hi))
        self.check(name, ok, f"a number in {interval(lo, hi, closed_lo, closed_hi)}")

    def check_data(self) -> None:
        """``train_split`` names a list (``train``, ``train_aug``...) and ``sbd_root`` is a folder
        path or empty; whether they exist is checked when the run is planned (on its data)."""
        self.check("train_split", isinstance(self.train_split, str) and bool(self.train_split)
                   and all(c.isalnum() or c in "_-" for c in self.train_split),
                   "a split list name such as 'train' or 'train_aug'")
        self.check("sbd_root", isinstance(self.sbd_root, str), "a folder path (or '' for none)")

    def validate(self):
        if self.PRESETS:
            self.check("preset", getattr(self, "preset") in self.PRESETS, f"one of {', '.join(self.PRESETS)}")
        return self

    @classmethod
    def preset_values(cls, preset: str, overrides: dict, inherited: dict) -> dict:
        """The values preset ``preset`` sets (a config may adapt them to the other parameters)."""
        return dict(cls.PRESETS[preset])

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_params(cls, profile: Profile = FULL, seed=0, device="auto", inherited: dict | None = None,
                    data_defaults: dict | None = None, **overrides):
        """The resolved config: defaults, then the ``profile``'s settings (its recipe for the config's
        backbone last, :attr:`~wsss_lib.runs.profile.Profile.recipes`), then the network settings
        of the data's benchmark variant (``data_defaults``; the tiny backbone's, so dropped when the
        config names another backbone), then the settings a downstream stage
        passes on (``inherited``; for both, only the fields this config has), then ``overrides``
        (``None`` = not given); validated, together with the run's ``seed`` and
        ``device`` (before any folder is made). Unknown names in ``overrides`` are refused, listing
        the known ones."""
        check_run_args(seed, device)
        names = set(cls.field_names())
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for {cls.__name__}; known: {sorted(names)}")
        prof = profile.config_overrides(cls)
        inh = {k: v for k, v in (inherited or {}).items() if k in names}
        given = {k: v for k, v in overrides.items() if v is not None}
        backbone = {**prof, **inh, **given}.get("backbone", getattr(cls, "backbone", None)) if "backbone" in names else None
        if backbone is not None:
            prof = profile.config_overrides(cls, backbone)  # with the profile's recipe for that network
        if backbone is not None and backbone != "tiny":
            data_defaults = {}  # a variant's network settings are the tiny backbone's: another backbone keeps its own
        values = {**prof, **{k: v for k, v in (data_defaults or {}).items() if k in names}, **inh}
        if cls.PRESETS:
            preset = overrides.get("preset") or prof.get("preset") or getattr(cls, "preset")
            if preset not in cls.PRESETS:
                raise cls.invalid("preset", preset, f"one of {', '.join(cls.PRESETS)}")
            values.update(cls.preset_values(preset, {**prof, **inh, **given}, inherited or {}))
        values.update({k: v for k, v in overrides.items() if v is not None})
        cfg = cls()
        for k, v in values.items():
            setattr(cfg, k, v)
        cfg.check_data()
        return cfg.validate()


@dataclass
class TrainConfig(StageConfig):
    """Optimization and data settings common to all training stages (defaults: embedded benchmark, CPU)."""

    #: ImageNet weights (VGG16/ResNet) or the embedded pretraining task's weights (tiny), as the papers
    #: fine-tune a pretrained network; False trains from scratch
    pretrained: bool = True
    epochs: int = 10
    batch_size: int = 16
    lr: float = 0.01
    momentum: float = 0.9
    #: Nesterov momentum (the official OAA / OAA+ optimizers; their presets set it)
    nesterov: bool = False
    weight_decay: float = 2e-4
    schedule: str = "poly"
    augment: str = "flip"
    scale_range: tuple[float, float] = (0.7, 1.0)
    crop_size: int = 0  # 0: the images' own size (embedded benchmark); VOC: e.g. 321
    checkpoint_every: int = 0  # also checkpoint every N steps (0: at epoch ends only)
    num_workers: int = 0  # data loader workers (0: none on CPU; on CUDA, a few per GPU)
    amp: bool = True  # bf16 autocast on CUDA (fp16 + gradient scaler where bf16 is missing)

    def loop(self, seed: int, crop_size: int) -> LoopConfig:
        """The training engine's settings for this config."""
        return LoopConfig(self.epochs, self.batch_size, seed, crop_size, self.augment, self.scale_range,
                          self.num_workers, self.checkpoint_every, self.amp)

    def validate(self):
        self.check("pretrained", isinstance(self.pretrained, bool), "True or False")
        self.check_int("epochs", 1)
        self.check_int("batch_size", 1)
        self.check_int("crop_size")  # 0 = automatic
        self.check_int("checkpoint_every")
        self.check_int("num_workers")
        for name in ("lr", "momentum", "weight_decay"):
            v = getattr(self, name)
            self.check(name, isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                       and (v > 0 or name != "lr"), "a number > 0" if name == "lr" else "a number >= 0")
        self.check("nesterov", isinstance(self.nesterov, bool) and (not self.nesterov or self.momentum > 0),
                   "True or False (True needs momentum > 0)")
        self.check("schedule", self.schedule in SCHEDULES, f"one of {sorted(SCHEDULES)}")
        self.check("augment", self.augment in AUGMENTATIONS, f"one of {AUGMENTATIONS}")
        try:
            sr = tuple(float(x) for x in self.scale_range)
        except (TypeError, ValueError):
            sr = ()
        self.check("scale_range", len(sr) == 2 and 0 < sr[0] <= sr[1] <= 1, "(lo, hi) with 0 < lo <= hi <= 1")
        self.scale_range = sr
        self.check("amp", isinstance(self.amp, bool), "True or False")
        return self


#: the smallest feature map a network may train on, in cells a side: a CAM of fewer cells has no
#: object to show (``crop_size`` below ``MIN_FEATURE_CELLS * output_stride`` is refused)
MIN_FEATURE_CELLS = 4


def check_crop(cfg: "StageConfig", output_stride: int, what: str) -> None:
    """``crop_size`` is 0 (the images' own size) or at least :data:`MIN_FEATURE_CELLS` cells of
    ``output_stride`` a side (the error names the smallest size)."""
    c = cfg.crop_size
    cfg.check("crop_size", c == 0 or c >= MIN_FEATURE_CELLS * output_stride,
              f"0 (the images' own size) or at least {MIN_FEATURE_CELLS * output_stride} pixels ({what} has output "
              f"stride {output_stride}: a map needs {MIN_FEATURE_CELLS} x {MIN_FEATURE_CELLS} cells)")


#: the output strides each backbone can make (the tiny one dilates its last stages for 4; VGG-16 is
#: the OAA code's stride-8 network; ResNets dilate for 8 or keep 16)
OUTPUT_STRIDES = {"tiny": (4, 8), "vgg16": (8,), "resnet50": (8, 16), "resnet101": (8, 16), "mobilenet_v2": (8, 16)}


@dataclass
class AttentionTrainConfig(TrainConfig):
    """A training stage whose network has a classification backbone and writes attention maps."""

    backbone: str = "tiny"
    output_stride: int = 8
    #: the tiny backbone's width (channels of its first stage; pretrained weights must have it)
    width: int = 32
    #: 3x3 convs between the backbone and the class-aware conv (OAA's network: 3; the official AMR network: 0)
    head_convs: int = 3
    #: how the new layers start (:data:`wsss_lib.models.cam.HEAD_INITS`; official OAA: "normal", N(0, 0.01))
    head_init: str = "kaiming"

    def validate(self):
        self.check("backbone", self.backbone in BACKBONES, f"one of {', '.join(BACKBONES)}")
        self.check("width", isinstance(self.width, int) and not isinstance(self.width, bool)
                   and 4 <= self.width and (self.backbone == "tiny" or self.width == 32),
                   "an integer >= 4 (and 32 unless backbone is 'tiny': only the tiny backbone has a width)")
        self.check_int("head_convs")
        self.check("head_init", self.head_init in HEAD_INITS, f"one of {', '.join(HEAD_INITS)}")
        allowed = OUTPUT_STRIDES.get(self.backbone, (8, 16))
        self.check("output_stride", self.output_stride in allowed,
                   f"{' or '.join(map(str, allowed))} for backbone {self.backbone!r}")
        super().validate()
        check_crop(self, self.output_stride, f"backbone {self.backbone!r}")
        return self


def check_run_args(seed, device) -> None:
    """Validate the arguments every stage takes besides its config (errors name the parameter)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise StageConfig.invalid("seed", seed, "an integer >= 0")
    if device in ("auto", "", None):
        return
    import torch  # lazy: heavy: this module stays importable without torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise StageConfig.invalid("device", device, "'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise StageConfig.invalid("device", device, "'auto' or 'cpu': CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise StageConfig.invalid("device", device, "'auto', 'cpu', 'cuda' or 'cuda:N'")
