"""Shared fixtures. Tests use data the project generates: the quick embedded benchmark."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Generated data is keyed by its spec digest, so one cache outside the repository serves every
# session. Run folders are fresh for each test process (and the nbval kernels it starts, which
# inherit the environment): a finished run cached by an earlier session must not hide a failure.
os.environ.setdefault("WSSS_CACHE", str(Path(tempfile.gettempdir()) / f"wsss-tests-{os.getuid()}" / "cache"))
if "WSSS_RUNS" not in os.environ:
    _RUNS = tempfile.mkdtemp(prefix="wsss-test-runs-")
    os.environ["WSSS_RUNS"] = _RUNS
    atexit.register(shutil.rmtree, _RUNS, ignore_errors=True)
os.environ.setdefault("WSSS_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# one thread per test process (and per kernel and subprocess it starts): `make test` runs two xdist
# workers on two cores, and two processes each spinning two OpenMP threads slow each other down
# several-fold (the batched make_cam test: 33-36 s each with 2 threads, 9-10 s with 1, measured side by
# side under load); a value set by the user wins
os.environ.setdefault("OMP_NUM_THREADS", "1")


#: the fast tier (``make test-fast``): formulas, units, tables, layers and docs, nothing trained and no
#: notebook executed; under a minute on 2 cores
FAST_MODULES = ("test_losses", "test_formulas_oaa", "test_metrics", "test_evaluation", "test_transforms", "test_layers",
                "test_repeat", "test_amr", "test_synthetic", "test_miniature", "test_backbones", "test_tables",
                "test_zones", "test_docs", "test_rehearsal", "test_kernels")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.stem in FAST_MODULES:
            item.add_marker(pytest.mark.fast)


@pytest.fixture(scope="session")
def quick_voc() -> Path:
    """The quick embedded benchmark (48 train + 16 val images of 64 px), generated once."""
    from wsss_lib.data.synthetic import ensure_benchmark
    from wsss_lib.runs.profile import QUICK

    return ensure_benchmark(QUICK.benchmark(), progress=False)


@pytest.fixture
def small_voc(tmp_path) -> Path:
    """A fresh, writable 12 + 4 image benchmark for tests that damage files."""
    from wsss_lib.data.spec import BenchmarkSpec
    from wsss_lib.data.synthetic import generate_benchmark

    return generate_benchmark(tmp_path / "bench", BenchmarkSpec(n_train=12, n_val=4, size=48, seed=3),
                              progress=False)
