"""Profiles: ``full`` (the default) or ``quick`` (tiny settings for tests and smoke runs).

A profile is resolved once, at every entry point (a notebook's stage call, ``Stage.__call__``,
``launch``, the batch runner, the main job), by :func:`resolve_profile`: the ``quick`` parameter, or
the environment variable ``WSSS_QUICK=1``, which forces quick. The :class:`Profile` object then
carries *everything* quick changes, so nothing else decides it:

- the embedded benchmark of each variant (``data_root=""`` is the profile's default variant: ``mini``,
  version 2, in the full profile; ``v1`` in the quick one, which keeps the test suite fast;
  ``embedded:v1``, ``embedded:parts2``, ``embedded:mini`` name one);
- the pretraining spec of the ``tiny`` backbone's pretraining task (its weights);
- the stage configs' overrides (fewer epochs, smaller batches, fewer snapshots);
- where the reports of the profile go (``reports/`` or ``reports/quick/``).

A run's identity holds the profile's name; its data, weights and resolved config hold the rest,
so a quick run is never taken for a full one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping

from wsss_lib.data.spec import DEFAULT_SPEC, MINI_SPEC, PARTS2_SPEC, BenchmarkSpec
from wsss_lib.models.pretrain import DEFAULT_PRETRAIN, PretrainSpec
from wsss_lib.util.environment import env_flag
from wsss_lib.util.paths import REPO

#: ``data_root`` values that name a generated benchmark: ``""`` (the profile's default variant) or
#: ``embedded:<variant>``
EMBEDDED_PREFIX = "embedded:"

#: the environment variable that forces the quick profile (the test suite sets it to 1)
QUICK_ENV = "WSSS_QUICK"


@dataclass(frozen=True)
class Profile:
    """Everything a profile sets (see the module docstring)."""

    name: str
    benchmarks: Mapping[str, BenchmarkSpec]
    pretrain: PretrainSpec
    #: config class name -> the values the profile sets (applied along the class hierarchy, base first)
    overrides: Mapping[str, Mapping] = field(default_factory=dict)
    #: where this profile's reports go, relative to the repository
    reports: str = "reports"
    #: what the profile means for the numbers (notebooks print it)
    note: str = ""
    #: the benchmark variant ``data_root=""`` means
    default_variant: str = "v1"
    #: variant -> the network settings it is meant for (stage config values such as ``output_stride``
    #: and ``width``), applied to every stage config that has the field, after the profile's overrides
    #: and before anything given explicitly
    networks: Mapping[str, Mapping] = field(default_factory=dict)
    #: variant -> the pretraining task its tiny backbone is pretrained on (default: ``pretrain``)
    pretrains: Mapping[str, PretrainSpec] = field(default_factory=dict)
    #: backbone -> config class name -> the values the profile sets for a config of that backbone
    #: (after :attr:`overrides`, before inherited and given values): one profile can hold a recipe per
    #: network, e.g. OAA's VGG16 classifier and AMR's ResNet-50 CAM network on VOC
    recipes: Mapping[str, Mapping[str, Mapping]] = field(default_factory=dict)
    #: tiny settings (numbers are a smoke test): the test suite's ``WSSS_QUICK=1`` keeps such a profile
    smoke: bool = False

    @property
    def quick(self) -> bool:
        return self.name == "quick" or self.smoke

    def benchmark(self, variant: str = "v1") -> BenchmarkSpec:
        """The embedded benchmark spec of ``variant`` (clear error listing the known ones)."""
        if variant not in self.benchmarks:
            raise ValueError(f"unknown embedded benchmark {variant!r}: expected one of "
                             + ", ".join(f"'embedded:{k}'" for k in self.benchmarks))
        return self.benchmarks[variant]

    def variant_of(self, data_root: str) -> str | None:
        """The embedded benchmark variant ``data_root`` names (``""``: the default one), ``None`` for
        a folder of real data; an unknown variant raises, listing the known ones."""
        root = str(data_root or "")
        if not root and not self.benchmarks:
            raise ValueError(f"profile {self.name!r} has no embedded benchmark: data_root must name a VOC 2012 folder")
        if not root:
            return self.default_variant
        if root.startswith(EMBEDDED_PREFIX):
            name = root[len(EMBEDDED_PREFIX):]
            if name not in self.benchmarks:
                raise ValueError(f"data_root={root!r}: unknown embedded benchmark {name!r}; expected one of "
                                 + ", ".join(repr(EMBEDDED_PREFIX + k) for k in self.benchmarks) + " or a VOC folder")
            return name
        return None

    def data_network(self, data_root: str, config_cls: type) -> dict:
        """The network settings of ``data_root``'s variant that ``config_cls`` has fields for."""
        names = {f.name for f in fields(config_cls)} if hasattr(config_cls, "__dataclass_fields__") else set()
        return {k: v for k, v in self.networks.get(self.variant_of(data_root), {}).items() if k in names}

    def for_data(self, data_root: str) -> "Profile":
        """This profile with ``data_root``'s variant's pretraining as ``pretrain`` (what its runs load)."""
        spec = self.pretrains.get(self.variant_of(data_root))
        return self if spec is None or spec == self.pretrain else replace(self, pretrain=spec)

    def config_overrides(self, config_cls: type, backbone: str | None = None) -> dict:
        """The values this profile sets for a config class (its bases' first, then its own), then,
        with ``backbone``, that backbone's recipe for the class (:attr:`recipes`)."""
        out: dict = {}
        for table in (self.overrides, self.recipes.get(backbone, {}) if backbone else {}):
            for klass in reversed(config_cls.__mro__):
                out.update(table.get(klass.__name__, {}))
        return out

    def reports_dir(self, repo: Path | None = None) -> Path:
        return (repo or REPO) / self.reports


#: the default: the benchmark of reports/benchmark.md (version 2, ``mini``, chosen from the candidates'
#: measured properties: reports/notes/benchmark.md), its network settings and pretraining task, the stages'
#: own defaults; version 1 and ``parts2`` one ``data_root`` away
#: the network the version 2 candidate is meant for: output stride 4 (28 cells a side at 112 px, as
#: VOC's 224 px at stride 8) and width 16 (the 2-core CPU budget: about the cost per image of version
#: 1 at width 32, where width 32 at stride 4 costs about 4x), pretrained on the regions pretraining task at
#: the benchmark's scale
MINI_NETWORK = {"output_stride": 4, "width": 16}
MINI_PRETRAIN = PretrainSpec(size=112, task="regions", width=16)

FULL = Profile("full", {"v1": DEFAULT_SPEC, "parts2": PARTS2_SPEC, "mini": MINI_SPEC}, DEFAULT_PRETRAIN,
               default_variant="mini", networks={"mini": MINI_NETWORK}, pretrains={"mini": MINI_PRETRAIN})

#: tiny settings: 48 + 16 images of 64 px, a 6-epoch pretraining task on 960 images, 2 epochs per stage
#: but the classifier's 6 of batch 4: a quick classifier learns something (val mAP about 0.5 against a
#: chance of about 0.2; CAM mIoU about 0.14 against 0.095 for all-background), so a quick run can tell
#: a network loaded from the wrong weights from the right one (measured when the profile was set)
QUICK = Profile(
    "quick",
    {"v1": BenchmarkSpec(n_train=48, n_val=16, size=64),
     "parts2": BenchmarkSpec(n_train=48, n_val=16, size=64, parts_per_object=2),
     "mini": BenchmarkSpec(n_train=48, n_val=16, size=64, version="2")},
    PretrainSpec(n_train=960, n_heldout=240, size=48, epochs=6, batch_size=32),
    {"TrainConfig": {"epochs": 2, "batch_size": 8}, "ClassifierConfig": {"n_snapshots": 4, "epochs": 6, "batch_size": 4}},
    reports="reports/quick",
    note="tiny benchmark and tiny settings (numbers are a smoke test, not results)",
    networks={"mini": MINI_NETWORK},
    pretrains={"mini": PretrainSpec(n_train=480, n_heldout=240, size=48, epochs=3, batch_size=32, task="regions",
                                    width=16)})

#: the papers' recipes on PASCAL VOC 2012 + SBD (``make voc``), per network, each named for its source;
#: where our loop has no exact equivalent the nearest is taken and said so
VOC_RECIPES = {
    # OAA (OAA-PyTorch train.sh / train_iam.sh + our "official" presets: its optimizer, gate and
    # losses): batch 5, lr 1e-3, 15 epochs; the paper's 321 px views (the PyTorch scripts resize to
    # 256); "step" is x0.1 after 2/3 of the steps, the scripts' decay points are epochs 5 and 10
    "vgg16": {"ClassifierConfig": {"preset": "official", "crop_size": 321, "batch_size": 5, "epochs": 15, "lr": 1e-3,
                                   "schedule": "step"},
              "OAAPlusConfig": {"preset": "official", "crop_size": 321, "batch_size": 5, "epochs": 15, "lr": 1e-3,
                                "schedule": "step"}},
    # AMR (JayQine/AMR run_sample.py: cam_crop_size 512, cam_batch_size 16, cam_num_epoches 8,
    # cam_learning_rate 0.01, cam_weight_decay 1e-4, poly schedule) on the official network: ResNet-50
    # at output stride 16 with no extra head (net/resnet50_cam.py, net/resnet50_amr.py), the
    # spotlight branch the CAM network trained with the same recipe; official make_cam inference
    "resnet50": {"ClassifierConfig": {"crop_size": 512, "batch_size": 16, "epochs": 8, "lr": 0.01, "weight_decay": 1e-4,
                                      "schedule": "poly", "augment": "flip_scale_crop", "output_stride": 16, "head_convs": 0},
                 "AMRConfig": {"preset": "official", "crop_size": 512, "batch_size": 16, "epochs": 8, "lr": 0.01,
                               "schedule": "poly", "augment": "flip_scale_crop", "output_stride": 16, "head_convs": 0,
                               "inference": "official"}},
}

#: PASCAL VOC 2012 + SBD with the papers' recipes (the research path): OAA and OAA+ on VGG16, AMR on
#: ResNet-50, ImageNet weights; pseudo labels from the user's saliency maps as the official gen_gt.py;
#: DeepLab-LargeFOV (VGG16) on them: batch 20, lr 1e-3, weight decay 5e-4, 321 px crops, 11 epochs of
#: train_aug (its VOC solver's 6,000 iterations of 20 images: 11.3 epochs)
VOC = Profile(
    "voc", {}, DEFAULT_PRETRAIN,
    {"ClassifierConfig": {"backbone": "vgg16"}, "OAAPlusConfig": {"backbone": "vgg16"}, "AMRConfig": {"backbone": "resnet50"},
     "PseudoLabelConfig": {"mode": "saliency", "attention_prep": "official"},
     "SegmentationConfig": {"network": "deeplab_largefov", "crop_size": 321, "batch_size": 20, "epochs": 11, "lr": 1e-3,
                            "weight_decay": 5e-4, "schedule": "step", "augment": "flip_scale_crop"}},
    reports="reports/voc", note="PASCAL VOC 2012 + SBD with the papers' recipes", default_variant="",
    recipes=VOC_RECIPES)

#: the VOC job at smoke size (the rehearsal in the test suite): the same stages, grids, splits and
#: inference on the tiny backbone (the quick profile's pretraining), one epoch each, 64 px crops, one
#: climbing iteration at scales 0.5 and 0.25 (a CPU minute); numbers are a smoke test
VOC_QUICK = Profile(
    "voc-quick", {}, QUICK.pretrain,
    {"TrainConfig": {"epochs": 1, "batch_size": 4, "crop_size": 64, "num_workers": 0},
     "ClassifierConfig": {"n_snapshots": 2},
     "AMRConfig": {"preset": "official", "inference": "official", "adv_iter": 1, "cam_scales": (0.5, 0.25)},
     "PseudoLabelConfig": {"mode": "saliency", "attention_prep": "official"},
     "SegmentationConfig": {"network": "small"}},
    reports="reports/voc-quick", note="the VOC job at smoke size: tiny backbone, one epoch a stage (a smoke test)",
    default_variant="", smoke=True)

PROFILES = {p.name: p for p in (FULL, QUICK, VOC, VOC_QUICK)}


def resolve_profile(quick: "bool | int | str | Profile" = False, announce: bool = False) -> Profile:
    """The one place that decides the profile: ``quick`` (a bool, 0/1, a profile or its name), or
    ``WSSS_QUICK=1`` in the environment, which forces quick (a profile that is already quick, e.g. the
    quick profile with another pretraining task, is kept as given). With ``announce``, say so."""
    if isinstance(quick, Profile):
        asked = quick
    elif isinstance(quick, str) and quick in PROFILES:
        asked = PROFILES[quick]
    elif isinstance(quick, bool) or quick in (0, 1):
        asked = QUICK if quick else FULL
    else:
        raise ValueError(f"parameter quick={quick!r} is invalid: expected True or False, or a profile name: "
                         + ", ".join(map(repr, PROFILES)))
    forced = env_flag(QUICK_ENV)
    # a quick profile of its own stays itself; the VOC job becomes its smoke-size version
    profile = (VOC_QUICK if asked.name == VOC.name else QUICK) if forced and not asked.quick else asked
    if profile.quick and announce:
        print(f"quick mode: {profile.note}" + (f" (forced by {QUICK_ENV}={os.environ.get(QUICK_ENV)})"
                                               if forced and not asked.quick else ""))
    return profile


__all__ = ["EMBEDDED_PREFIX", "FULL", "VOC", "VOC_QUICK", "VOC_RECIPES", "MINI_PRETRAIN", "MINI_NETWORK", "PROFILES", "Profile", "QUICK", "QUICK_ENV", "resolve_profile"]
