"""The OAA store (OAA section 3.2): one accumulated attention map per (image, present class).

Fusion strategies, one function each:

- :func:`fuse_max`: eq. 5, ``M_t = max(M_{t-1}, A_t)`` (the paper's default);
- :func:`fuse_ave`: eq. 10, ``M_t = ((t-1) M_{t-1} + A_t) / t``, where ``t`` counts the updates this
  (image, class) actually accepted, not epochs, *per pixel*: a view that saw only part of the image
  (random crop) updates only the pixels it saw, and each pixel's ``t`` counts the accepted views
  that saw it (``OAAStore.pixel_counts``), so a pixel first seen late starts at its first value
  instead of averaging in the zeros of the views that missed it.

Gates, deciding whether an (image, target class) attention map is accumulated at all:

- :func:`gate_paper` (default): the class's score is higher than every non-target class's score;
- :func:`gate_topk` (official PyTorch code): the class is among the top-k scores, k = number of
  labels of the image;
- :func:`gate_topk_prob` (the official code exactly): the top-k of the float32 *probabilities*
  ``sigmoid(s)``, in the order ``torch.argsort`` gives them: probabilities saturate at 1.0 for
  scores above about 16.6, and among such ties the order is argsort's, not the scores';
- :func:`gate_all`: always accumulate.

The official code also starts accumulating at the second epoch (``start_epoch=1`` here) and at the
last epoch writes the current map for pairs never accumulated (``last_epoch_fallback=True``); like
the official code, the fallback belongs to the accumulating epochs (a run whose last epoch comes
before ``start_epoch`` writes nothing).

Fusions live in a registry (:data:`FUSIONS`, like :data:`GATE_FUNCTIONS` for gates); the store
maintains every registered fusion in one run, so one training yields CAM, OAA-MAX and OAA-AVE, and
the attention-source names (``oaa_max``, ``oaa_ave``) derive from it (:data:`FUSION_SOURCES`). Maps
live as tensors on the training device (no file I/O in the training step), in the *image frame*
(views are mapped back by :func:`wsss_lib.data.transforms.views_to_image_frame` first), keyed by
image id, and go into the checkpoint via :meth:`OAAStore.state_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from wsss_lib.util.row_buffer import RowBuffer

GATES = ("paper", "topk", "topk_prob", "all")


def fuse_max(M: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """OAA eq. 5: element-wise maximum of the accumulated map and the new attention."""
    return torch.maximum(M, A)


def fuse_ave(M: torch.Tensor, A: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """OAA eq. 10: running average, ``t`` = index of this accepted update (1 for the first).

    ``t`` broadcasts against the maps (e.g. shape ``S x 1 x 1``)."""
    t = t.to(M.dtype)
    return ((t - 1) * M + A) / t


def gate_paper(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Accept target class c when its score exceeds every non-target score (OAA section 3.2).

    ``scores``, ``labels``: ``B x K``. Returns ``B x K`` bool (False for non-targets)."""
    labels = labels.bool()
    neg_max = scores.masked_fill(labels, float("-inf")).amax(dim=1, keepdim=True)
    return labels & (scores > neg_max)


def gate_topk(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Accept target class c when it is among the top-k scores, k = number of labels (official code)."""
    labels = labels.bool()
    k = labels.sum(1, keepdim=True)
    rank = scores.argsort(dim=1, descending=True).argsort(dim=1)  # 0 = highest score
    return labels & (rank < k)


def gate_topk_prob(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The official gate exactly: target class c is accepted when it is among the first k of
    ``torch.argsort(-sigmoid(scores))`` in float32, k = number of labels (``models/vgg.py`` of
    OAA-PyTorch). Saturated probabilities (1.0) tie, and argsort's order among ties decides."""
    labels = labels.bool()
    k = labels.sum(1, keepdim=True)
    order = torch.argsort(-torch.sigmoid(scores.float()), dim=1)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device)
                                            .expand_as(order).contiguous())
    return labels & (rank < k)


def gate_all(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Accept every target class."""
    return labels.bool()


GATE_FUNCTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "paper": gate_paper, "topk": gate_topk, "topk_prob": gate_topk_prob, "all": gate_all}


def update_max(M: torch.Tensor, A: torch.Tensor, V: torch.Tensor, first: torch.Tensor,
               t: torch.Tensor) -> torch.Tensor:
    """A store update by eq. 5: the first accepted view initializes (pixels it missed start at 0,
    and ``A >= 0`` later); later views fuse the pixels they saw."""
    return torch.where(first, A * V, torch.where(V, fuse_max(M, A), M))


def update_ave(M: torch.Tensor, A: torch.Tensor, V: torch.Tensor, first: torch.Tensor,
               t: torch.Tensor) -> torch.Tensor:
    """A store update by eq. 10 with ``t`` per pixel (the first view that saw a pixel initializes it)."""
    return torch.where(V, fuse_ave(M, A, t.clamp_min(1)), M)


@dataclass(frozen=True)
class Fusion:
    """A fusion strategy of the OAA store: how an accepted map enters the accumulated one.

    ``update(M, A, V, first, t)``: stored maps ``M``, new attention ``A`` (both ``S x H x W``), the
    pixels the view saw ``V``, ``first`` (``S x 1 x 1``: the pair's first accepted update) and the
    per-pixel update index ``t``. The attention source it yields is named ``oaa_<name>``."""

    name: str
    label: str  # as tables and figures show it
    equation: str
    update: Callable[..., torch.Tensor]

    @property
    def source(self) -> str:
        return f"oaa_{self.name}"


#: the fusion strategies every classifier run maintains side by side (one run yields all of them)
FUSIONS: dict[str, Fusion] = {
    "max": Fusion("max", "OAA-MAX", "OAA eq. 5", update_max),
    "ave": Fusion("ave", "OAA-AVE", "OAA eq. 10", update_ave),
}
#: attention-source name -> label, for every fusion (``oaa_max`` -> ``OAA-MAX``)
FUSION_SOURCES: dict[str, str] = {f.source: f.label for f in FUSIONS.values()}


def fusion_of_source(source: str) -> Fusion:
    """The fusion behind an attention-source name (``oaa_max`` -> ``FUSIONS["max"]``)."""
    for f in FUSIONS.values():
        if f.source == source:
            return f
    raise KeyError(f"{source!r} is not an OAA fusion source (known: {', '.join(FUSION_SOURCES)})")


class OAAStore:
    """Accumulated maps for every (image, present class) pair of a training set.

    Args:
        image_ids: ids of the training images, in dataset order (index ``i`` <-> ``image_ids[i]``).
        labels: ``N x K`` multi-hot image-level labels.
        size: ``(H, W)`` of the stored maps, over the whole image (normalized image frame).
        gate: one of :data:`GATES`.
        start_epoch: first epoch (0-based) whose maps are accumulated.
        last_epoch_fallback: at the last epoch, write the current map for pairs never accepted.

    The update is free of host synchronisation (no ``nonzero``, ``.item()`` or Python ``int`` of a
    tensor): it computes every (image, class) pair of the batch and writes the rejected and absent
    ones into one scratch row past the real slots, so its shapes never depend on the data. In a
    ``torchrun`` process group each rank writes the rows of the images it visits, and
    :meth:`merge_shards` (called by the engine before every checkpoint) combines them.
    """

    def __init__(self, image_ids: Sequence[str], labels: torch.Tensor, size: tuple[int, int],
                 gate: str = "paper", start_epoch: int = 0, last_epoch_fallback: bool = False,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> None:
        if gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
        labels = torch.as_tensor(labels).bool()
        if labels.shape[0] != len(image_ids):
            raise ValueError(f"{len(image_ids)} image ids but labels for {labels.shape[0]} images")
        self.image_ids = list(image_ids)
        self.size = tuple(size)
        self.gate = gate
        self.start_epoch = start_epoch
        self.last_epoch_fallback = last_epoch_fallback
        self.num_classes = labels.shape[1]
        pairs = labels.nonzero()  # S x 2, (image, class), row-major: grouped by image
        self.slot_image = pairs[:, 0].to(device)
        self.slot_class = pairs[:, 1].to(device)
        slot_of = torch.full(labels.shape, -1, dtype=torch.long)
        slot_of[pairs[:, 0], pairs[:, 1]] = torch.arange(len(pairs))
        self.slot_of = slot_of.to(device)
        # one row per slot and a scratch row that rejected and absent pairs write to (util.row_buffer)
        self.buffer = RowBuffer(len(pairs), {
            **{f"{name}_maps": (self.size, dtype) for name in FUSIONS},
            "counts": ((), torch.int32),  # accepted updates per slot
            "pixel_counts": (self.size, torch.int16),  # eq. 10 per pixel: accepted views that saw each pixel
            "fallback": ((), torch.bool)}, device=device)

    # the real slots (views without the scratch row)
    @property
    def maps(self) -> dict[str, torch.Tensor]:
        """fusion name -> ``S x H x W`` accumulated maps (one per :data:`FUSIONS` entry)."""
        return {name: self.buffer.real(f"{name}_maps") for name in FUSIONS}

    @property
    def counts(self) -> torch.Tensor:
        return self.buffer.real("counts")

    @property
    def pixel_counts(self) -> torch.Tensor:
        return self.buffer.real("pixel_counts")

    @property
    def fallback(self) -> torch.Tensor:
        return self.buffer.real("fallback")

    @property
    def num_slots(self) -> int:
        return self.buffer.rows

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.buffer.tensors.values(), self.buffer.touched,
                                                            self.slot_image, self.slot_class, self.slot_of))

    @property
    def dtype(self) -> torch.dtype:
        return self.buffer[f"{next(iter(FUSIONS))}_maps"].dtype

    @torch.no_grad()
    def update(self, indices: torch.Tensor, attention: torch.Tensor, valid: torch.Tensor | None,
               scores: torch.Tensor, labels: torch.Tensor, epoch: int, last_epoch: bool = False) -> torch.Tensor:
        """Fuse one batch. Returns the number of (image, class) maps accepted (a 0-dim tensor on the
        store's device: reading it is the caller's choice).

        Args:
            indices: ``B`` dataset indices of the batch's images.
            attention: ``B x K x H x W`` attention (eq. 2) already in the image frame at ``size``.
            valid: ``B x 1 x H x W`` bool, image pixels the view saw (``None``: all).
            scores: ``B x K`` class scores (logits or probabilities: only the order matters).
            labels: ``B x K`` multi-hot labels.
        """
        labels = labels.bool()
        accept = GATE_FUNCTIONS[self.gate](scores, labels)
        if epoch < self.start_epoch:
            accept = torch.zeros_like(accept)
        b, k = accept.shape
        slots = self.slot_of[indices]  # B x K, -1 = absent class
        accept = accept & (slots >= 0)
        buf = self.buffer
        scratch = torch.full_like(slots, buf.scratch)
        rows = torch.where(accept, slots, scratch).flatten()  # B*K rows; rejected -> scratch row
        A = attention.to(self.dtype).flatten(0, 1)  # B*K x H x W
        if valid is None:
            V = torch.ones((b * k, *self.size), dtype=torch.bool, device=attention.device)
        else:
            V = valid.expand(b, k, *self.size).flatten(0, 1)
        counts, pixel_counts = buf["counts"], buf["pixel_counts"]
        first = (counts[rows] == 0).view(-1, 1, 1)
        t = pixel_counts[rows] + V.to(pixel_counts.dtype)  # eq. 10's t, per pixel
        for name, fusion in FUSIONS.items():
            maps = buf[f"{name}_maps"]
            maps[rows] = fusion.update(maps[rows], A, V, first, t)
        pixel_counts[rows] = t
        counts[rows] = counts[rows] + 1
        buf["fallback"].index_fill_(0, rows, False)
        buf.touched.index_fill_(0, rows, True)
        if last_epoch and self.last_epoch_fallback and epoch >= self.start_epoch:
            never = counts[slots.clamp_min(0)] == 0  # after this batch's accepted updates
            fb_rows = torch.where(labels & ~accept & (slots >= 0) & never, slots, scratch).flatten()
            for name in FUSIONS:
                buf[f"{name}_maps"][fb_rows] = A * V
            pixel_counts[fb_rows] = V.to(pixel_counts.dtype)
            buf["fallback"].index_fill_(0, fb_rows, True)
            buf.touched.index_fill_(0, fb_rows, True)
        return accept.sum()

    def merge_shards(self) -> None:
        """Combine the rows each rank wrote since the last merge (a no-op in one process)."""
        self.buffer.merge_shards()

    def dense(self, fusion: str, indices: Sequence[int]) -> torch.Tensor:
        """``len(indices) x K x H x W`` maps of one fusion for some images (zeros for absent classes)."""
        idx = torch.as_tensor(list(indices), dtype=torch.long, device=self.slot_of.device)
        slots = self.slot_of[idx]  # n x K
        out = torch.zeros((*slots.shape, *self.size), dtype=self.dtype, device=slots.device)
        has = slots >= 0
        out[has] = self.maps[fusion][slots[has]]
        return out.cpu()

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"image_ids": self.image_ids, "size": self.size, "gate": self.gate,
                "start_epoch": self.start_epoch, "last_epoch_fallback": self.last_epoch_fallback,
                "slot_image": self.slot_image.cpu(), "slot_class": self.slot_class.cpu(),
                **self.buffer.state()}

    def load_state_dict(self, sd: dict) -> None:
        if list(sd["image_ids"]) != self.image_ids or tuple(sd["size"]) != self.size:
            raise ValueError("OAA store checkpoint was written for other images or another map size")
        if not (torch.equal(sd["slot_image"], self.slot_image.cpu())
                and torch.equal(sd["slot_class"], self.slot_class.cpu())):
            raise ValueError("OAA store checkpoint has other (image, class) pairs than this training set")
        if "pixel_counts" not in sd:
            raise ValueError("OAA store checkpoint predates per-pixel AVE counts (OAA eq. 10 per pixel); "
                             "start this run again in a new run folder")
        missing = [f"{name}_maps" for name in FUSIONS if f"{name}_maps" not in sd]
        if missing:
            raise ValueError(f"OAA store checkpoint has no {missing[0]} (fusions: {', '.join(FUSIONS)}); "
                             "start this run again in a new run folder")
        self.buffer.load(sd, "OAA store")

    def attention_source(self, fusion: str) -> dict:
        """The maps of one fusion (a :data:`FUSIONS` name) in the run's attention format (see
        :mod:`wsss_lib.runs.attention_io`)."""
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        maps = self.maps[fusion]
        return {"image_ids": self.image_ids, "slot_image": self.slot_image.cpu(),
                "slot_class": self.slot_class.cpu(), "maps": maps.detach().to("cpu", torch.float32, copy=True),
                "counts": self.counts.to("cpu", copy=True), "frame": "image"}
