"""Resolving a stage's ``data_root`` parameter (``""`` = the embedded benchmark of the profile)."""

from __future__ import annotations

from pathlib import Path

from wsss_lib.data.synthetic import ensure_benchmark
from wsss_lib.data.voc import resolve_voc_root
from wsss_lib.runs.profile import FULL, Profile


def resolve_data_root(data_root: str, profile: Profile = FULL) -> Path:
    """``""`` -> the profile's embedded benchmark (generated on demand); ``"embedded:<variant>"`` ->
    that variant of it (:attr:`Profile.benchmarks`, e.g. ``embedded:parts2``, the two-part
    benchmark); otherwise the VOC 2012 folder found at or under ``data_root`` (clear error if none)."""
    variant = profile.variant_of(data_root)  # "" -> the profile's default variant; unknown ones raise
    if variant is not None:
        return ensure_benchmark(profile.benchmark(variant), progress=False)
    return resolve_voc_root(data_root)
