"""Data-parallel training (torchrun + DistributedDataParallel, gloo on CPU): the same batches and
weights as one process, the OAA store's shards merged exactly, resume with another world size."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from wsss_lib.runs.attention_io import load_attention
from wsss_lib.stages import get_stage
from wsss_lib.util.distributed import DistributedEpochSampler, check_world_batches, rank_chunk
from wsss_lib.engine.loop import epoch_order

PARAMS = {"epochs": 2, "batch_size": 8, "checkpoint_every": 2, "seed": 0, "device": "cpu", "gate": "all"}


def test_ranks_split_each_global_batch_and_resume_from_any_step():
    order = epoch_order(22, seed=3, epoch=1)
    one = list(DistributedEpochSampler(order, 8))
    two = [list(DistributedEpochSampler(order, 8, r, 2)) for r in range(2)]
    assert [len(b) for b in one] == [8, 8, 6]
    for k, batch in enumerate(one):  # the two ranks' chunks are the single process's batch, in order
        assert two[0][k] + two[1][k] == batch and len(two[0][k]) >= len(two[1][k])
    late = list(DistributedEpochSampler(order, 8, 1, 2, start_step=2))
    assert late == [two[1][2]] and len(DistributedEpochSampler(order, 8, 0, 2, start_step=1)) == 2
    assert rank_chunk([5, 6, 7], 1, 2) == [7]
    check_world_batches(22, 8, 2)
    with pytest.raises(ValueError, match="batch_size=8 with 25 images"):
        check_world_batches(25, 8, 2)  # the last batch of 1 image leaves a rank empty


def torchrun(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "wsss_lib.experiments.launch", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def maps(run, name):
    return load_attention(run / "attention" / f"{name}.pt")["maps"]


#: attention files keep their maps in float16: a float32 value that a sum in another order (another
#: number of processes, another machine) moves by 1e-7 can round to the neighbouring float16 value,
#: one float16 step away (2**-11 between 0.5 and 1: 4.9e-4 at 0.63, seen on a second machine), so
#: maps agree to within one step (relative 2**-10 covers it at every magnitude)
FP16_STEP = 2.0 ** -10


def assert_same_run(a, b, atol=2e-4):
    for name in ("oaa_max", "oaa_ave", "cam"):
        torch.testing.assert_close(maps(b, name), maps(a, name), atol=atol, rtol=FP16_STEP, msg=f"{name} differs")
    wa = torch.load(a / "checkpoint.pt", weights_only=False)
    wb = torch.load(b / "checkpoint.pt", weights_only=False)
    for k, v in wa["model"].items():
        if v.is_floating_point():
            torch.testing.assert_close(wb["model"][k], v, atol=atol, rtol=1e-4, msg=f"weight {k} differs")
    assert torch.equal(wb["extra"]["store"]["counts"], wa["extra"]["store"]["counts"])


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_and_resume_in_one(tmp_path, quick_voc):
    stage = get_stage("classifier")
    ref = stage(quick=True, run_dir=str(tmp_path / "one"), progress=False, **PARAMS)
    counts = torch.load(ref / "checkpoint.pt", weights_only=False)["extra"]["store"]["counts"]
    assert bool((counts == 2).all())  # gate "all": every pair accumulated once per epoch
    assert (maps(ref, "oaa_max").amax((1, 2)) > 0.5).float().mean() > 0.2  # and many maps are not empty

    args = [f"{k}={v}" for k, v in PARAMS.items()] + ["quick=true"]
    res = torchrun(["classifier", f"run_dir={tmp_path / 'two'}", *args])
    assert res.returncode == 0, res.stderr[-3000:]
    two = tmp_path / "two"
    assert res.stdout.strip().splitlines()[-1] == str(two)  # rank 0 alone prints the run folder
    assert torch.load(two / "checkpoint.pt", weights_only=False)["world_size"] == 2
    # the merged shards hold every pair the single process accumulated, with the same maps
    assert_same_run(ref, two)

    # killed mid-epoch 2 (last checkpoint: step 8 of 12, written by 2 ranks) -> resumed by 1 process
    res = torchrun(["classifier", f"run_dir={tmp_path / 'resumed'}", "stop_after_steps=9", *args])
    assert res.returncode != 0 and "stopped after 9 steps" in res.stderr
    ck = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert (ck["world_size"], ck["global_step"], ck["epoch"], ck["step_in_epoch"]) == (2, 8, 1, 2)
    resumed = stage(quick=True, run_dir=str(tmp_path / "resumed"), progress=False, **PARAMS)
    assert_same_run(ref, resumed)


@pytest.mark.slow
def test_every_other_training_stage_runs_under_torchrun(tmp_path, quick_voc):
    # OAA+ and segmentation make their upstream runs inside the process group too (the classifier
    # by 2 ranks, the pseudo labels by rank 0 alone); rank 0 writes every folder
    for stage in ("amr", "oaa_plus", "segmentation"):
        res = torchrun([stage, "quick=true", "device=cpu", "progress=false"], env={"WSSS_RUNS": str(tmp_path)})
        assert res.returncode == 0, f"{stage}: {res.stderr[-3000:]}"
        run = tmp_path / res.stdout.strip().splitlines()[-1].rsplit("/", 1)[-1]
        assert (run / "metrics.json").exists()
        assert torch.load(run / "checkpoint.pt", weights_only=False)["world_size"] == 2
