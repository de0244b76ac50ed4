"""One on-device buffer for training state kept per row (per (image, class) slot, or per image).

The OAA store and the two recorders of the classifier stage (attention snapshots, drift) write into
rows during the training step without host synchronisation: every batch element writes a row, and
the elements that must not (a rejected class, an image outside the recorded subset) write to one
*scratch row* past the real ones, so shapes never depend on the data. A buffer also remembers the
rows written since the last merge (``touched``), combines the ranks' rows in a process group
(:meth:`RowBuffer.merge_shards`, via :func:`wsss_lib.util.distributed.merge_rows`), and saves and
loads its real rows only (:meth:`RowBuffer.state`, :meth:`RowBuffer.load`).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch

from wsss_lib.util.distributed import merge_rows, world


class RowBuffer:
    """Named tensors sharing a row axis of ``rows`` real rows plus one scratch row (index ``rows``).

    ``spec``: name -> (the shape after the row axis, dtype); ``lead``: the dims before the row axis
    (``()`` for one value per row, ``(epochs,)`` for a row per epoch). ``touched`` has the shape
    ``lead + (rows + 1,)``."""

    def __init__(self, rows: int, spec: Mapping[str, tuple[tuple[int, ...], torch.dtype]], lead: tuple[int, ...] = (),
                 device: torch.device | str = "cpu") -> None:
        self.rows = int(rows)
        self.lead = tuple(lead)
        self.tensors = {name: torch.zeros((*self.lead, self.rows + 1, *shape), dtype=dt, device=device)
                        for name, (shape, dt) in spec.items()}
        self.touched = torch.zeros((*self.lead, self.rows + 1), dtype=torch.bool, device=device)

    @property
    def scratch(self) -> int:
        """The scratch row's index."""
        return self.rows

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def __setitem__(self, name: str, value: torch.Tensor) -> None:
        self.tensors[name] = value

    def real(self, name: str) -> torch.Tensor:
        """The tensor without its scratch row (a view)."""
        return self.tensors[name].narrow(len(self.lead), 0, self.rows)

    def row_of(self, slots: torch.Tensor) -> torch.Tensor:
        """Row indices for slot indices, ``-1`` (no slot) going to the scratch row."""
        return torch.where(slots >= 0, slots, torch.full_like(slots, self.scratch))

    def merge_shards(self) -> None:
        """Combine the rows each rank wrote since the last merge (a no-op in one process)."""

        if world()[1] > 1:
            self.touched[..., self.scratch] = False  # the scratch row is nobody's
            self.tensors = dict(merge_rows(self.tensors, self.touched))
        self.touched.zero_()

    def state(self, names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """CPU copies of the real rows (what a checkpoint holds)."""
        return {n: self.real(n).to("cpu", copy=True) for n in (names if names is not None else self.tensors)}

    def load(self, sd: Mapping[str, torch.Tensor], what: str = "buffer") -> None:
        """The tensors of ``sd`` (real rows, as :meth:`state` wrote them) back, each with a zero scratch
        row, on this buffer's device; a shape other than this buffer's is refused, naming ``what``."""
        row_dim = len(self.lead)
        for name, t in self.tensors.items():
            want = t.narrow(row_dim, 0, self.rows).shape
            got = sd[name]
            if tuple(got.shape) != tuple(want):
                raise ValueError(f"{what} checkpoint has {name} of shape {tuple(got.shape)}, expected {tuple(want)}")
            pad = torch.zeros((*want[:row_dim], 1, *want[row_dim + 1:]), dtype=t.dtype)
            self.tensors[name] = torch.cat([got.to(t.dtype), pad], row_dim).to(t.device)
        self.touched.zero_()


__all__ = ["RowBuffer"]
