"""Health figures of a trained attention network, recorded with every run so that a collapse is
seen in the run's metrics instead of explained afterwards:

- :func:`never_active_share`: the share of the head's units (the first layer after the backbone)
  that are never positive on a fixed probe batch (a unit a large step has pushed below zero for
  every input no longer learns: "dead");
- :func:`empty_map_share`: the share of present (image, class) maps that are zero everywhere
  (``F <= 0`` on the whole image, so OAA eq. 2 returns zeros: the class is found nowhere).

The probe batch is the first :data:`PROBE_IMAGES` training images (in id order) at the training
resolution, without augmentation; the network is read in evaluation mode, the mode its maps are
read in.
"""

from __future__ import annotations

import torch
from torch import nn

from wsss_lib.data.transforms import ViewGeometry
from wsss_lib.engine.loop import make_views

#: how many training images the probe batch holds
PROBE_IMAGES = 32


def head_units(net: nn.Module) -> nn.Module:
    """The module whose output channels are ``net``'s head units: the first ReLU after the backbone
    (the first head conv's), or the backbone itself when the network has no head convs."""
    head = getattr(net, "head", None)
    if head is not None:
        for m in head.modules():
            if isinstance(m, nn.ReLU):
                return m
    return net.backbone


def probe_views(dataset, crop: int, device: torch.device, n: int = PROBE_IMAGES) -> torch.Tensor:
    """The probe batch: the first ``n`` images of ``dataset`` as un-augmented views of side ``crop``."""
    samples = [dataset[i]["image"] for i in range(min(n, len(dataset)))]
    geo = ViewGeometry().as_tensor().expand(len(samples), 5).clone()
    return make_views(samples, geo, crop, device)


@torch.no_grad()
def never_active_share(net: nn.Module, views: torch.Tensor, batch: int = 16) -> float:
    """The share of :func:`head_units` channels that are positive nowhere on ``views``."""
    active = None

    def hook(_module, _inp, out):
        nonlocal active
        a = (out > 0).flatten(2).any(2).any(0)
        active = a if active is None else active | a

    handle = head_units(net).register_forward_hook(hook)
    was = net.training
    net.eval()
    try:
        for chunk in views.split(batch):
            net(chunk)
    finally:
        handle.remove()
        net.train(was)
    return float((~active).float().mean()) if active is not None else 0.0


def empty_map_share(source: dict) -> float:
    """The share of an attention source's (image, present class) maps that are zero everywhere."""
    maps = source["maps"]
    if maps.shape[0] == 0:
        return 0.0
    return float((maps.flatten(1).amax(1) <= 0).float().mean())


def health_metrics(nets: dict[str, nn.Module], views: torch.Tensor, sources: dict[str, dict]) -> dict:
    """``dead_head_units[_<name>]`` for each network (name ``""``: the run's only one) and
    ``empty_maps_<source>`` for each attention source."""
    out = {(f"dead_head_units_{name}" if name else "dead_head_units"): never_active_share(net, views)
           for name, net in nets.items()}
    out.update({f"empty_maps_{name}": empty_map_share(src) for name, src in sources.items()})
    return out


__all__ = ["PROBE_IMAGES", "empty_map_share", "head_units", "health_metrics", "never_active_share", "probe_views"]
