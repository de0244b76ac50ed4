"""Joint view geometry: random flip, scale and crop that remember what they did.

A *view* of an image is described by :class:`ViewGeometry` in normalized image coordinates
(``[-1, 1]`` spans the image, as in ``torch.nn.functional.grid_sample`` with
``align_corners=False``): the view's centre ``(cx, cy)``, half extents ``(hw, hh)`` and a
horizontal flip flag. A view pixel at normalized view coordinates ``(u, v)`` shows the image point
``(cx + s*hw*u, cy + hh*v)`` with ``s = -1`` when flipped. Boxes may reach outside the image
(zoom-out); those pixels are padding.

:func:`view_theta` gives the affine matrix image <- view (to render a view, and to sample image-frame
maps into the view: OAA+ targets); :func:`inverse_theta` gives view <- image (to map a view's
attention back into the image frame before OAA fuses it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as Fn

AUGMENTATIONS = ("none", "flip", "flip_scale_crop")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ViewGeometry:
    cx: float = 0.0
    cy: float = 0.0
    hw: float = 1.0
    hh: float = 1.0
    flip: bool = False

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([self.cx, self.cy, self.hw, self.hh, float(self.flip)], dtype=torch.float32)


def sample_geometry(rng: np.random.Generator, augment: str = "flip",
                    scale_range: tuple[float, float] = (0.7, 1.0)) -> ViewGeometry:
    """Draw a view. ``flip``: horizontal flip with p = 0.5. ``flip_scale_crop``: also a square crop
    whose side is a fraction in ``scale_range`` of the image side (< 1 zooms in), at a uniform
    position inside the image."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    if augment == "none":
        return ViewGeometry()
    flip = bool(rng.random() < 0.5)
    if augment == "flip":
        return ViewGeometry(flip=flip)
    lo, hi = scale_range
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale_range must satisfy 0 < lo <= hi <= 1, got {scale_range}")
    f = float(rng.uniform(lo, hi))
    cx, cy = (float(v) for v in rng.uniform(-(1 - f), 1 - f, size=2))
    return ViewGeometry(cx, cy, f, f, flip)


def view_theta(geo: torch.Tensor) -> torch.Tensor:
    """``B x 5`` geometries -> ``B x 2 x 3`` affine (image coords from view coords)."""
    cx, cy, hw, hh, flip = geo.unbind(-1)
    s = 1 - 2 * flip
    z = torch.zeros_like(cx)
    return torch.stack([torch.stack([s * hw, z, cx], -1), torch.stack([z, hh, cy], -1)], -2)


def inverse_theta(geo: torch.Tensor) -> torch.Tensor:
    """``B x 5`` geometries -> ``B x 2 x 3`` affine (view coords from image coords)."""
    cx, cy, hw, hh, flip = geo.unbind(-1)
    s = 1 - 2 * flip
    z = torch.zeros_like(cx)
    return torch.stack([torch.stack([s / hw, z, -s * cx / hw], -1),
                        torch.stack([z, 1 / hh, -cy / hh], -1)], -2)


def pad_to_canvas(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``C x H_i x W_i`` of different sizes -> one zero canvas ``B x C x max H x max W`` (each
    image at its top left) and their sizes ``B x 2`` (h, w): a batch of variable-size images as one
    tensor, which a loader pins and the engine copies to the device in one call."""
    h = max(im.shape[-2] for im in images)
    w = max(im.shape[-1] for im in images)
    canvas = images[0].new_zeros((len(images), images[0].shape[0], h, w))
    for k, im in enumerate(images):
        canvas[k, :, :im.shape[-2], :im.shape[-1]] = im
    return canvas, torch.tensor([im.shape[-2:] for im in images], dtype=torch.long)


def canvas_mask(sizes: torch.Tensor, canvas_hw: tuple[int, int], device: torch.device) -> torch.Tensor:
    """``B x 1 x H x W`` float: 1 on each image's own pixels of a :func:`pad_to_canvas` canvas, 0 on
    the padding (made on ``device`` without reading ``sizes`` on the host)."""
    sizes = sizes.to(device, non_blocking=True)
    rows = torch.arange(canvas_hw[0], device=device).view(1, -1, 1) < sizes[:, :1, None]
    cols = torch.arange(canvas_hw[1], device=device).view(1, 1, -1) < sizes[:, 1:, None]
    return (rows & cols).unsqueeze(1).float()


def canvas_theta(theta: torch.Tensor, sizes: torch.Tensor, canvas_hw: tuple[int, int]) -> torch.Tensor:
    """Compose ``B x 2 x 3`` image <- view affines with canvas <- image for images of ``sizes`` at the
    top left of a ``canvas_hw`` canvas. With ``align_corners=False`` an image's normalized coordinate
    ``u`` is the canvas coordinate ``s*u + s - 1``, ``s = W / W_canvas`` (likewise for rows), so a pixel
    centre of the image lands on the same canvas pixel centre."""
    sizes = sizes.to(theta.device, non_blocking=True).to(theta.dtype)
    s = torch.stack([sizes[:, 1] / canvas_hw[1], sizes[:, 0] / canvas_hw[0]], -1)  # B x 2: (x, y)
    out = theta * s[:, :, None]
    return torch.cat([out[..., :2], out[..., 2:] + (s - 1)[:, :, None]], -1)


def render_views(images: torch.Tensor, geo: torch.Tensor, size: int | tuple[int, int],
                 mode: str = "bilinear", sizes: torch.Tensor | None = None) -> torch.Tensor:
    """Sample ``B x C x H x W`` images into ``B x C x size`` views (zero padding outside).

    ``sizes`` (``B x 2``): the images are of these sizes at the top left of a :func:`pad_to_canvas`
    canvas, whose padding must be zero; the views are those of the images themselves."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    theta = view_theta(geo).to(images.dtype)
    if sizes is not None:
        theta = canvas_theta(theta, sizes, tuple(images.shape[-2:]))
    grid = Fn.affine_grid(theta, (images.shape[0], images.shape[1], *size), align_corners=False)
    return Fn.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)


def views_to_image_frame(maps: torch.Tensor, geo: torch.Tensor, size: tuple[int, int],
                         mode: str = "bilinear") -> tuple[torch.Tensor, torch.Tensor]:
    """Map view-frame maps ``B x K x h x w`` back into the image frame at ``size``.

    Returns ``(maps_img B x K x H x W, valid B x 1 x H x W bool)``; ``valid`` marks image pixels the
    view saw (the rest are zero in ``maps_img`` and must not be fused)."""
    b = maps.shape[0]
    grid = Fn.affine_grid(inverse_theta(geo).to(maps.dtype), (b, maps.shape[1], *size), align_corners=False)
    out = Fn.grid_sample(maps, grid, mode=mode, padding_mode="zeros", align_corners=False)
    valid = (grid.abs() <= 1.0 + 1e-6).all(-1).unsqueeze(1)
    return out, valid


def image_frame_to_views(maps: torch.Tensor, geo: torch.Tensor, size: tuple[int, int],
                         mode: str = "bilinear") -> torch.Tensor:
    """Sample image-frame maps ``B x K x H x W`` into the views (e.g. OAA+ soft labels)."""
    grid = Fn.affine_grid(view_theta(geo).to(maps.dtype), (maps.shape[0], maps.shape[1], *size),
                          align_corners=False)
    return Fn.grid_sample(maps, grid, mode=mode, padding_mode="zeros", align_corners=False)


def normalize_images(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 ``B x 3 x H x W`` -> float, ImageNet mean/std normalized (padding 0 = mean colour)."""
    x = images_uint8.float().div_(255.0)
    return (x - _channel_constant(IMAGENET_MEAN, x.device)) / _channel_constant(IMAGENET_STD, x.device)


def _channel_constant(values, device: torch.device) -> torch.Tensor:
    """``1 x 3 x 1 x 1`` on ``device`` made by fill kernels: ``torch.tensor(list, device='cuda')`` is a
    synchronous host-to-device copy, which a training step must not make."""
    return torch.stack([torch.full((), float(v), device=device) for v in values]).view(1, -1, 1, 1)
