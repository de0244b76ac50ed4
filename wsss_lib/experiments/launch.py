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
"""

from __future__ import annotations

import argparse
import sys


def parse_assignments(items: list[str]) -> dict:
    """``["seed=1", "loss=hl"]`` -> ``{"seed": 1, "loss": "hl"}`` (values read as YAML)."""
    from wsss_lib.experiments.batch import parse_value

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"argument {item!r}: expected name=value (e.g. seed=1)")
        out[name] = parse_value(value)
    return out


def main(argv: list[str] | None = None) -> int:
    import torch.distributed as dist

    from wsss_lib.stages import ORDER, get_stage
    from wsss_lib.util import distributed as D
    from wsss_lib.runs.profile import resolve_profile

    ap = argparse.ArgumentParser(prog="python -m wsss_lib.experiments.launch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=ORDER, help="the stage to run")
    ap.add_argument("params", nargs="*", metavar="name=value", help="parameters of the stage call")
    args = ap.parse_args(argv)
    try:
        params = parse_assignments(args.params)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        params["quick"] = resolve_profile(params.get("quick", False))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stage = get_stage(args.stage)
    unknown = sorted(set(params) - set(stage.known_parameters()) - {"progress", "stop_after_steps"})
    if unknown:  # before any process group or work
        print(f"error: unknown parameter(s) {unknown} for stage {stage.name}; known: {sorted(stage.known_parameters())}",
              file=sys.stderr)
        return 2
    joined = D.init_from_env(str(params.get("device", "auto")))
    try:
        run = stage(**params)
        rank = D.world()[0]
        D.barrier()  # every rank leaves together (rank 0 scored and wrote meanwhile)
    finally:
        if joined:
            dist.destroy_process_group()
    if rank == 0:
        print(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
