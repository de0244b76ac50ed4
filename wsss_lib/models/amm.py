"""AMR's attention modulation module (AMM): channel modulation, then spatial modulation, each by a
Gaussian of its gate (report eqs. 1-4), and the reproduction report's Gaussian *threshold*
modulation (report eq. 9).

- :func:`gaussian_stats`: eq. 2, mean and standard deviation of the gate (detached); population
  form by default (eq. 2), ``unbiased=True`` for ``torch.std``'s N-1 form (the official code).
- :func:`gaussian_modulation`: eq. 1, ``G(x) = exp(-(x - mu)^2 / (2 sigma^2))``; with
  ``normalize=True`` also divided by ``sqrt(2 pi) sigma`` (the official code).
- :func:`threshold_modulation`: report eq. 9, values of ``G`` below the threshold become 0.

Two forms (``AMM(..., form=...)``, table :data:`AMM_FORMS`):

- ``"paper"`` (default): what the report's equations say: mu, sigma per image over the gate's
  elements, eq. 2's population std, no normalization, spatial pool = channel mean, a 7x7 conv with
  bias, hidden width ``max(C // r, 4)``.
- ``"official"``: numerically the official ``net/amm.py`` of the AMR repository: mu, sigma over the
  whole batch tensor with ``torch.std`` (N-1), the Gaussian divided by ``sqrt(2 pi) sigma``, hidden
  width ``C // r``, spatial pool = (max, mean) over channels in that order, a 7x7 conv *without*
  bias followed by ``BatchNorm2d(1)`` (momentum 0.01). :meth:`AMM.from_official` loads an official
  module's state dict into it.

Single choices can still be overridden on top of a form (``stats``, ``normalize``, ``spatial_pool``)
for ablations.

The official ``make_cam`` runs one image and its mirror per forward, so its "batch" statistics are
those of that pair, and its AMM's ``BatchNorm2d`` normalizes with the pair's statistics: the
official network overrides ``train()`` without calling ``nn.Module.train``, so ``model.eval()``
leaves every module in training mode. :func:`grouped_statistics` reproduces both for a batch of
many pairs (each group of consecutive samples on its own), so the official inference can be
batched without one image's maps depending on another's.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

#: the choices each form makes; keys are :class:`AMM`'s keyword arguments
AMM_FORMS: dict[str, dict] = {
    "paper": {"stats": "sample", "unbiased": False, "normalize": False, "spatial_pool": "avg",
              "spatial_bn": False, "min_hidden": 4},
    "official": {"stats": "batch", "unbiased": True, "normalize": True, "spatial_pool": "maxavg",
                 "spatial_bn": True, "min_hidden": 1},
}
SPATIAL_POOLS = ("avg", "maxavg")


def gaussian_stats(x: torch.Tensor, scope: str = "sample", eps: float = 1e-6,
                   unbiased: bool = False, group: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Report eq. 2: ``mu = mean(x)``, ``sigma = sqrt(mean((x - mu)^2))`` over each image's
    elements (``scope="sample"``) or the whole batch (``"batch"``); detached, ``sigma >= eps``.
    ``unbiased=True`` divides by N-1 instead of N (``torch.std``, the official code).
    ``group > 0`` with ``scope="batch"``: each run of ``group`` consecutive samples is a batch of its own."""
    x = x.detach()
    if scope not in ("sample", "batch"):
        raise ValueError(f"scope must be 'sample' or 'batch', got {scope!r}")
    if scope == "batch" and group:
        if x.shape[0] % group:
            raise ValueError(f"a batch of {x.shape[0]} samples does not split into groups of {group}")
        mu, sigma = gaussian_stats(x.reshape(x.shape[0] // group, group * x[0].numel()), "sample", eps, unbiased)
        return mu.repeat_interleave(group, 0).view(-1, *[1] * (x.dim() - 1)), \
            sigma.repeat_interleave(group, 0).view(-1, *[1] * (x.dim() - 1))
    dims = tuple(range(x.dim())) if scope == "batch" else tuple(range(1, x.dim()))
    mu = x.mean(dim=dims, keepdim=True)
    if unbiased:
        n = math.prod(x.shape[d] for d in dims)
        sigma = (((x - mu) ** 2).sum(dim=dims, keepdim=True) / max(n - 1, 1)).sqrt()
    else:
        sigma = ((x - mu) ** 2).mean(dim=dims, keepdim=True).sqrt()
    return mu, sigma.clamp_min(eps)


def gaussian_modulation(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
                        normalize: bool = False) -> torch.Tensor:
    """Report eq. 1: ``G(x) = exp(-(x - mu)^2 / (2 sigma^2))``, 1 at the mean, falling off for
    the most (and least) activated values; ``normalize`` divides by ``sqrt(2 pi) sigma``."""
    g = torch.exp(-((x - mu) ** 2) / (2 * sigma ** 2))
    if normalize:
        g = g / (math.sqrt(2 * math.pi) * sigma)
    return g


def threshold_modulation(g: torch.Tensor, threshold: float) -> torch.Tensor:
    """Report eq. 9: keep ``G`` where ``G >= threshold``, 0 elsewhere."""
    return torch.where(g >= threshold, g, torch.zeros_like(g))


class _GaussianGate(nn.Module):
    def __init__(self, stats: str, normalize: bool, threshold: float | None, unbiased: bool) -> None:
        super().__init__()
        self.stats, self.normalize, self.threshold, self.unbiased = stats, normalize, threshold, unbiased
        self.group = 0  # > 0: batch statistics per group of consecutive samples (grouped_statistics)

    def modulate(self, gate: torch.Tensor) -> torch.Tensor:
        mu, sigma = gaussian_stats(gate, self.stats, unbiased=self.unbiased, group=self.group)
        g = gaussian_modulation(gate, mu, sigma, self.normalize)
        if self.threshold is not None:
            g = threshold_modulation(g, self.threshold)
        return g


class ChannelAMM(_GaussianGate):
    """Report eq. 3: ``F_c = Expand(G(H(P_s(F)))) * F``; ``P_s`` spatial average pool, ``H`` a
    C -> C/r -> C bottleneck of 1x1 convs (hidden width ``max(C // r, min_hidden)``)."""

    def __init__(self, channels: int, reduction: int = 16, stats: str = "sample", normalize: bool = False,
                 threshold: float | None = None, unbiased: bool = False, min_hidden: int = 4) -> None:
        super().__init__(stats, normalize, threshold, unbiased)
        hidden = max(channels // reduction, min_hidden)
        if hidden < 1:
            raise ValueError(f"channels // reduction = {channels} // {reduction} = 0: the channel MLP needs "
                             "a hidden width >= 1")
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        gate = self.mlp(f.mean(dim=(2, 3), keepdim=True))  # B x C x 1 x 1
        return self.modulate(gate) * f


class SpatialAMM(_GaussianGate):
    """Report eq. 4: ``F_s = Expand(G(H(P_c(F_c)))) * F_c``; ``P_c`` channel pool (mean, or
    (max, mean) as the official code), ``H`` a 7x7 conv (with ``bn``: bias-free, then
    ``BatchNorm2d(1)`` with momentum 0.01, as the official code)."""

    def __init__(self, pool: str = "avg", kernel: int = 7, stats: str = "sample", normalize: bool = False,
                 threshold: float | None = None, unbiased: bool = False, bn: bool = False) -> None:
        super().__init__(stats, normalize, threshold, unbiased)
        if pool not in SPATIAL_POOLS:
            raise ValueError(f"spatial pool must be one of {SPATIAL_POOLS}, got {pool!r}")
        self.pool = pool
        self.conv = nn.Conv2d(1 if pool == "avg" else 2, 1, kernel, padding=kernel // 2, bias=not bn)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01) if bn else None

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        p = f.mean(dim=1, keepdim=True)
        if self.pool == "maxavg":
            p = torch.cat([f.amax(dim=1, keepdim=True), p], dim=1)
        gate = self.conv(p)  # B x 1 x H x W
        if self.bn is not None:
            gate = self._group_bn(gate) if self.group else self.bn(gate)
        return self.modulate(gate) * f

    def _group_bn(self, gate: torch.Tensor) -> torch.Tensor:
        """The BN in training mode on each group of ``self.group`` samples (its statistics, biased
        variance as BatchNorm normalizes with); the running statistics are neither used nor updated."""
        b = gate.shape[0]
        if b % self.group:
            raise ValueError(f"a batch of {b} samples does not split into groups of {self.group}")
        g = gate.reshape(b // self.group, -1)
        mean = g.mean(1, keepdim=True)
        var = g.var(1, unbiased=False, keepdim=True)
        y = ((g - mean) / torch.sqrt(var + self.bn.eps)).view_as(gate)
        return y * self.bn.weight.view(1, -1, 1, 1) + self.bn.bias.view(1, -1, 1, 1)


@contextmanager
def grouped_statistics(model: nn.Module, group: int = 2) -> Iterator[None]:
    """Inside the block, every AMM gate of ``model`` with batch statistics takes them per group of
    ``group`` consecutive samples, and every AMM spatial BN normalizes each group with that group's
    statistics (as the official ``make_cam`` does for its one image-and-mirror pair per forward).
    Gates with per-image statistics are unaffected. Restores the previous setting on exit."""
    gates = [m for m in model.modules() if isinstance(m, _GaussianGate)]
    before = [m.group for m in gates]
    try:
        for m in gates:
            m.group = group if m.stats == "batch" or (isinstance(m, SpatialAMM) and m.bn is not None) else 0
        yield
    finally:
        for m, g in zip(gates, before):
            m.group = g


class AMM(nn.Module):
    """Channel modulation, then spatial modulation (shape preserving).

    ``form`` picks every choice at once (:data:`AMM_FORMS`); ``stats``, ``normalize`` and
    ``spatial_pool`` given explicitly (not ``None``) override the form's choice."""

    def __init__(self, channels: int, reduction: int = 16, spatial_pool: str | None = None,
                 stats: str | None = None, normalize: bool | None = None, threshold: float | None = None,
                 form: str = "paper") -> None:
        super().__init__()
        if form not in AMM_FORMS:
            raise ValueError(f"AMM form must be one of {sorted(AMM_FORMS)}, got {form!r}")
        o = dict(AMM_FORMS[form])
        for key, value in (("stats", stats), ("normalize", normalize), ("spatial_pool", spatial_pool)):
            if value is not None:
                o[key] = value
        self.form = form
        self.channel = ChannelAMM(channels, reduction, o["stats"], o["normalize"], threshold, o["unbiased"],
                                  o["min_hidden"])
        self.spatial = SpatialAMM(o["spatial_pool"], 7, o["stats"], o["normalize"], threshold, o["unbiased"],
                                  o["spatial_bn"])

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(f))

    @staticmethod
    def official_to_ours(sd: dict, prefix: str = "") -> dict:
        """Rename one official AMM's state dict (keys ``ChannelAMM.mlp.{1,3}.*`` of ``nn.Linear``
        layers, ``SpatialAMM.spatial.{conv,bn}.*``) to this module's keys, reshaping the linear
        weights into 1x1 convs. Keys outside ``prefix`` are ignored; unknown keys under it raise."""
        out = {}
        for key, value in sd.items():
            if not key.startswith(prefix):
                continue
            k = key[len(prefix):]
            if k.startswith("ChannelAMM.mlp."):
                idx, rest = k[len("ChannelAMM.mlp."):].split(".", 1)
                ours = {"1": "0", "3": "2"}.get(idx)
                if ours is None:
                    raise KeyError(f"unexpected official AMM key {key!r}")
                if rest == "weight" and value.dim() == 2:
                    value = value[:, :, None, None]
                out[f"channel.mlp.{ours}.{rest}"] = value
            elif k.startswith("SpatialAMM.spatial.conv.") or k.startswith("SpatialAMM.spatial.bn."):
                out["spatial." + k[len("SpatialAMM.spatial."):]] = value
            else:
                raise KeyError(f"unexpected official AMM key {key!r}")
        return out

    @classmethod
    def from_official(cls, state_dict: dict, threshold: float | None = None) -> "AMM":
        """The official-form AMM holding the weights of one official ``net/amm.py`` ``AMM`` module.

        Channel count and reduction come from ``ChannelAMM.mlp.1.weight`` (shape ``C/r x C``)."""
        w = state_dict.get("ChannelAMM.mlp.1.weight")
        if w is None:
            raise KeyError("not an official AMM state dict: 'ChannelAMM.mlp.1.weight' is missing "
                           f"(keys: {sorted(state_dict)[:6]}...)")
        hidden, channels = int(w.shape[0]), int(w.shape[1])
        reduction = channels // hidden
        if channels // reduction != hidden:
            raise ValueError(f"ChannelAMM.mlp.1.weight has shape {tuple(w.shape)}: no integer reduction r "
                             f"gives C // r = {hidden} for C = {channels}")
        amm = cls(channels, reduction, form="official", threshold=threshold)
        amm.load_state_dict(cls.official_to_ours(state_dict), strict=True)
        return amm
