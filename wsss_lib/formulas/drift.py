"""Attention drift over training, measured for every (image, present class) pair.

OAA's premise (its Figure 1) is that the attention of a classifier in training moves between
different discriminative regions of an object from epoch to epoch, so that fusing the epochs'
maps recovers more of the object than any single epoch. :class:`DriftRecorder` keeps, during the
classifier's training, each pair's attention of every epoch (image frame, the OAA store's map size,
every labelled class, no gate); :func:`drift_summary` turns them into

- **peak shift**: how far the attention peak moves between consecutive epochs (in image sides);
- **consecutive IoU**: IoU of ``A > threshold`` regions of consecutive epochs (1 = no drift);
- **discovery curve**: the share of the object covered by the running element-wise maximum of the
  epochs' maps (OAA eq. 5 with every epoch accepted) after each epoch, next to the share a single
  epoch's map covers: the gap between the two curves is what accumulation can add;
- on the embedded benchmark, **mass per part**: the share of each map's attention on the object's
  first part, second part (two-part variant) and body, per epoch, and how often the dominant part
  changes between epochs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as Fn

from wsss_lib.util.io import torch_load, torch_save
from wsss_lib.util.row_buffer import RowBuffer


class DriftRecorder:
    """Per-epoch attention of every (image, labelled class) pair, as ``float16`` on the training device.

    ``slot_of``: ``N x K`` slot index of each (image, class) pair, -1 where the class is absent (the
    OAA store's own table, so slots line up with its maps). Rows live in a
    :class:`~wsss_lib.util.row_buffer.RowBuffer` (a row per epoch and slot): :meth:`record` writes
    absent classes into its scratch row (no host synchronisation) and :meth:`merge_shards` combines
    the ranks' rows in a process group. ``maps`` and ``seen`` are read on the CPU.

    With ``spill_dir`` (the run's ``drift_epochs/``), a checkpoint holds only the epoch in progress
    (later epochs are not recorded yet): each finished epoch's rows are written once, to ``spill_dir/epoch_<e>.pt``, when the
    first checkpoint after it is made (on VOC train_aug at 41 x 41 an epoch is about 1.25 GB, which
    the per-epoch checkpoint otherwise rewrote every epoch for every epoch recorded so far); a
    resumed run reads them back."""

    def __init__(self, slot_of: torch.Tensor, epochs: int, size: tuple[int, int], spill_dir=None) -> None:
        self.slot_of = slot_of
        s = int((slot_of >= 0).sum())
        self.buffer = RowBuffer(s, {"maps": (tuple(size), torch.float16), "seen": ((), torch.bool)}, lead=(epochs,),
                                device=slot_of.device)
        self.epochs = epochs
        self.spill_dir = spill_dir
        self.spilled = 0  # epochs 0 .. spilled-1 are in spill_dir, not in the checkpoint
        self.latest = -1  # the last epoch recorded (a host int: no synchronisation)
        self.finished = 0  # epochs the engine has finished (told before each checkpoint)

    @property
    def maps(self) -> torch.Tensor:
        return self.buffer.real("maps").cpu()

    @property
    def seen(self) -> torch.Tensor:
        return self.buffer.real("seen").cpu()

    @torch.no_grad()
    def record(self, epoch: int, indices: torch.Tensor, attention: torch.Tensor, valid: torch.Tensor | None) -> None:
        """``attention``: ``B x K x H x W`` image-frame maps of the batch; ``valid``: pixels seen."""
        rows = self.buffer.row_of(self.slot_of[indices]).flatten()  # B*K rows; absent classes -> scratch
        a = attention.detach().float()
        if valid is not None:
            a = a * valid.to(a.dtype)
        self.latest = max(self.latest, int(epoch))
        self.buffer["maps"][epoch, rows] = a.flatten(0, 1).half()
        self.buffer["seen"][epoch].index_fill_(0, rows, True)
        self.buffer.touched[epoch].index_fill_(0, rows, True)

    def merge_shards(self) -> None:
        self.buffer.merge_shards()

    def epochs_finished(self, n: int) -> None:
        """The engine has finished ``n`` epochs (called before every checkpoint)."""
        self.finished = max(self.finished, int(n))

    def epoch_file(self, epoch: int):
        return self.spill_dir / f"epoch_{epoch}.pt"

    def state_dict(self) -> dict:
        full = self.buffer.state()
        if self.spill_dir is None:
            return full
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        done = max(self.finished, self.latest)  # the epochs before the latest recorded are finished too
        for e in range(self.spilled, done):
            torch_save(self.epoch_file(e), {"maps": full["maps"][e].clone(), "seen": full["seen"][e].clone()})
        self.spilled = max(self.spilled, done)
        # the epochs in progress only: later epochs are not recorded yet (zeros, restored as zeros)
        return {"spilled": self.spilled, **{k: v[self.spilled:self.latest + 1].clone() for k, v in full.items()}}

    def load_state_dict(self, sd: dict) -> None:
        if "spilled" not in sd:  # a checkpoint holding every epoch
            return self.buffer.load(sd, "drift record")
        spilled = int(sd["spilled"])
        parts = {k: [] for k in ("maps", "seen")}
        for e in range(spilled):
            path = self.epoch_file(e)
            if self.spill_dir is None or not path.exists():
                raise FileNotFoundError(f"drift record of epoch {e + 1} ({path}) is missing: the checkpoint needs it "
                                        "to resume; delete the run folder to train again")
            ep = torch_load(path)
            for k in parts:
                parts[k].append(ep[k][None])
        later = self.epochs - spilled - sd["maps"].shape[0]  # epochs not recorded when it was written
        full = {k: torch.cat([*parts[k], sd[k], torch.zeros((later, *sd[k].shape[1:]), dtype=sd[k].dtype)])
                for k in parts}
        self.buffer.load(full, "drift record")
        self.spilled = self.finished = spilled
        self.latest = max(spilled - 1, self.latest)


def peaks(maps: torch.Tensor) -> torch.Tensor:
    """``... x H x W`` -> ``... x 2`` peak position (row, column) in image sides (cell centres)."""
    h, w = maps.shape[-2:]
    flat = maps.flatten(-2).float().argmax(-1)
    return torch.stack([(flat // w + 0.5) / h, (flat % w + 0.5) / w], -1)


def region_iou(a: torch.Tensor, b: torch.Tensor, threshold: float) -> torch.Tensor:
    """IoU of ``a > threshold`` and ``b > threshold`` over the last two dims; NaN where both are empty."""
    ra, rb = a.float() > threshold, b.float() > threshold
    inter = (ra & rb).flatten(-2).sum(-1).float()
    union = (ra | rb).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, float("nan")))


def consecutive_region_iou(snapshots: dict, labels: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per epoch transition, the mean :func:`region_iou` of consecutive epochs' attention regions
    over the snapshot images' present classes (pairs empty at both epochs left out; NaN when every
    pair is): low values = drifting attention."""
    maps = snapshots["maps"].float()  # E x n x K x h x w
    rows = [(j, int(c)) for j, i in enumerate(snapshots["indices"]) for c in np.flatnonzero(labels[i])]
    if not rows or maps.shape[0] < 2:
        return np.full(max(maps.shape[0] - 1, 0), np.nan)
    j, c = torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])
    pairs = maps[:, j, c]  # E x P x h x w
    iou = region_iou(pairs[:-1], pairs[1:], threshold)  # (E-1) x P
    return torch.nanmean(iou, dim=1).numpy().astype(np.float64)


def object_fractions(masks: list[np.ndarray], classes: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """For each slot, the share of each cell of the ``size`` grid covered by its class's object
    (area-averaged from the full-resolution mask; 255 = ignored counts as not the object)."""
    out = torch.zeros((len(classes), *size))
    for s, (m, c) in enumerate(zip(masks, classes)):
        obj = torch.from_numpy((np.asarray(m) == c + 1).astype(np.float32))[None, None]
        out[s] = Fn.adaptive_avg_pool2d(obj, size)[0, 0]
    return out


def coverage(maps: torch.Tensor, frac: torch.Tensor, threshold: float) -> torch.Tensor:
    """Share of each object (``frac``, ``S x H x W``) inside ``maps > threshold`` (``... x S x H x W``)."""
    on = (maps.float() > threshold).float()
    return (on * frac).flatten(-2).sum(-1) / frac.flatten(-2).sum(-1).clamp_min(1e-6)


def _nanmean(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The mean of the finite entries; NaN where there is none (nothing measured is not a zero)."""
    ok = ~torch.isnan(x)
    n = ok.sum(dim)
    mean = torch.where(ok, x, torch.zeros_like(x)).sum(dim) / n.clamp_min(1)
    return torch.where(n > 0, mean, torch.full_like(mean, float("nan")))


def drift_summary(maps: torch.Tensor, seen: torch.Tensor, frac: torch.Tensor | None = None,
                  threshold: float = 0.5, part_masks: torch.Tensor | None = None) -> dict:
    """Per-epoch drift figures of recorded maps (``E x S x H x W``; ``seen``: ``E x S``).

    Only pairs seen at every epoch count. ``frac``: ``S x H x W`` object share per cell (for the
    discovery curve); ``part_masks``: ``S x (R + 1) x H x W`` shares of each of the R regions (parts)
    and of the body per cell (embedded benchmark: R = 2 for versions 1 and parts2, whose second part
    is empty in version 1; R = 3 for version 2). Returns lists indexed by epoch (pair lists by the
    later epoch); ``peak_on_region`` / ``peak_on_body`` / ``peak_off_object``: the share of maps
    whose peak cell is mostly a region, else mostly the object, else neither."""
    keep = seen.all(0)
    m = maps[:, keep].float()
    e = m.shape[0]
    out: dict = {"epochs": e, "pairs": int(keep.sum()), "threshold": threshold}
    if e == 0 or m.shape[1] == 0:
        return out
    pk = peaks(m)  # E x S x 2
    active = m.flatten(-2).amax(-1) > 0  # E x S: an empty map has no peak
    shift = (pk[1:] - pk[:-1]).norm(dim=-1)  # (E-1) x S
    shift = torch.where(active[1:] & active[:-1], shift, torch.full_like(shift, float("nan")))
    out["peak_shift"] = [None] + [_nan_to_none(v) for v in _nanmean(shift).tolist()]
    out["consecutive_iou"] = [None] + [_nan_to_none(v) for v in _nanmean(region_iou(m[1:], m[:-1], threshold)).tolist()]
    acc = torch.cummax(m, dim=0).values
    if frac is not None:
        f = frac[keep]
        cov_acc, cov_one = coverage(acc, f, threshold), coverage(m, f, threshold)
        out["discovery"] = cov_acc.mean(1).tolist()
        out["single_epoch_coverage"] = cov_one.mean(1).tolist()
        # precision of the accumulated region: how much of what MAX gathers is the object
        on = (acc > threshold).float()
        out["accumulated_precision"] = _nanmean(torch.where(on.flatten(-2).sum(-1) > 0,
                                                            (on * f).flatten(-2).sum(-1) / on.flatten(-2).sum(-1).clamp_min(1),
                                                            torch.full(on.shape[:2], float("nan")))).tolist()
    if part_masks is not None:
        pm = part_masks[keep]  # S x (R + 1) x H x W: R regions, then the body
        r = pm.shape[1] - 1
        mass = torch.einsum("eshw,sphw->esp", m.clamp_min(0), pm)
        total = m.clamp_min(0).flatten(-2).sum(-1).clamp_min(1e-6)  # E x S
        share = mass / total[..., None]
        names = tuple(f"part{j + 1}" for j in range(r)) + ("body",)
        for p, name in enumerate(names):
            out[f"mass_{name}"] = share[..., p].mean(1).tolist()
        # where each map's peak cell lies: mostly on a region, else mostly on the object (the body),
        # else off the object (context, background, other objects)
        h, w = m.shape[-2:]
        flat = m.flatten(-2).argmax(-1)  # E x S
        comp = pm.flatten(-2).transpose(1, 2)[torch.arange(pm.shape[0])[None, :], flat]  # E x S x (R + 1)
        on_region = comp[..., :r].sum(-1) >= 0.5
        on_object = comp.sum(-1) >= 0.5
        n_active = active.float().sum(1)  # maps with a peak, per epoch (none: undefined, not 0)

        def share_of_peaks(where: torch.Tensor) -> list:
            frac = (where & active).float().sum(1) / n_active.clamp_min(1)
            return [_nan_to_none(v) for v in torch.where(n_active > 0, frac, torch.full_like(frac, float("nan"))).tolist()]

        out["peak_on_region"] = share_of_peaks(on_region)
        out["peak_on_body"] = share_of_peaks(~on_region & on_object)
        out["peak_off_object"] = share_of_peaks(~on_object)
        visible = (pm[:, :r].flatten(2).sum(-1) > 0)  # S x R
        both = visible.sum(1) >= 2
        out["pairs_with_two_parts"] = int(both.sum())
        if both.any() and e > 1:
            sh = share[:, both][..., :r]  # E x S2 x R
            dom = sh.argmax(-1)  # the dominant region (the first on ties)
            on = sh.sum(-1) > 0  # some attention on a region at that epoch
            sw = torch.where(on[1:] & on[:-1], (dom[1:] != dom[:-1]).float(), torch.full(dom[1:].shape, float("nan")))
            out["part_switch"] = [None] + [_nan_to_none(v) for v in _nanmean(sw).tolist()]
            ever = [bool(len(set(dom[on[:, j], j].tolist())) > 1) for j in range(dom.shape[1])]
            out["pairs_switching_ever"] = float(np.mean(ever))
    return out


def _nan_to_none(v: float):
    return None if v != v else float(v)


def summary_metrics(summary: dict) -> dict:
    """The scalar figures of :func:`drift_summary` for ``metrics.json`` (flat numbers; per-epoch
    values as ``<name>_eNN`` and the last epoch's as ``<name>_last``; undefined values left out)."""
    out = {}
    e = summary.get("epochs", 0)
    for key, name in (("peak_shift", "drift_peak_shift"), ("consecutive_iou", "drift_consecutive_iou"),
                      ("discovery", "discovery"), ("single_epoch_coverage", "single_epoch_coverage"),
                      ("part_switch", "drift_part_switch"), ("mass_part1", "cam_mass_part1"),
                      ("mass_part2", "cam_mass_part2"), ("mass_part3", "cam_mass_part3"), ("mass_body", "cam_mass_body"),
                      ("peak_on_region", "peak_on_region"), ("peak_on_body", "peak_on_body"),
                      ("peak_off_object", "peak_off_object")):
        vals = summary.get(key)
        if not vals:
            continue
        for i, v in enumerate(vals):
            if v is not None and np.isfinite(v):
                out[f"{name}_e{i + 1:02d}"] = float(v)
        if vals[-1] is not None and np.isfinite(vals[-1]):
            out[f"{name}_last"] = float(vals[-1])  # the last epoch's value (runs differ in epochs)
        finite = [v for v in vals if v is not None and np.isfinite(v)]
        if finite and key in ("peak_shift", "consecutive_iou", "part_switch"):
            out[f"{name}_mean"] = float(np.mean(finite))
    if summary.get("discovery") and summary.get("single_epoch_coverage"):
        out["discovery_final"] = float(summary["discovery"][-1])
        out["discovery_gain"] = float(summary["discovery"][-1] - summary["single_epoch_coverage"][-1])
    if "pairs_switching_ever" in summary:
        out["drift_pairs_switching_part"] = float(summary["pairs_switching_ever"])
    out["drift_epochs"] = float(e)
    return out


def part_shares(part_index: np.ndarray, mask: np.ndarray, cls: int, size: tuple[int, int],
                regions: int = 2) -> torch.Tensor:
    """``(regions + 1) x H x W`` cell shares of the class's regions 1..``regions`` and its body (the
    rest of its object)."""
    obj = np.asarray(mask) == cls + 1
    layers = np.stack([obj & (part_index == j) for j in range(1, regions + 1)] + [obj & (part_index == 0)]).astype(np.float32)
    return Fn.adaptive_avg_pool2d(torch.from_numpy(layers)[None], size)[0]


__all__ = ["DriftRecorder", "coverage", "drift_summary", "object_fractions", "part_shares", "peaks",
           "region_iou", "summary_metrics"]
