"""Training throughput of every stage's step at a chosen size, fp32 against bf16 autocast.

    python -m wsss_lib.speed.bench train --device cuda --backbone vgg16 --image-size 321 --batch-size 16
    python -m wsss_lib.speed.bench voc --device cuda --out reports/bench_gpu.md    # the VOC-size set

Each case times the stage's **own** training step (``Stage.build_model`` and ``Stage.training_step``
of :mod:`wsss_lib.stages`, as the engine calls them, with channels_last and bf16 autocast on CUDA),
built on a synthetic run context: a layout of random image-level labels, the stage's default config
at the chosen backbone, random weights, and synthetic inputs (images, an upstream attention file for
OAA+, random pseudo labels for segmentation). A change to a stage's step changes its benchmark.
Cases: the classifier with the OAA store and recorders (``cam+oaa``), the plain CAM loss alone
(``cam``, the same network and BCE without the store), OAA+, AMR, segmentation. Reported: images/s
(median of timed steps after warm-up, synchronised around each step) and peak GPU memory.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as Fn

from wsss_lib.engine.common import TrainingSet, dense_source
from wsss_lib.engine.loop import Batch
from wsss_lib.runs.attention_io import save_attention
from wsss_lib.runs.profile import FULL
from wsss_lib.stages import get_stage, training_stages
from wsss_lib.stages.base import RunContext

#: the stage behind each case: the classifier twice (the plain CAM loss, and its own step with the OAA
#: store and recorders), then every other training stage of the registry under its own name, so a
#: stage added to :data:`wsss_lib.stages.ORDER` is benchmarked with no list edited here
CASE_STAGE = {"cam": "classifier", "cam+oaa": "classifier",
              **{st.name: st.name for st in training_stages() if st.name != "classifier"}}
CASES = tuple(CASE_STAGE)


def _device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


class SyntheticLayout:
    """What a stage's step reads of a VOC layout: ids, multi-hot labels, class count."""

    def __init__(self, n_images: int, num_classes: int, seed: int = 0) -> None:
        g = np.random.default_rng(seed)
        labels = g.random((n_images, num_classes)) < 0.1
        labels[np.arange(n_images), g.integers(0, num_classes, n_images)] = True
        self.labels = labels
        self.ids = [f"s{i:06d}" for i in range(n_images)]
        self.num_classes = num_classes + 1  # background included
        self.class_names = ("background", *(f"c{k}" for k in range(num_classes)))
        self.split = "train"

    def __len__(self) -> int:
        return len(self.ids)


class _RandomPseudoLabels:
    """Stands in for a pseudo-label folder: random label maps of the view size (segmentation)."""

    def __init__(self, num_classes: int, crop: int, device: torch.device) -> None:
        self.k1, self.crop, self.device = num_classes + 1, crop, device

    def views(self, host_indices, geo, crop):
        g = torch.Generator().manual_seed(len(host_indices))
        return torch.randint(0, self.k1, (len(host_indices), crop, crop), generator=g).to(self.device)


def stage_case(case: str, backbone: str, image_size: int, batch_size: int, num_classes: int, dev: torch.device,
               seg_network: str = "deeplab_largefov", n_images: int = 10582, tmp: str | Path | None = None,
               profile=None, overrides: dict | None = None):
    """``(model, step, batch_of)``: the stage's network and its own training step on a synthetic run
    context; ``batch_of(x, i)`` makes the engine's batch ``i`` around the images ``x``. The configs
    resolve under ``profile`` (default: the full one) on its default benchmark variant."""

    profile = profile or FULL
    stage = get_stage(CASE_STAGE[case])
    params = {"network": seg_network} if case == "segmentation" else {"backbone": backbone, **(overrides or {})}
    if case in ("cam", "cam+oaa"):
        params["epochs"] = 2  # the recorders keep a row per epoch; the step's cost does not depend on it
    cfg = stage.config(profile, seed=0, device=str(dev), **params)
    layout = SyntheticLayout(n_images, num_classes)
    tmp = Path(tmp or tempfile.mkdtemp(prefix="wsss-bench-"))
    upstream = {}
    stride = getattr(cfg, "output_stride", 8)
    size = (-(-image_size // stride),) * 2
    # a stage that reads a classifier run's attention (OAA+, a new method) gets one: every classifier
    # source as a random attention file (AMR reads the classifier's weights instead: its spotlight
    # starts from random ones here)
    readers = [arg for arg, up in stage.upstream.items() if up == "classifier" and CASE_STAGE[case] != "amr"]
    if readers:
        maps = torch.rand(len(layout), num_classes, *size, generator=torch.Generator().manual_seed(0))
        for source in get_stage("classifier").sources:
            save_attention(tmp / "attention" / f"{source}.pt", dense_source(maps, layout), source)
        upstream.update({arg: tmp for arg in readers})
    ctx = RunContext(cfg, 0, profile, dev, tmp, layout, tmp, upstream, progress=False)
    ctx.ts = TrainingSet(layout, None, image_size, size, num_classes)
    if case == "segmentation":
        ctx.state["labels"] = _RandomPseudoLabels(num_classes, image_size, dev)
    model = stage.build_model(ctx).to(dev)
    step, _ = stage.training_step(ctx, model)
    if case == "cam":  # the same network and loss, without the OAA store and the recorders
        def step(b):  # noqa: F811 (the plain CAM step the classifier's step extends)
            return Fn.binary_cross_entropy_with_logits(b.model(b.views).float().mean(dim=(2, 3)), b.labels)
    labels = torch.from_numpy(layout.labels).float().to(dev)
    geo = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0], device=dev).expand(batch_size, 5)

    def batch_of(x: torch.Tensor, i: int) -> Batch:
        idx = [(i * batch_size + j) % len(layout) for j in range(batch_size)]
        ind = torch.tensor(idx, device=dev)
        return Batch(x, geo, labels[ind], ind, [layout.ids[k] for k in idx], 0, False, model, idx)

    return model, step, batch_of


def bench_train(device: str = "cuda", backbone: str = "vgg16", image_size: int = 321, batch_size: int = 16,
                steps: int = 20, warmup: int = 5, num_classes: int = 20, cases=CASES,
                precisions=("fp32", "bf16"), seg_network: str = "deeplab_largefov", seg_image_size: int | None = None,
                n_images: int = 10582, profile=None, overrides: dict | None = None) -> dict:
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    rows = []
    for case in cases:
        for prec in precisions:
            if prec == "bf16" and not cuda:
                continue  # bf16 autocast is the GPU fast path
            torch.manual_seed(0)
            size = seg_image_size or image_size if case == "segmentation" else image_size
            model, step, batch_of = stage_case(case, backbone, size, batch_size, num_classes, dev, seg_network,
                                               n_images=n_images, profile=profile, overrides=overrides)
            if cuda:
                model.to(memory_format=torch.channels_last)
                torch.cuda.reset_peak_memory_stats(dev)
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            x = torch.randn(batch_size, 3, size, size, device=dev)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            times = []
            for i in range(warmup + steps):
                if cuda:
                    torch.cuda.synchronize(dev)
                t0 = time.perf_counter()
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=prec == "bf16"):
                    loss = step(batch_of(x, i))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if cuda:
                    torch.cuda.synchronize(dev)
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            rows.append({"case": case, "precision": prec, "image_size": size, "batch_size": batch_size,
                         "images_per_s": batch_size / med, "ms_per_step": 1000 * med,
                         "peak_mem_gib": torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else float("nan")})
            del model, opt, step
            if cuda:
                torch.cuda.empty_cache()
    return {"device": _device_name(dev), "torch": torch.__version__, "backbone": backbone, "rows": rows,
            "seg_network": seg_network}


def fastest_rates(configs: dict[str, dict], rounds: int, threads: int) -> dict[tuple[str, str], float]:
    """``{(label, case): images/s}``: :func:`bench_train` on the CPU for each ``label -> keyword
    arguments`` of ``configs``, in ``rounds`` interleaved rounds (the fastest kept), on ``threads``
    CPU threads: the side-by-side measurement every cost table here is made of."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    best: dict[tuple[str, str], float] = {}
    try:
        for _ in range(rounds):
            for label, kwargs in configs.items():
                for row in bench_train("cpu", **kwargs)["rows"]:
                    best[(label, row["case"])] = max(best.get((label, row["case"]), 0.0), row["images_per_s"])
    finally:
        torch.set_num_threads(before)
    return best


def variant_costs(variants: dict[str, int], rounds: int = 2, steps: int = 6, threads: int = 1,
                  batch_size: int = 16) -> "pd.DataFrame":
    """Images/s of every stage's own training step (:func:`wsss_lib.speed.training.bench_train`: the
    classifier alone and with the OAA store, OAA+, AMR, the ``small`` segmentation network) on the
    tiny backbone, each ``variant -> image size`` with the full profile's network settings for that
    variant as the default, side by side (``rounds`` interleaved rounds, the fastest kept), on
    ``threads`` CPU threads (the main job runs each point on one). The cost column is relative to
    the first variant: what the main job's stages cost on another default."""

    best = fastest_rates({variant: dict(backbone="tiny", image_size=size, batch_size=batch_size, steps=steps, warmup=2,
                                        num_classes=8, precisions=("fp32",), seg_network="small", n_images=2000,
                                        profile=replace(FULL, default_variant=variant))
                          for variant, size in variants.items()}, rounds, threads)
    first = next(iter(variants))
    rows = []
    for case in CASES:
        row = {"stage step": case}
        for v, size in variants.items():
            row[f"{v} ({size} px), images/s"] = f"{best[(v, case)]:.0f}"
        for v in list(variants)[1:]:
            row[f"{v} cost (x {first})"] = f"{best[(first, case)] / best[(v, case)]:.2f}"
        rows.append(row)

    return pd.DataFrame(rows)


#: the backbones :func:`backbone_costs` compares: ``label -> (backbone, config overrides)``
BACKBONE_CASES = {"tiny (pretraining task)": ("tiny", {}),
                  "mobilenet_v2 (ImageNet), stride 16": ("mobilenet_v2", {"output_stride": 16}),
                  "mobilenet_v2 (ImageNet), stride 8": ("mobilenet_v2", {"output_stride": 8})}


def backbone_costs(image_size: int, rounds: int = 2, steps: int = 4, threads: int = 1, batch_size: int = 16,
                   cases=("cam+oaa", "oaa_plus")) -> "pd.DataFrame":
    """Images/s of the classifier's (+ OAA store) and OAA+'s training steps on each backbone of
    :data:`BACKBONE_CASES` at ``image_size`` (the default benchmark's), with the full profile's
    settings otherwise (pretrained: BatchNorm frozen), one CPU thread as the main job's points,
    side by side (``rounds`` interleaved rounds, the fastest kept); the cost column is relative to
    ``tiny``'s step."""
    import pandas as pd  # lazy: heavy: only the tables of the benchmarks use pandas

    best = fastest_rates({label: dict(backbone=backbone, image_size=image_size, batch_size=batch_size, steps=steps,
                                      warmup=1, num_classes=8, cases=cases, precisions=("fp32",), n_images=2000,
                                      overrides=overrides)
                          for label, (backbone, overrides) in BACKBONE_CASES.items()}, rounds, threads)
    first = next(iter(BACKBONE_CASES))
    rows = []
    for label in BACKBONE_CASES:
        for case in cases:
            rows.append({"backbone": label, "stage step": case, f"images/s ({image_size} px)": f"{best[(label, case)]:.1f}",
                         "cost (x tiny)": f"{best[(first, case)] / best[(label, case)]:.1f}"})
    return pd.DataFrame(rows)


def format_train(res: dict) -> str:
    lines = [f"### Training throughput on {res['device']} (torch {res['torch']}), {res['backbone']} backbone; "
             f"segmentation: {res['seg_network']}", "",
             "| stage step | precision | size | batch | images/s | ms/step | peak GPU memory (GiB) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['case']} | {r['precision']} | {r['image_size']} | {r['batch_size']} | "
                     f"{r['images_per_s']:.1f} | {r['ms_per_step']:.1f} | {r['peak_mem_gib']:.2f} |")
    fp32 = {r["case"]: r["images_per_s"] for r in res["rows"] if r["precision"] == "fp32"}
    bf16 = {r["case"]: r["images_per_s"] for r in res["rows"] if r["precision"] == "bf16"}
    if bf16:
        lines += ["", "bf16 over fp32: " + ", ".join(f"{c} {bf16[c] / fp32[c]:.2f}x" for c in bf16 if c in fp32)]
    if "cam" in fp32 and "cam+oaa" in fp32:
        lines += ["", "OAA store's share of a step (fp32): "
                  f"{100 * (fp32['cam'] / fp32['cam+oaa'] - 1):+.1f}% time against a plain CAM step"]
    return "\n".join(lines)
