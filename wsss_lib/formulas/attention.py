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
    (the guard of docs/design.md section 3) instead of dividing by a non-positive number.
    """
    mx = F.amax(dim=(-2, -1), keepdim=True)
    pos = mx > eps
    return torch.where(pos, torch.relu(F) / torch.where(pos, mx, torch.ones_like(mx)), torch.zeros_like(F))


def _as_tuple(out) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


@torch.no_grad()
def multiscale_attention(forward, images: torch.Tensor, scales=(1.0,), flip: bool = False,
                         out_size: tuple[int, int] | None = None, amp: bool = False,
                         return_logits: bool = False):
    """Batched multi-scale (+ horizontal flip) attention for all classes at once.

    ``forward(x)`` returns class-aware maps ``F`` (or a tuple of them, e.g. AMR's two branches);
    ``images`` are normalized ``B x 3 x H x W``. For every scale the batch (and its mirror, in the
    same forward pass) is resized, ``ReLU(F)`` is resized to ``out_size`` (default: the image size),
    un-flipped and summed; the sum is max-normalized per (image, class) as in eq. 2. Returns
    ``B x K x out_size`` (or a tuple). ``amp`` runs the network in bf16 autocast on CUDA.
    With ``return_logits``, also the class scores (eq. 1) of the un-flipped images at the first
    scale: ``(maps, logits)``.
    """
    b, _, h, w = images.shape
    out_size = tuple(out_size) if out_size is not None else (h, w)
    acc: list[torch.Tensor] | None = None
    use_amp = amp and images.device.type == "cuda"
    for s in scales:
        x = images if s == 1.0 else torch.nn.functional.interpolate(
            images, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear", align_corners=False)
        if flip:
            x = torch.cat([x, x.flip(-1)])
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=use_amp):
            outs = _as_tuple(forward(x))
        if return_logits and acc is None:
            logits = tuple(class_scores(F.float()[:b]) for F in outs)
        maps = []
        for F in outs:
            F = torch.relu(F.float())
            if F.shape[-2:] != out_size:
                F = torch.nn.functional.interpolate(F, size=out_size, mode="bilinear", align_corners=False)
            maps.append(F[:b] + F[b:].flip(-1) if flip else F)
        acc = maps if acc is None else [a + m for a, m in zip(acc, maps)]
    result = tuple(attention_maps(a) for a in acc)
    result = result if len(result) > 1 else result[0]
    if return_logits:
        return result, (logits if len(logits) > 1 else logits[0])
    return result
