"""Dry runs: plan everything, make nothing, and say what would be made.

Inside :func:`dry_run`, every place that would make something expensive before a run can be
identified (generate an embedded benchmark or its saliency maps, pretrain the ``tiny`` backbone)
calls :func:`about_to_make` first, which raises :class:`WouldMake` naming it instead of doing it.
The batch runner's ``--dry-run`` plans its points so and lists what each would need made.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

_DRY = contextvars.ContextVar("wsss_dry_run", default=False)


class WouldMake(Exception):
    """Raised inside :func:`dry_run` where something would be made (``what`` says what)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@contextlib.contextmanager
def dry_run() -> Iterator[None]:
    """Within this block, :func:`about_to_make` raises instead of letting the work happen."""
    token = _DRY.set(True)
    try:
        yield
    finally:
        _DRY.reset(token)


def is_dry_run() -> bool:
    return _DRY.get()


def about_to_make(what: str) -> None:
    """Call before making ``what``: inside :func:`dry_run`, raises :class:`WouldMake`; else nothing."""
    if _DRY.get():
        raise WouldMake(what)


__all__ = ["WouldMake", "about_to_make", "dry_run", "is_dry_run"]
