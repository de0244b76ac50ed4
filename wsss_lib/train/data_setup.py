"""Resolving a stage's ``data_root`` parameter (``""`` = the embedded benchmark)."""

from __future__ import annotations

from pathlib import Path

from ..data.synthetic import DEFAULT_SPEC, QUICK_SPEC, ensure_benchmark
from ..data.voc import resolve_voc_root


def resolve_data_root(data_root: str, quick: bool = False) -> Path:
    """``""`` -> the embedded benchmark (generated on demand; the tiny one when ``quick``);
    otherwise the VOC 2012 folder found at or under ``data_root`` (clear error if none)."""
    if not data_root:
        return ensure_benchmark(QUICK_SPEC if quick else DEFAULT_SPEC, progress=False)
    return resolve_voc_root(data_root)
