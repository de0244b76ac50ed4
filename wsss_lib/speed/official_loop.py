"""The official AMR ``make_cam`` loop, one image-and-mirror pair per forward: the reference that
:func:`wsss_lib.speed.bench.bench_cam` times the batched inference against (same outputs).

Per image, branch, scale (official order) and class it runs the climbing iterations as the official
code does: a forward pass with hooks on the layer feeding the classifier, a backward of the class's
summed ReLU score for the Grad-CAM gradient, the Grad-CAM from the hooked maps, then the climbing
loss's backward to the image. Only the timing reference lives here; the fidelity test restates the
official code on its own (``tests/test_official_inference.py``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as Fn

from wsss_lib.engine.adversarial_cam import ClimbSettings, assemble_maps, normalize_uint8, rescale_uint8
from wsss_lib.models.amm import grouped_statistics


class _Hooks:
    def __init__(self, module: torch.nn.Module) -> None:
        self.fmap = self.grad = None
        self._h = module.register_forward_hook(self._forward)

    def _forward(self, module, inputs, output):
        self.fmap = output
        output.register_hook(self._backward)

    def _backward(self, g):
        self.grad = g

    def remove(self) -> None:
        self._h.remove()


def _pair_loop(branch, pair: torch.Tensor, c: int, iterations: int, factor: float, s: ClimbSettings) -> torch.Tensor:
    hooks = _Hooks(branch.head)
    x = pair.detach().clone()
    acc = init = None
    try:
        for _ in range(iterations):
            x.requires_grad_(True)
            out = branch(x)
            score = Fn.relu(out).flatten(2).sum(-1)
            branch.zero_grad()
            score[:, c].sum().backward(retain_graph=True)
            grads, fmaps = hooks.grad, hooks.fmap
            w = grads.flatten(2).sum(-1) / ((grads > 0).sum() + 1e-12)
            gcam = Fn.relu((fmaps * w[:, :, None, None]).sum(1, keepdim=True))
            regions = gcam[0] + gcam[1].flip(-1)
            if init is None:
                init = regions.detach()
                acc = torch.zeros_like(init[0])
            acc += regions[0].detach() * factor
            logit = Fn.relu(out).flatten(2).mean(-1)
            logit_loss = -2 * logit[:, c].sum() + logit.sum()
            mask = (regions.detach() / regions.detach().max() > s.score_th).to(regions.dtype)
            loss = -logit_loss - ((regions - init).abs() * mask).sum() * s.ad_coeff
            branch.zero_grad()
            x.grad = None
            loss.backward()
            g = x.grad
            with torch.no_grad():
                x = torch.clamp(x + s.ad_stepsize * g / (g.abs().max() + 1e-12), x.min().item(), x.max().item())
    finally:
        hooks.remove()
    return acc


def official_loop_cams(model, images: list[np.ndarray], classes: list[list[int]], s: ClimbSettings = ClimbSettings(),
                       branches: tuple[str, ...] = ("spotlight", "compensation"),
                       dtype: torch.dtype = torch.float32) -> list[dict]:
    """The same outputs as :func:`wsss_lib.engine.adversarial_cam.official_cams`, computed the official way."""

    model.eval()
    device = next(model.parameters()).device
    sched = s.schedule()
    out: list[dict] = [{} for _ in images]
    for i, img in enumerate(images):
        if not classes[i]:
            continue
        for name in branches:
            branch = getattr(model, name)
            per_scale = {}
            for idx, iters, factor in sched:
                t = normalize_uint8(rescale_uint8(img, s.scales[idx]))
                pair = torch.stack([t, t.flip(-1)]).to(device=device, dtype=dtype)
                with grouped_statistics(branch, 2):  # a batch of one pair: its own statistics
                    per_scale[idx] = {(i, c): _pair_loop(branch, pair, c, iters, factor, s) for c in classes[i]}
            out[i][name] = assemble_maps(i, classes[i], img.shape[:2], per_scale, sched)
    return out


__all__ = ["official_loop_cams"]
