"""The hyper-parameters every training stage shares, their checks, and quick-mode overrides."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from ..data.transforms import AUGMENTATIONS
from ..models.backbones import BACKBONES
from .engine import SCHEDULES


@dataclass
class TrainConfig:
    """Optimization and data settings common to all stages (defaults: embedded benchmark, CPU)."""

    backbone: str = "tiny"
    pretrained: bool = False
    output_stride: int = 8
    epochs: int = 10
    batch_size: int = 16
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 2e-4
    schedule: str = "poly"
    augment: str = "flip"
    scale_range: tuple[float, float] = (0.7, 1.0)
    crop_size: int = 0  # 0: the images' own size (embedded benchmark); VOC: e.g. 321
    checkpoint_every: int = 0  # also checkpoint every N steps (0: at epoch ends only)
    num_workers: int = 0
    amp: bool = True  # bf16 autocast, on CUDA only

    QUICK: ClassVar[dict] = {"epochs": 2, "batch_size": 8}

    @staticmethod
    def invalid(name: str, value, expected: str) -> ValueError:
        return ValueError(f"parameter {name}={value!r} is invalid: expected {expected}")

    def check(self, name: str, ok: bool, expected: str) -> None:
        if not ok:
            raise self.invalid(name, getattr(self, name), expected)

    def validate(self):
        self.check("backbone", self.backbone in BACKBONES, f"one of {', '.join(BACKBONES)}")
        self.check("output_stride", self.output_stride in (8, 16), "8 or 16")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            self.check(name, isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1")
        self.check("lr", isinstance(self.lr, (int, float)) and self.lr > 0, "a number > 0")
        self.check("schedule", self.schedule in SCHEDULES, f"one of {sorted(SCHEDULES)}")
        self.check("augment", self.augment in AUGMENTATIONS, f"one of {AUGMENTATIONS}")
        self.check("crop_size", self.crop_size >= 0, "an integer >= 0 (0 = automatic)")
        sr = tuple(float(x) for x in self.scale_range)
        self.check("scale_range", len(sr) == 2 and 0 < sr[0] <= sr[1] <= 1, "(lo, hi) with 0 < lo <= hi <= 1")
        self.scale_range = sr
        return self

    @classmethod
    def from_params(cls, quick: bool = False, seed=0, device="auto", **overrides):
        """Defaults, then the quick-mode settings (if ``quick``), then ``overrides``; validated,
        together with the run's ``seed`` and ``device`` (before any folder is made)."""
        check_run_args(seed, device, quick)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; known: {sorted(names)}")
        cfg = cls(**(cls.QUICK if quick else {}))
        for k, v in overrides.items():
            setattr(cfg, k, v)
        return cfg.validate()


def check_run_args(seed, device, quick=False) -> None:
    """Validate the arguments every stage takes besides its config (errors name the parameter)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise TrainConfig.invalid("seed", seed, "an integer >= 0")
    if not isinstance(quick, bool):
        raise TrainConfig.invalid("quick", quick, "True or False")
    if device in ("auto", "", None):
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise TrainConfig.invalid("device", device, "'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainConfig.invalid("device", device, "'auto' or 'cpu': CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise TrainConfig.invalid("device", device, "'auto', 'cpu', 'cuda' or 'cuda:N'")
