"""Resolving a stage's ``data_root`` parameter (``""`` = the embedded benchmark of the profile)."""

from __future__ import annotations

from pathlib import Path

from wsss_lib.data.synthetic import ensure_benchmark
from wsss_lib.data.voc import resolve_voc_root
from wsss_lib.runs.profile import FULL, Profile

#: ``data_root`` values that name a generated benchmark: ``""`` (version 1) or ``embedded:<variant>``
EMBEDDED_PREFIX = "embedded:"


def resolve_data_root(data_root: str, profile: Profile = FULL) -> Path:
    """``""`` -> the profile's embedded benchmark (generated on demand); ``"embedded:<variant>"`` ->
    that variant of it (:attr:`Profile.benchmarks`, e.g. ``embedded:parts2``, the two-part
    benchmark); otherwise the VOC 2012 folder found at or under ``data_root`` (clear error if none)."""
    if not data_root:
        return ensure_benchmark(profile.benchmark(profile.default_variant), progress=False)
    if str(data_root).startswith(EMBEDDED_PREFIX):
        name = str(data_root)[len(EMBEDDED_PREFIX):]
        if name not in profile.benchmarks:
            raise ValueError(f"data_root={data_root!r}: unknown embedded benchmark {name!r}; expected one of "
                             + ", ".join(repr(EMBEDDED_PREFIX + k) for k in profile.benchmarks) + " or a VOC folder")
        return ensure_benchmark(profile.benchmark(name), progress=False)
    return resolve_voc_root(data_root)
