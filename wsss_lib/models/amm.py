"""AMR's attention modulation module (AMM): channel modulation, then spatial modulation, each by a
Gaussian of its gate (report eqs. 1-4), and the reproduction report's Gaussian *threshold*
modulation (report eq. 9).

- :func:`gaussian_stats`: eq. 2, mean and standard deviation of the gate (detached).
- :func:`gaussian_modulation`: eq. 1, ``G(x) = exp(-(x - mu)^2 / (2 sigma^2))``; with
  ``normalize=True`` also divided by ``sqrt(2 pi) sigma`` (the official code).
- :func:`threshold_modulation`: report eq. 9, values of ``G`` below the threshold become 0.

Choices (DESIGN.md): ``stats="sample"`` (default) takes mu, sigma per image over the gate's
elements; ``stats="batch"`` over the whole batch tensor, as the official code. The spatial pool is
the channel mean (as the report says) or ``"avgmax"`` (mean and max concatenated, the official
code).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def gaussian_stats(x: torch.Tensor, scope: str = "sample", eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Report eq. 2: ``mu = mean(x)``, ``sigma = sqrt(mean((x - mu)^2))`` over each image's
    elements (``scope="sample"``) or the whole batch (``"batch"``); detached, ``sigma >= eps``."""
    x = x.detach()
    if scope == "batch":
        mu = x.mean()
        sigma = ((x - mu) ** 2).mean().sqrt()
        shape = [1] * x.dim()
        return mu.view(shape), sigma.clamp_min(eps).view(shape)
    if scope != "sample":
        raise ValueError(f"scope must be 'sample' or 'batch', got {scope!r}")
    dims = tuple(range(1, x.dim()))
    mu = x.mean(dim=dims, keepdim=True)
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
    def __init__(self, stats: str, normalize: bool, threshold: float | None) -> None:
        super().__init__()
        self.stats, self.normalize, self.threshold = stats, normalize, threshold

    def modulate(self, gate: torch.Tensor) -> torch.Tensor:
        mu, sigma = gaussian_stats(gate, self.stats)
        g = gaussian_modulation(gate, mu, sigma, self.normalize)
        if self.threshold is not None:
            g = threshold_modulation(g, self.threshold)
        return g


class ChannelAMM(_GaussianGate):
    """Report eq. 3: ``F_c = Expand(G(H(P_s(F)))) * F``; ``P_s`` spatial average pool, ``H`` a
    C -> C/r -> C bottleneck of 1x1 convs."""

    def __init__(self, channels: int, reduction: int = 16, stats: str = "sample", normalize: bool = False,
                 threshold: float | None = None) -> None:
        super().__init__(stats, normalize, threshold)
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        gate = self.mlp(f.mean(dim=(2, 3), keepdim=True))  # B x C x 1 x 1
        return self.modulate(gate) * f


class SpatialAMM(_GaussianGate):
    """Report eq. 4: ``F_s = Expand(G(H(P_c(F_c)))) * F_c``; ``P_c`` channel pool, ``H`` a 7x7 conv."""

    def __init__(self, pool: str = "avg", kernel: int = 7, stats: str = "sample", normalize: bool = False,
                 threshold: float | None = None) -> None:
        super().__init__(stats, normalize, threshold)
        if pool not in ("avg", "avgmax"):
            raise ValueError(f"spatial pool must be 'avg' or 'avgmax', got {pool!r}")
        self.pool = pool
        self.conv = nn.Conv2d(1 if pool == "avg" else 2, 1, kernel, padding=kernel // 2)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        p = f.mean(dim=1, keepdim=True)
        if self.pool == "avgmax":
            p = torch.cat([p, f.amax(dim=1, keepdim=True)], dim=1)
        gate = self.conv(p)  # B x 1 x H x W
        return self.modulate(gate) * f


class AMM(nn.Module):
    """Channel modulation, then spatial modulation (shape preserving)."""

    def __init__(self, channels: int, reduction: int = 16, spatial_pool: str = "avg", stats: str = "sample",
                 normalize: bool = False, threshold: float | None = None) -> None:
        super().__init__()
        self.channel = ChannelAMM(channels, reduction, stats, normalize, threshold)
        self.spatial = SpatialAMM(spatial_pool, 7, stats, normalize, threshold)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(f))
