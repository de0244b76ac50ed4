"""AMR's official inference (``step/make_cam.py`` of the AMR repository), batched.

The official code reads each branch of an AMR network with Grad-CAM under *adversarial climbing*
(AdvCAM, Lee et al. 2021): for every image, scale and present class it runs the image and its
mirror as one batch of two, and for ``adv_iter`` iterations

1. takes the Grad-CAM of the class at the layer that feeds the classifier (ReLU of the feature map
   weighted by the summed positive gradient of the class's summed ReLU score, divided by the
   number of positive gradient entries), adds the image's map and the mirror's flipped back, and
   adds that to the class's map of this scale (times a scale factor, below);
2. climbs: one step of size ``ad_stepsize`` along the image gradient of
   ``score_c - sum_{k != c} score_k - ad_coeff * sum(|map - first map| * mask)`` (scores: mean of
   the ReLU class maps; the mask keeps the pixels whose map exceeds ``score_th`` times its maximum),
   the gradient divided by its largest absolute value, the image clamped to its own range.

Scales are processed in the official order (the second listed scale first); that scale runs half
the iterations when ``adv_iter > 10`` (5 when ``6 <= adv_iter <= 10``) with a factor of 2 (or
``iterations / 5``), and the official loop keeps that factor for every later scale. Each scale's
maps are upsampled (bilinear) to the image size rounded up to a multiple of 16 and cropped
(``high_res``), or to the image size / 4 rounded up (``strided``, the maps IRN trains on), summed
over scales, and divided by their maximum + 1e-5.

Batched here across images, classes and scales of one size: the pairs are independent (the AMM's
batch statistics and its BatchNorm are taken per image-and-mirror pair, as the official batch of two
does: :func:`wsss_lib.models.amm.grouped_statistics`), and the Grad-CAM of the layer feeding a 1x1
classifier has a closed form: its gradient is the classifier's row for the class where the class
map is positive, so the map is ``ReLU(F_c - b_c)`` times ``n_b / (P_c * (n_0 + n_1))`` (``n_b``:
positive pixels of the class map in image ``b`` of the pair, ``P_c``: positive entries of the
classifier's row). ``tests/test_official_inference.py`` restates the official loop, hooks and all,
and compares maps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as Fn
from PIL import Image
from tqdm.auto import tqdm

from wsss_lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from wsss_lib.models.amm import grouped_statistics

#: the official defaults (AMR ``run_sample.py``)
OFFICIAL_SCALES = (1.0, 0.5, 0.75, 1.25, 1.5, 1.75, 2.0)


@dataclass(frozen=True)
class ClimbSettings:
    """Adversarial climbing as the official ``make_cam`` (defaults: ``run_sample.py``)."""

    adv_iter: int = 27
    ad_coeff: float = 7.0
    ad_stepsize: float = 0.08
    score_th: float = 0.5
    scales: tuple[float, ...] = OFFICIAL_SCALES

    def schedule(self) -> list[tuple[int, int, float]]:
        """``(scale index, iterations, factor)`` in the official processing order."""
        n = len(self.scales)
        order = ([1, 2, 0] + list(range(3, n))) if n > 2 else ([1, 0] if n == 2 else [0])
        out, factor = [], 1.0
        for idx in order:
            iters = self.adv_iter
            if idx == 1:
                if self.adv_iter > 10:
                    iters, factor = self.adv_iter // 2, 2.0
                elif self.adv_iter < 6:
                    factor = 1.0
                else:
                    iters = 5
                    factor = iters / 5
            out.append((idx, iters, factor))
        return out


def strided_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    return ((size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1)


def rescale_uint8(image: np.ndarray, scale: float) -> np.ndarray:
    """``H x W x 3`` uint8 resized by ``scale`` with PIL's bicubic filter to the rounded size (the
    official ``pil_rescale``); scale 1 returns the image itself."""

    if scale == 1:
        return image
    h, w = image.shape[:2]
    size = (int(np.round(h * scale)), int(np.round(w * scale)))
    if size == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize(size[::-1], Image.BICUBIC))


def normalize_uint8(image: np.ndarray) -> torch.Tensor:
    """``H x W x 3`` uint8 -> ``3 x H x W`` float32, ImageNet mean and std (the official
    ``TorchvisionNormalize``: computed in float64, stored in float32)."""
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    return torch.from_numpy(((image / 255.0 - mean) / std).astype(np.float32).transpose(2, 0, 1).copy())


def normalize_batch(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``P x H x W x 3`` uint8 (on any device) -> ``P x 3 x H x W`` in ``dtype``: :func:`normalize_uint8`
    on a batch where it lies (on the GPU: one copy of uint8 instead of four bytes a value), with the
    same arithmetic (float64, then float32), so the values are identical."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64, device=images.device)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64, device=images.device)
    x = ((images.double() / 255.0 - mean) / std).float()
    return x.permute(0, 3, 1, 2).to(dtype).contiguous()


#: input pixels per forward of the climb (a pair is an image and its mirror): 2**24 holds 2 pairs of a
#: 1000 x 750 image at scale 2.0, 32 pairs at 512 x 512, the whole 64-pair chunk of small images
PAIR_PIXEL_BUDGET = 2 ** 24


def pairs_per_chunk(size: tuple[int, int], scale: float, max_pairs: int, max_pixels: int) -> int:
    """How many image-and-mirror pairs of an image of ``size`` go into one forward at ``scale``:
    as many as ``max_pixels`` input pixels hold (at least one), at most ``max_pairs``."""
    h, w = (max(1, round(v * scale)) for v in size)
    return max(1, min(max_pairs, max_pixels // (2 * h * w)))


def climb_grad_cam(branch: torch.nn.Module, pairs: torch.Tensor, classes: torch.Tensor, iterations: int,
                   factor: float, s: ClimbSettings, autocast: torch.dtype | None = None) -> torch.Tensor:
    """The official per-class loop of one scale for ``P`` independent pairs at once.

    ``pairs``: ``P x 2 x 3 x H x W`` (each image and its mirror); ``classes``: ``P`` class indices;
    ``branch(x) -> class maps`` (a :class:`~wsss_lib.models.cam.CAMNet`: 1x1 classifier last).
    Returns the accumulated maps ``P x h x w`` (the image's map plus the mirror's flipped back,
    summed over the iterations, times ``factor``). ``autocast``: the network's forward (and its
    backward) in that dtype (bf16 on a GPU); the images, the gradient step and the maps stay in the
    images' dtype."""
    p = pairs.shape[0]
    rows = torch.arange(p, device=pairs.device)
    weight = branch.classifier.weight.detach().flatten(1)  # K x C
    bias = branch.classifier.bias
    bias_c = bias.detach()[classes].to(pairs.dtype) if bias is not None else torch.zeros(p, device=pairs.device, dtype=pairs.dtype)
    pos_entries = (weight[classes] > 0).sum(1).to(pairs.dtype)  # P
    x = pairs.detach().flatten(0, 1)
    acc = init = None
    with grouped_statistics(branch, 2):
        for _ in range(iterations):
            x.requires_grad_(True)
            with torch.autocast(x.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                out = branch(x)
            out = out.to(x.dtype)  # 2P x K x h x w
            k, h, w = out.shape[1:]
            out_c = out.view(p, 2, k, h, w)[rows, :, classes]  # P x 2 x h x w
            with torch.no_grad():
                n = (out_c > 0).sum((-2, -1)).to(out.dtype)  # P x 2
                scale = n / (pos_entries[:, None] * n.sum(1, keepdim=True) + 1e-12)
            g = Fn.relu(out_c - bias_c.view(p, 1, 1, 1)) * scale[..., None, None]
            regions = g[:, 0] + g[:, 1].flip(-1)  # P x h x w
            if init is None:
                init = regions.detach()
                acc = torch.zeros_like(init)
            acc += regions.detach() * factor
            logit = Fn.relu(out).mean((-2, -1)).view(p, 2, k)
            logit_loss = -2 * logit[rows, :, classes].sum(1) + logit.sum((1, 2))  # per pair
            with torch.no_grad():
                peak = regions.amax((-2, -1), keepdim=True)
                mask = (regions / peak > s.score_th).to(regions.dtype)  # 0/0 = nan: not > th
            l_ad = ((regions - init).abs() * mask).sum((-2, -1))
            loss = (-logit_loss - l_ad * s.ad_coeff).sum()  # pairs are independent: each gets its own gradient
            grad, = torch.autograd.grad(loss, x)
            with torch.no_grad():
                gp = grad.view(p, -1)
                xp = x.detach().view(p, -1)
                step = gp / (gp.abs().amax(1, keepdim=True) + 1e-12)
                lo, hi = xp.amin(1, keepdim=True), xp.amax(1, keepdim=True)
                x = torch.maximum(torch.minimum(xp + s.ad_stepsize * step, hi), lo).view_as(x)
    return acc


def official_cams(model, images: Sequence[np.ndarray], classes: list[list[int]], s: ClimbSettings = ClimbSettings(),
                  device: torch.device | str = "cpu", max_pairs: int = 64, progress: bool = False,
                  branches: tuple[str, ...] = ("spotlight", "compensation"),
                  dtype: torch.dtype = torch.float32, max_pixels: int = PAIR_PIXEL_BUDGET,
                  autocast: torch.dtype | None = None) -> list[dict]:
    """The official ``make_cam`` outputs of every image, for each AMR branch: per image a dict
    ``{branch: {"high_res": n x H x W, "strided": n x ceil(H/4) x ceil(W/4)}}`` for its ``n`` present
    classes (in ``classes[i]``'s order), each divided by its maximum + 1e-5.

    ``images``: ``H x W x 3`` uint8 arrays, or any sequence that loads them on indexing (each is read
    once per branch and scale, never all held); images of one size are batched together: at most
    ``max_pairs`` image-and-mirror pairs per forward, and at most ``max_pixels`` input pixels (image and
    mirror) per forward at every scale (:func:`pairs_per_chunk`), so a large scale of a large image
    takes fewer pairs at once instead of running out of memory. ``dtype``: the images' (the model must
    match); ``autocast``: the network run in that dtype (:func:`climb_grad_cam`; bf16 on a GPU, checked
    against float64 on a subset by :func:`autocast_agreement`).

    The official maps are not continuous in the input: the Grad-CAM weight counts positive gradient
    entries and the climbing mask thresholds the map, so a rounding difference between two ways of
    summing (one pair per forward or many) can move a pixel across zero or across the threshold and
    change the climb. Comparisons with the official loop therefore run in float64."""

    device = torch.device(device)
    was_training = model.training
    model.eval()
    sched = s.schedule()
    out: list[dict] = [{} for _ in images]
    by_size: dict[tuple[int, int], list[int]] = {}
    for i in range(len(images)):
        if classes[i]:
            by_size.setdefault(tuple(images[i].shape[:2]), []).append(i)
    total = sum(len(classes[i]) for i in range(len(images))) * len(branches) * len(sched)
    bar = tqdm(total=total, desc="official AMR inference", leave=False, disable=not progress, unit="map")
    try:
        for branch_name in branches:
            branch = getattr(model, branch_name)
            for size, members in by_size.items():
                per_scale: dict[int, dict[int, torch.Tensor]] = {}
                for idx, iters, factor in sched:
                    jobs = [(i, c) for i in members for c in classes[i]]
                    maps = {}
                    step = pairs_per_chunk(size, s.scales[idx], max_pairs, max_pixels)
                    for start in range(0, len(jobs), step):
                        chunk = jobs[start:start + step]
                        # each image of the chunk read and resized once (an image's classes are adjacent),
                        # copied as uint8 and normalized on the device
                        uniq = list(dict.fromkeys(i for i, _ in chunk))
                        u8 = torch.from_numpy(np.stack([rescale_uint8(images[i], s.scales[idx]) for i in uniq]))
                        x = normalize_batch(u8.to(device, non_blocking=True), dtype)
                        x = x[torch.tensor([uniq.index(i) for i, _ in chunk], device=device)]
                        cls = torch.tensor([c for _, c in chunk], device=device)
                        acc = climb_grad_cam(branch, torch.stack([x, x.flip(-1)], 1), cls, iters, factor, s, autocast)
                        for (i, c), m in zip(chunk, acc.cpu()):
                            maps[(i, c)] = m
                        bar.update(len(chunk))
                    per_scale[idx] = maps
                for i in members:
                    out[i][branch_name] = assemble_maps(i, classes[i], size, per_scale, sched)
    finally:
        bar.close()
        model.train(was_training)
    return out


#: how many images :func:`autocast_agreement` runs in float64 against the autocast dtype
AGREEMENT_IMAGES = 8


def autocast_agreement(model, images: Sequence[np.ndarray], classes: list[list[int]], s: ClimbSettings,
                       device: torch.device | str, autocast: torch.dtype, n_images: int = AGREEMENT_IMAGES,
                       threshold: float = 0.3, max_pixels: int = PAIR_PIXEL_BUDGET) -> dict:
    """How far the ``autocast`` maps of :func:`official_cams` are from float64 ones, on the first
    ``n_images`` images with a present class: per branch, the mean and the largest absolute difference
    of the ``high_res`` maps (each in [0, 1]), and the share of pixels whose label agrees (background
    where every map is below ``threshold``, else the class of the largest map: the threshold rule of
    the pseudo labels). The climb is not continuous in its input (see :func:`official_cams`), so a
    difference is a changed climb somewhere, not only a rounding."""
    idx = [i for i in range(len(images)) if classes[i]][:n_images]
    sub_images, sub_classes = [images[i] for i in idx], [classes[i] for i in idx]
    ref_model = copy.deepcopy(model).double()
    ref = official_cams(ref_model, sub_images, sub_classes, s, device, dtype=torch.float64, max_pixels=max_pixels)
    del ref_model
    got = official_cams(model, sub_images, sub_classes, s, device, autocast=autocast, max_pixels=max_pixels)
    out = {"images": len(idx), "dtype": str(autocast).replace("torch.", "")}
    for branch in ref[0] if ref else ():
        diffs, agree, total = [], 0, 0
        for r, g in zip(ref, got):
            a, b = r[branch]["high_res"].float().cpu(), g[branch]["high_res"].float().cpu()
            diffs.append((a - b).abs().flatten())
            la = torch.where(a.amax(0) < threshold, -1, a.argmax(0))
            lb = torch.where(b.amax(0) < threshold, -1, b.argmax(0))
            agree += int((la == lb).sum())
            total += la.numel()
        d = torch.cat(diffs)
        out[branch] = {"mean_abs_diff": float(d.mean()), "max_abs_diff": float(d.max()),
                       "label_agreement": agree / max(total, 1)}
    return out


def assemble_maps(i: int, cls: list[int], size: tuple[int, int], per_scale: dict, sched) -> dict:
    """One image's maps of one branch: every scale's maps upsampled and summed in the official order,
    then each class divided by its maximum + 1e-5."""
    strided = strided_size(size, 4)
    up = tuple(16 * v for v in strided_size(size, 16))
    parts_s, parts_h = [], []
    for idx, _, _ in sched:
        cam = torch.stack([per_scale[idx][(i, c)] for c in cls])  # n x h x w
        parts_s.append(Fn.interpolate(cam[None], strided, mode="bilinear", align_corners=False)[0])
        parts_h.append(Fn.interpolate(cam[:, None], up, mode="bilinear", align_corners=False))
    s_sum = torch.stack(parts_s).sum(0)
    h_sum = torch.stack(parts_h).sum(0)[:, 0, :size[0], :size[1]]
    s_sum = s_sum / (Fn.adaptive_max_pool2d(s_sum, (1, 1)) + 1e-5)
    h_sum = h_sum / (Fn.adaptive_max_pool2d(h_sum, (1, 1)) + 1e-5)
    return {"high_res": h_sum, "strided": s_sum}


__all__ = ["AGREEMENT_IMAGES", "ClimbSettings", "OFFICIAL_SCALES", "assemble_maps", "autocast_agreement", "climb_grad_cam",
           "normalize_batch", "normalize_uint8", "official_cams",
           "rescale_uint8", "strided_size"]
