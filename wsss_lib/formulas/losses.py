"""Every loss of the suite, one function per equation.

Shapes: ``F`` are class-aware maps or logits (``B x K [x h x w]``, before any sigmoid), ``p`` are
soft labels in ``[0, 1]`` of the same shape, ``labels`` multi-hot ``B x K``. ``q = sigmoid(F)`` is
never formed: ``log q = logsigmoid(F)`` and ``log(1 - q) = logsigmoid(-F)`` are exact and stable.

OAA (Jiang et al. 2019)
    - :func:`multilabel_bce`: eq. 1's classification loss (also AMR eq. 5 for one branch).
    - :func:`mce_loss`: eq. 6, multi-label cross entropy with soft labels (per class, averaged).
    - :func:`hybrid_loss`: eqs. 7-9 in the paper's per-class form, with the eq. 8 misprint handled.
    - :func:`hybrid_loss_official`: the official code's form, one normalization per image.
AMR (Qin et al. 2022) and the reproduction report (seed 004)
    - :func:`amr_classification_loss`: eq. 5, the mean of the two branches' BCE.
    - :func:`cps_loss`: eq. 6, L1 between the two branches' CAMs.
    - :func:`amr_total_loss`: eq. 7 with configurable weights (paper 1/1; official 0.5/0.5/0.05).
    - :func:`area_regularizer`: report eq. 10, the mean activation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as Fn


def multilabel_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """OAA eq. 1 loss / AMR eq. 5 for one branch: mean over images and classes of
    ``-(y log sigma(s) + (1-y) log(1 - sigma(s)))``."""
    return Fn.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def _per_class_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the pixels in ``mask``, per (image, class); 0 where the mask is empty."""
    n = mask.sum(dim=(-2, -1))
    s = (x * mask).sum(dim=(-2, -1))
    return torch.where(n > 0, s / n.clamp_min(1), torch.zeros_like(s))


def mce_loss(F: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """OAA eq. 6 (multi-label cross entropy with soft labels), for each class c:
    ``-(1/|N|) sum_j [p_j log q_j + (1 - p_j) log(1 - q_j)]`` over all pixels N; averaged over the
    classes and the images of the batch.

    The paper sums the classes (eq. 9 sums the hybrid loss); the mean divides that by the number of
    classes K, a constant: the step size stays that of the classifier's BCE (a mean over classes)
    and of the official per-image normalization whatever K is (8 here, 20 on VOC), see
    :data:`wsss_lib.stages.oaa_plus.OAA_PLUS_LR`."""
    ll = p * Fn.logsigmoid(F) + (1 - p) * Fn.logsigmoid(-F)
    return -ll.mean(dim=(-2, -1)).mean(dim=1).mean()


def hybrid_loss(F: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """OAA eqs. 7-9, the paper's per-class form (its literal reading: each class normalized on its own).

    For each image and class c: ``N+`` = pixels with ``p > 0``, ``N-`` = pixels with ``p == 0``;
    eq. 7 ``L+ = -(1/|N+|) sum_{N+} p log q``; eq. 8 ``L- = -(1/|N-|) sum_{N-} log(1 - q)``.
    Eq. 8 as printed multiplies by ``p``, which is 0 on ``N-`` by definition, so the term would
    vanish; the intended (and the official code's) term has no ``p`` factor. Eq. 9 sums
    ``L+ + L-`` over classes; here the classes are averaged (eq. 9 divided by K, a constant, as
    :func:`mce_loss`), then the images. An empty set contributes 0.
    """
    pos = (p > 0).to(F.dtype)
    neg = 1 - pos
    l_pos = _per_class_mean(-p * Fn.logsigmoid(F), pos)
    l_neg = _per_class_mean(-Fn.logsigmoid(-F), neg)
    return (l_pos + l_neg).mean(dim=1).mean()


def hybrid_loss_official(F: torch.Tensor, p: torch.Tensor, pos_threshold: float = 0.001,
                         eps: float = 1e-8) -> torch.Tensor:
    """The official OAA+ code's hybrid loss (``ExLoss``) for each image, averaged over the images:
    one normalization over all classes and pixels of the image (not per class, as eqs. 7-9 read), and
    ``p > 0.001`` (not ``p > 0``) counts as positive:
    ``-(1/|P|) sum_P p log q  -  (1/|N|) sum_N log(1 - q + 1e-8)``.

    Per image is how the code behind the paper's figures normalizes: the Caffe layer
    (``sigmoid_split_pn.py``) sees one image at a time (batch 1, gradients averaged over
    ``iter_size``); OAA-PyTorch's ``ExLoss`` normalizes once over its batch of 5.

    As the official code, ``q = sigmoid(F)`` is formed in the input's precision and the negative term
    takes ``log(1 - q + eps)``: once ``q`` rounds to 1 (float32: ``F`` above about 16.6) a pixel's
    negative loss stops at ``-log(eps)`` (about 18.4) instead of growing like ``F``. The positive term
    is ``logsigmoid``, which equals the official ``log(sigmoid(F))`` wherever that is finite.
    Masks are multiplied, not indexed: no host synchronisation on a GPU."""
    pos = (p > pos_threshold).to(F.dtype)
    neg = 1 - pos
    dims = tuple(range(1, F.dim()))  # each image's classes and pixels
    l_pos = (-p * Fn.logsigmoid(F) * pos).sum(dims) / pos.sum(dims).clamp_min(1)
    l_neg = (-torch.log(1 - torch.sigmoid(F) + eps) * neg).sum(dims) / neg.sum(dims).clamp_min(1)
    return (l_pos + l_neg).mean()


OAA_PLUS_LOSSES = {"mce": mce_loss, "hl": hybrid_loss, "hl_official": hybrid_loss_official}


def amr_classification_loss(logits_s: torch.Tensor, logits_c: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AMR eq. 5: ``L_cls = (L_cls^s + L_cls^c) / 2``, each a multi-label BCE."""
    return 0.5 * (multilabel_bce(logits_s, labels) + multilabel_bce(logits_c, labels))


def cps_loss(M_s: torch.Tensor, M_c: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """AMR eq. 6: ``L_cps = ||M_s - M_c||_1``, as a mean absolute difference. With ``labels``, only
    the classes present in each image count (the maps of absent classes are not CAMs of anything)."""
    d = (M_s - M_c).abs()
    if labels is None:
        return d.mean()
    m = labels.to(d.dtype)[..., None, None].expand_as(d)
    return (d * m).sum() / m.sum().clamp_min(1)


def area_regularizer(P: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Report eq. 10: ``(1/KHW) sum_k sum_h sum_w P_k(h, w)``, the mean activation of the maps ``P``
    (``B x K x H x W``), averaged over images; with ``labels``, over the present classes only."""
    if labels is None:
        return P.mean()
    m = labels.to(P.dtype)[..., None, None].expand_as(P)
    return (P * m).sum() / m.sum().clamp_min(1)


def amr_total_loss(l_cls_s: torch.Tensor, l_cls_c: torch.Tensor, l_cps: torch.Tensor,
                   w_s: float = 0.5, w_c: float = 0.5, w_cps: float = 1.0,
                   l_area: torch.Tensor | None = None, w_area: float = 0.0) -> torch.Tensor:
    """AMR eq. 7 ``L_all = L_cls + L_cps`` with weights: the paper's eq. 5 + 6 is
    ``w_s = w_c = 0.5, w_cps = 1``; the official code uses ``0.5 / 0.5 / 0.05``. The report's area
    regularizer (eq. 10) adds ``w_area * l_area``."""
    total = w_s * l_cls_s + w_c * l_cls_c + w_cps * l_cps
    if l_area is not None and w_area:
        total = total + w_area * l_area
    return total
