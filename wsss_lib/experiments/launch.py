"""Run one stage from the command line, in one process or under ``torchrun`` (data parallel).

    python -m wsss_lib.experiments.launch classifier seed=0 epochs=15
    torchrun --standalone --nproc_per_node 4 -m wsss_lib.experiments.launch classifier data_root=/data/VOC2012 \\
        backbone=vgg16 crop_size=321 batch_size=20
    torchrun --standalone --nproc_per_node 2 -m wsss_lib.experiments.launch segmentation source=oaa_max

Arguments are ``name=value`` (values read as YAML: ``0.5``, ``true``, ``vgg16``): the stage's
config fields, its upstream runs and the run arguments (``data_root``, ``run_dir``, ``seed``,
``device``, ``quick``). Under ``torchrun`` every rank joins the process group (NCCL on GPUs, gloo
on CPU), trains its share of every global batch and rank 0 writes the run folder, which is the
same folder a single process would make (the number of processes is not part of a run's identity:
``batch_size`` is the global batch, split over the ranks). Rank 0 prints the run folder.

On a real VOC folder where SBD (``sbd_root=``) or ``ImageSets/Segmentation/train_aug.txt`` is there,
a stage that is given no ``train_split`` trains on ``train_aug`` (the papers' 10,582 images), as the
VOC job does, and says so; ``train_split=train`` asks for VOC's 1,464 train images. The embedded
benchmark and a Python or notebook call keep the stage's default (``train``).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch.distributed as dist

from wsss_lib.experiments.grids import parse_value
from wsss_lib.experiments.voc import default_train_split
from wsss_lib.runs.profile import resolve_profile
from wsss_lib.stages import ORDER, get_stage
from wsss_lib.stages.base import execute_plan
from wsss_lib.util import distributed as D
from wsss_lib.util.io import DiskFullError

#: the arguments of a stage call that are neither config fields nor run arguments
CALL_ARGS = ("progress", "stop_after_steps")


def parse_assignments(items: list[str]) -> dict:
    """``["seed=1", "loss=hl"]`` -> ``{"seed": 1, "loss": "hl"}`` (values read as YAML)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"argument {item!r}: expected name=value (e.g. seed=1)")
        out[name] = parse_value(value)
    return out


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 (done), 2 (a bad name, value or input, or a full disk: one line says which, before any
    work where it can be known before), 130 (interrupted: one line says how to resume)."""
    ap = argparse.ArgumentParser(prog="python -m wsss_lib.experiments.launch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=ORDER, help="the stage to run")
    ap.add_argument("params", nargs="*", metavar="name=value", help="parameters of the stage call")
    args = ap.parse_args(argv)
    stage = get_stage(args.stage)
    try:  # names and values, before any process group or work
        params = parse_assignments(args.params)
        params["quick"] = resolve_profile(params.get("quick", False))
        unknown = sorted(set(params) - set(stage.known_parameters()) - set(CALL_ARGS))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for stage {stage.name}; "
                             f"known: {sorted(stage.known_parameters())}")
        if "train_split" in stage.Config.field_names() and "train_split" not in params:
            split = default_train_split(str(params.get("data_root", "")), params.get("sbd_root"))
            if split:  # on VOC with SBD (or train_aug.txt): the papers' training set, said so
                params["train_split"] = split
                if os.environ.get("RANK", "0") == "0":  # under torchrun: once
                    print(f"[launch] train_split={split} (the papers' training set: SBD or train_aug.txt is there); "
                          "pass train_split=train for VOC's 1,464 train images", file=sys.stderr)
        config_params = {k: v for k, v in params.items() if k in stage.Config.field_names()}
        stage.config(params["quick"], seed=params.get("seed", 0), device=params.get("device", "auto"),
                     data_root=str(params.get("data_root", "")), **config_params)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    progress = params.pop("progress", True)
    stop_after_steps = params.pop("stop_after_steps", None)
    joined = D.init_from_env(str(params.get("device", "auto")))
    rank = 0
    try:
        try:
            plan = stage.plan(progress=progress, **params)  # inputs, upstream runs, weights: checked before work
        except (ValueError, FileNotFoundError) as e:
            if D.world()[0] == 0:
                print(f"error: {e}", file=sys.stderr)
            return 2
        run = execute_plan(plan, progress, stop_after_steps)
        rank = D.world()[0]
        D.barrier()  # every rank leaves together (rank 0 scored and wrote meanwhile)
    except DiskFullError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if D.world()[0] == 0:
            print(f"\ninterrupted: stage {stage.name}; run the same command again to resume its run from the last "
                  "checkpoint", file=sys.stderr)
        return 130
    finally:
        if joined:
            dist.destroy_process_group()
    if rank == 0:
        print(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
