"""Shared fixtures. Tests use data the project generates: the quick embedded benchmark."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# One cache and one runs folder for the whole session (and for the nbval kernels, which inherit
# the environment), outside the repository.
_TMP = Path(tempfile.gettempdir()) / f"wsss-tests-{os.getuid()}"
os.environ.setdefault("WSSS_CACHE", str(_TMP / "cache"))
os.environ.setdefault("WSSS_RUNS", str(_TMP / "runs"))
os.environ.setdefault("WSSS_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def quick_voc() -> Path:
    """The quick embedded benchmark (48 train + 16 val images of 64 px), generated once."""
    from wsss_lib.data.synthetic import QUICK_SPEC, ensure_benchmark

    return ensure_benchmark(QUICK_SPEC, progress=False)


@pytest.fixture
def small_voc(tmp_path) -> Path:
    """A fresh, writable 12 + 4 image benchmark for tests that damage files."""
    from wsss_lib.data.synthetic import BenchmarkSpec, generate_benchmark

    return generate_benchmark(tmp_path / "bench", BenchmarkSpec(n_train=12, n_val=4, size=48, seed=3),
                              progress=False)
