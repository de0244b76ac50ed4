"""`make bench-gpu`: exits 0 without CUDA, and every part runs on a bare node's packages.

The GPU itself is not here; the rehearsal (``--device cpu --scale tiny``) runs the same code paths at
toy sizes with the packages a bare GPU node lacks made unimportable, in this process's child and in
the pytest process it starts in turn."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# What a bare GPU node does not have (it has torch, torchvision, numpy, pandas, matplotlib, pytest,
# pyyaml, scipy, tqdm, filelock): importing any of these must behave as if it were absent.
ABSENT = ("papermill", "nbformat", "nbclient", "nbconvert", "IPython", "ipykernel", "ipywidgets",
          "jupyter_client", "jupyter_core", "jupyterlab", "notebook", "nbval", "xdist", "submitit", "tabulate")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_says_so_writes_nothing_and_exits_0(tmp_path, capsys):
    from wsss_lib.bench_gpu import main

    out = tmp_path / "bench_gpu.md"
    assert main(["--out", str(out)]) == 0
    assert "no CUDA device" in capsys.readouterr().out
    assert not out.exists()


def test_bad_steps_are_refused(tmp_path):
    from wsss_lib.bench_gpu import main

    with pytest.raises(SystemExit) as e:
        main(["--steps", "0", "--out", str(tmp_path / "x.md")])
    assert e.value.code == 2 and not (tmp_path / "x.md").exists()


def absent_site(tmp_path: Path) -> Path:
    """A folder whose ``sitecustomize.py`` makes the :data:`ABSENT` packages unimportable (on
    ``PYTHONPATH``, it acts in every Python process started with that environment)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import importlib.abc, importlib.machinery, sys
        ABSENT = {ABSENT!r}
        class _Absent(importlib.abc.MetaPathFinder, importlib.abc.Loader):
            # a spec without origin (probes such as torch's find_spec see nothing to record); importing fails
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ABSENT:
                    return importlib.machinery.ModuleSpec(name, self)
                return None
            def create_module(self, spec):
                raise ModuleNotFoundError(f"No module named {{spec.name!r}} (absent on a bare GPU node)",
                                          name=spec.name)
            def exec_module(self, module):
                pass
        sys.meta_path.insert(0, _Absent())
    """))
    return site


def test_the_absent_packages_really_are_absent(tmp_path):
    # if the blocker let papermill through, the rehearsal below would prove nothing
    env = {**os.environ, "PYTHONPATH": str(absent_site(tmp_path))}
    p = subprocess.run([sys.executable, "-c", "import papermill"], env=env, capture_output=True, text=True)
    assert p.returncode != 0 and "absent on a bare GPU node" in p.stderr


def test_rehearsal_runs_every_part_on_a_bare_nodes_packages(tmp_path, quick_voc):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(absent_site(tmp_path)), str(REPO)])}
    out = tmp_path / "bench_gpu.md"
    p = subprocess.run([sys.executable, "-m", "wsss_lib.bench_gpu", "--device", "cpu", "--scale", "tiny",
                        "--run", "quick", "--tests-k", "guard or amp_dtype", "--out", str(out)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    text = out.read_text()
    for part in ("## Environment", "## Fast-path tests under sync debug mode", "passed: ", "2 passed",
                 "## Classifier + OAA run", "| cam_miou |", "### Training throughput", "### CAM inference",
                 "### OAA store overhead", "every part passed"):
        assert part in text, part


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_make_bench_gpu_exits_0_without_cuda(tmp_path):
    out = tmp_path / "bench_gpu.md"
    p = subprocess.run(["make", "--no-print-directory", "bench-gpu", f"BENCH_GPU_OUT={out}"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "no CUDA device" in p.stdout, p.stdout + p.stderr
    assert not out.exists()


def test_voc_size_steps_take_the_map_size_the_network_makes():
    # VGG-16's pools floor (321 px -> 40, not ceil's 41); an odd size shows the difference on a CPU
    from wsss_lib.bench_train import bench_train

    res = bench_train("cpu", "vgg16", 33, 1, steps=1, warmup=0, num_classes=2, cases=("oaa_plus", "cam+oaa"),
                      precisions=("fp32",))
    assert [r["case"] for r in res["rows"]] == ["oaa_plus", "cam+oaa"]
