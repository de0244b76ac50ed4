"""Class scores and attention maps from the class-aware conv output ``F`` (OAA section 3.1).

One function per formula:

- :func:`class_scores`: OAA eq. 1 without the sigmoid, ``GAP(F_c)`` (the logits; the sigmoid is
  inside the BCE-with-logits loss and :func:`class_probabilities`).
- :func:`attention_maps`: OAA eq. 2, ``A_c = ReLU(F_c) / max(F_c)``.
"""

from __future__ import annotations

import torch


def class_scores(F: torch.Tensor) -> torch.Tensor:
    """OAA eq. 1 before the sigmoid: global average pooling of ``F`` (``B x C x h x w -> B x C``)."""
    return F.mean(dim=(2, 3))


def class_probabilities(F: torch.Tensor) -> torch.Tensor:
    """OAA eq. 1: ``p_c = sigmoid(GAP(F_c))``."""
    return torch.sigmoid(class_scores(F))


def attention_maps(F: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """OAA eq. 2: ``A_c = ReLU(F_c) / max(F_c)``, the max taken over the spatial positions of each
    (image, class) map. A map whose maximum is <= 0 has no positive evidence: it becomes all zeros
    (the guard DESIGN.md asks for) instead of dividing by a non-positive number.
    """
    mx = F.amax(dim=(-2, -1), keepdim=True)
    pos = mx > eps
    return torch.where(pos, torch.relu(F) / torch.where(pos, mx, torch.ones_like(mx)), torch.zeros_like(F))
