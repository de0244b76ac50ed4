"""Official checkpoints in, our models out: :func:`load_official_checkpoint`.

A researcher with the published weights gets CAMs, xi sweeps and CAM mIoU from our batched
inference (:func:`wsss_lib.formulas.attention.multiscale_attention`) instead of the official per-image
``make_cam`` loop. Supported kinds:

- ``"amr"``: the official AMR network (``net/resnet50_amr.py`` of the AMR repository): a ResNet-50
  spotlight branch and a ResNet-50 compensation branch with an official AMM inside every
  bottleneck (after ``bn3``, before the residual addition), both at strides (2, 2, 2, 1) without
  dilation, each with a bias-free 1x1 classifier conv (``classifier``, ``classifier2``). Ours:
  :class:`~wsss_lib.models.amr.AMRNet` with ``placement="bottleneck"``, AMM ``form="official"``,
  no head convs.
- ``"oaa"``: the official OAA-PyTorch VGG16 classifier (``models/vgg.py``) or OAA+ integral attention
  model (``models/vgg1.py``; the same layers): VGG16 ``features`` (pool4 at stride 1, conv5
  dilated by 2) + ``extra_convs`` (three 3x3 convs with ReLU, then a 1x1 class conv). Ours:
  :class:`~wsss_lib.models.cam.CAMNet` on the ``vgg16`` backbone.

Known differences of the official code that loading cannot carry (stated so results can say so):
the official ``Net.train`` of AMR never calls ``nn.Module.train``, so the AMM's ``BatchNorm2d(1)``
stays in training mode (batch statistics) even in ``make_cam``; ours follows ``model.eval()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from wsss_lib.models.amm import AMM
from wsss_lib.models.amr import AMRNet, insert_amm
from wsss_lib.models.backbones import resnet_backbone, vgg16_backbone
from wsss_lib.models.cam import CAMNet

KINDS = ("amr", "oaa")
#: keys of the official AMR state dict that alias the same tensors under a second name
_AMR_ALIASES = ("stage1.", "stage2.", "stage3.", "stage4.", "stage2_1.", "stage2_2.", "stage2_3.", "stage2_4.",
                "backbone.", "backbone2.", "newly_added.")
_RESNET_STAGE = {"conv1.": "0.0.", "bn1.": "0.1.", "layer1.": "0.4.", "layer2.": "1.", "layer3.": "2.", "layer4.": "3."}


class OfficialCheckpointError(ValueError):
    """An official checkpoint that does not match the expected network (names the key)."""


def _read_state_dict(path_or_state_dict) -> tuple[dict, str]:
    if isinstance(path_or_state_dict, Mapping):
        sd, where = dict(path_or_state_dict), "the given state dict"
    else:
        path = Path(path_or_state_dict)
        if not path.is_file():
            raise FileNotFoundError(f"official checkpoint {path} does not exist")
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - corrupt or foreign file
            raise OfficialCheckpointError(f"could not read official checkpoint {path}: {type(e).__name__}: {e}") from e
        where = str(path)
    for wrapper in ("state_dict", "model"):
        if wrapper in sd and isinstance(sd[wrapper], Mapping):
            sd = dict(sd[wrapper])
    if sd and all(k.startswith("module.") for k in sd):  # saved from nn.DataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    if not sd:
        raise OfficialCheckpointError(f"{where} holds no tensors")
    return sd, where


def _map_resnet(key: str, with_amm: bool) -> str | None:
    """``conv1.weight`` / ``layer2.0.conv1.weight``... (official ResNet names) -> our backbone key."""
    for off, ours in _RESNET_STAGE.items():
        if key.startswith(off):
            rest = key[len(off):]
            if with_amm and off.startswith("layer"):
                block, sub = rest.split(".", 1)
                if sub.startswith("bn3."):
                    rest = f"{block}.bn3.0.{sub[4:]}"
                elif sub.startswith("amm."):
                    return None  # handled by the AMM mapping
            return "backbone." + ours + rest
    return None


def _amr_to_ours(sd: dict) -> tuple[dict, list[str]]:
    out, unexpected = {}, []
    amm_prefixes = sorted({k.split(".amm.")[0] for k in sd if k.startswith("resnet50_2.") and ".amm." in k})
    for p in amm_prefixes:  # resnet50_2.layerL.B
        layer_block = p[len("resnet50_2."):]
        stage_key = _map_resnet(layer_block + ".bn3.x", with_amm=True)  # backbone.S.B.bn3.0.x
        base = stage_key[: -len("bn3.0.x")] + "bn3.1."
        try:
            mapped = AMM.official_to_ours(sd, p + ".amm.")
        except KeyError as e:
            raise OfficialCheckpointError(str(e.args[0])) from None
        out.update({"compensation." + base + k: v for k, v in mapped.items()})
    for k, v in sd.items():
        if k.startswith(_AMR_ALIASES):
            continue
        if k == "classifier.weight":
            out["spotlight.classifier.weight"] = v
        elif k == "classifier2.weight":
            out["compensation.classifier.weight"] = v
        elif k.startswith(("resnet50.", "resnet50_2.")):
            branch, rest = k.split(".", 1)
            if branch == "resnet50_2" and ".amm." in k:  # mapped above, with its AMM
                continue
            m = _map_resnet(rest, with_amm=branch == "resnet50_2")
            if m is None:
                unexpected.append(k)
            else:
                out[("compensation." if branch == "resnet50_2" else "spotlight.") + m] = v
        else:
            unexpected.append(k)
    return out, unexpected


def _oaa_to_ours(sd: dict, model: CAMNet) -> tuple[dict, list[str]]:
    # official features.<i> is the i-th layer of our backbone's stages, counted across stages
    flat = [f"backbone.{s}.{j}" for s, stage in enumerate(model.backbone) for j in range(len(stage))]
    head = {"extra_convs.0": "head.0", "extra_convs.2": "head.2", "extra_convs.4": "head.4",
            "extra_convs.6": "classifier"}
    out, unexpected = {}, []
    for k, v in sd.items():
        mod, _, param = k.rpartition(".")
        if mod.startswith("features.") and mod[len("features."):].isdigit() and int(mod[9:]) < len(flat):
            out[f"{flat[int(mod[9:])]}.{param}"] = v
        elif mod in head:
            out[f"{head[mod]}.{param}"] = v
        else:
            unexpected.append(k)
    return out, unexpected


def build_official_amr(num_classes: int = 20) -> AMRNet:
    """Our AMR network in the official architecture (random weights; see the module docstring)."""
    def branch() -> CAMNet:
        bb = resnet_backbone(50, 16, dilate=False)
        return CAMNet(bb, num_classes, num_head_convs=0, classifier_bias=False)

    comp = insert_amm(branch(), "bottleneck", form="official")
    return AMRNet(branch(), comp, freeze_spotlight=True)


def build_official_oaa(num_classes: int = 20) -> CAMNet:
    """Our CAM network in the official OAA/OAA+ VGG16 architecture (random weights)."""
    return CAMNet(vgg16_backbone(), num_classes, head_channels=512, num_head_convs=3)


def _num_classes(sd: dict, key: str, where: str) -> int:
    if key not in sd:
        raise OfficialCheckpointError(f"{where}: missing key {key!r} (the class conv): not an official checkpoint "
                                      "of this kind")
    return int(sd[key].shape[0])


def load_official_checkpoint(path_or_state_dict, kind: str) -> nn.Module:
    """Load an official AMR (``kind="amr"``) or OAA/OAA+ (``kind="oaa"``) checkpoint into our model.

    ``path_or_state_dict``: a ``.pth`` file or a state dict (optionally wrapped in ``{"state_dict":
    ...}`` or ``{"model": ...}``, optionally with DataParallel's ``module.`` prefix). The number of
    classes is read from the class conv. Raises :class:`OfficialCheckpointError` naming the first
    missing or unexpected key (official name) or the first shape mismatch. Returns the model in
    eval mode: ``AMRNet`` (two branches) or ``CAMNet``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    sd, where = _read_state_dict(path_or_state_dict)
    if kind == "amr":
        model = build_official_amr(_num_classes(sd, "classifier.weight", where))
        mapped, unexpected = _amr_to_ours(sd)
    else:
        model = build_official_oaa(_num_classes(sd, "extra_convs.6.weight", where))
        mapped, unexpected = _oaa_to_ours(sd, model)
    if unexpected:
        raise OfficialCheckpointError(f"{where}: unexpected key {unexpected[0]!r} for an official {kind!r} "
                                      f"checkpoint ({len(unexpected)} unexpected in all)")
    ours = model.state_dict()
    back = _official_names(sd, mapped)
    missing = [k for k in ours if k not in mapped]
    if missing:
        raise OfficialCheckpointError(f"{where}: missing a tensor for {missing[0]!r} of our model "
                                      f"({len(missing)} missing in all): not a complete official {kind!r} checkpoint")
    for k, v in mapped.items():
        if k not in ours:
            raise OfficialCheckpointError(f"{where}: key {back.get(k, k)!r} has no place in the official {kind!r} network")
        if tuple(v.shape) != tuple(ours[k].shape):
            raise OfficialCheckpointError(f"{where}: shape mismatch for {back.get(k, k)!r}: checkpoint "
                                          f"{tuple(v.shape)}, network {tuple(ours[k].shape)}")
    model.load_state_dict(mapped, strict=True)
    return model.eval()


def _official_names(sd: dict, mapped: dict) -> dict:
    """Our key -> the official key it came from (for error messages), matched by tensor identity."""
    by_id = {}
    for k, v in sd.items():
        by_id.setdefault(id(v), k)
    return {ours: by_id.get(id(v), ours) for ours, v in mapped.items()}


__all__ = ["KINDS", "OfficialCheckpointError", "build_official_amr", "build_official_oaa", "load_official_checkpoint"]
