"""Resolving a stage's ``data_root`` parameter (``""`` = the embedded benchmark)."""

from __future__ import annotations

from pathlib import Path

from ..data.synthetic import VARIANTS, ensure_benchmark, variant_spec
from ..data.voc import resolve_voc_root

#: ``data_root`` values that name a generated benchmark: ``""`` (version 1) or ``embedded:<variant>``
EMBEDDED_PREFIX = "embedded:"


def resolve_data_root(data_root: str, quick: bool = False) -> Path:
    """``""`` -> the embedded benchmark (generated on demand; the tiny one when ``quick``);
    ``"embedded:<variant>"`` -> that variant of it (:data:`~wsss_lib.data.synthetic.VARIANTS`, e.g.
    ``embedded:parts2``, the two-part benchmark); otherwise the VOC 2012 folder found at or under
    ``data_root`` (clear error if none)."""
    if not data_root:
        return ensure_benchmark(variant_spec("v1", quick), progress=False)
    if str(data_root).startswith(EMBEDDED_PREFIX):
        name = str(data_root)[len(EMBEDDED_PREFIX):]
        if name not in VARIANTS:
            raise ValueError(f"data_root={data_root!r}: unknown embedded benchmark {name!r}; expected one of "
                             + ", ".join(repr(EMBEDDED_PREFIX + k) for k in VARIANTS) + " or a VOC folder")
        return ensure_benchmark(variant_spec(name, quick), progress=False)
    return resolve_voc_root(data_root)
