"""Dense CRF post-processing (Krähenbühl and Koltun's fully connected CRF) of segmentation scores.

Uses ``pydensecrf2`` (the maintained fork of ``pydensecrf`` that builds on Python 3.11; the
original ``pydensecrf`` does not install there). Parameters default to the ones DeepLab's PyTorch
re-implementation uses on VOC (the OAA authors' segmentation code): 10 mean-field iterations,
Gaussian kernel ``w=3, xy std 1``, bilateral kernel ``w=4, xy std 67, rgb std 3``.
"""

from __future__ import annotations

import numpy as np

CRF_DEFAULTS = {"iter_max": 10, "pos_w": 3.0, "pos_xy_std": 1.0, "bi_w": 4.0, "bi_xy_std": 67.0, "bi_rgb_std": 3.0}


def crf_available() -> bool:
    try:
        import pydensecrf.densecrf  # noqa: F401  # lazy: optional: is pydensecrf2 installed?
    except ImportError:
        return False
    return True


def dense_crf(image: np.ndarray, probs: np.ndarray, iter_max: int = 10, pos_w: float = 3.0, pos_xy_std: float = 1.0,
              bi_w: float = 4.0, bi_xy_std: float = 67.0, bi_rgb_std: float = 3.0) -> np.ndarray:
    """Refine ``C x H x W`` class probabilities with the image (``H x W x 3`` uint8); returns
    ``C x H x W`` probabilities after ``iter_max`` mean-field steps."""
    try:
        import pydensecrf.densecrf as dcrf  # lazy: optional: absent on some machines (the except clause says what then)
        from pydensecrf.utils import \
            unary_from_softmax  # lazy: optional: absent on some machines (the except clause says what then)
    except ImportError:
        raise ImportError("dense CRF needs the package pydensecrf2 (pip install pydensecrf2==1.1, in "
                          "requirements.lock); set crf=False to go without it") from None
    probs = np.asarray(probs, dtype=np.float32)
    c, h, w = probs.shape
    if image.shape[:2] != (h, w):
        raise ValueError(f"image is {image.shape[1]}x{image.shape[0]} but the scores are {w}x{h}")
    d = dcrf.DenseCRF2D(w, h, c)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    d.addPairwiseGaussian(sxy=pos_xy_std, compat=pos_w)
    d.addPairwiseBilateral(sxy=bi_xy_std, srgb=bi_rgb_std, rgbim=np.ascontiguousarray(image, dtype=np.uint8),
                           compat=bi_w)
    return np.array(d.inference(iter_max), dtype=np.float32).reshape(c, h, w)


__all__ = ["CRF_DEFAULTS", "crf_available", "dense_crf"]
