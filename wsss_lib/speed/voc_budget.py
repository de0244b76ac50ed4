"""What a VOC run costs: host memory and disk per image measured on the rehearsal folder
(:mod:`wsss_lib.data.rehearsal`), extrapolated to train_aug's 10,582 images, and a per-stage GPU
time projection from the training rates measured on an H200 (``reports/bench_gpu.md``).

    python -m wsss_lib.data.rehearsal /tmp/reh --fraction 0.02
    python -m wsss_lib.experiments.launch classifier data_root=/tmp/reh/VOCdevkit/VOC2012 crop_size=321 epochs=2
        train_split=train_aug sbd_root=/tmp/reh/benchmark_RELEASE/dataset   # (one command line)
    python -m wsss_lib.speed.voc_budget --rehearsal /tmp/reh --run runs/classifier-<hash> --out reports/voc_budget.md

Measured, not estimated: the rehearsal's mean pixels per image (VOC's size distribution), the bytes
of every part of a classifier run's checkpoint per (image, class) slot and per epoch, and the
run's files. Projected: those bytes times VOC's counts, and the GPU minutes of each stage's
training as images x epochs / the H200's measured images/s (:data:`H200_RATES`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from wsss_lib.data.saliency import load_saliency
from wsss_lib.data.voc import VOCLayout, VOCSegDataset, load_image
from wsss_lib.engine.adversarial_cam import OFFICIAL_SCALES, ClimbSettings
from wsss_lib.engine.loop import collate_samples
from wsss_lib.formulas.label_rules import official_attention_prep, saliency_labels
from wsss_lib.models.amr import build_amr
from wsss_lib.runs.attention_io import load_attention
from wsss_lib.stages.pseudo_labels import LabelJobs, PseudoLabelConfig
from wsss_lib.util.io import read_json, torch_load, write_text

#: train_aug's size, and the classifier's average present classes per image on VOC 2012 (about 1.5)
VOC_TRAIN_AUG = 10582

#: training images/s on one NVIDIA H200 (reports/bench_gpu.md, second session, torch 2.11, synthetic
#: tensors of VOC size, the stages' own steps): (stage step, backbone, size, batch) -> (fp32, bf16)
H200_RATES = {
    "classifier + OAA store (VGG16, 321 px)": (519.8, 1023.3),
    "OAA+ (VGG16, 321 px)": (524.0, 1037.3),
    "CAM classifier (ResNet-50, 512 px)": (157.5, 226.0),
    "AMR (ResNet-50, 512 px, the default network)": (107.9, 152.8),
    "DeepLab-LargeFOV (VGG16, 321 px)": (396.9, 613.7),
}

#: the papers' / official codes' schedules: stage -> (images per epoch, epochs, where from)
SCHEDULES = {
    "classifier + OAA store (VGG16, 321 px)": (VOC_TRAIN_AUG, 15, "OAA paper / OAA-PyTorch: 15 epochs on train_aug"),
    "OAA+ (VGG16, 321 px)": (VOC_TRAIN_AUG, 15, "OAA-PyTorch train_iam: 15 epochs"),
    "CAM classifier (ResNet-50, 512 px)": (VOC_TRAIN_AUG, 8, "JayQine/AMR run_sample.py: cam_num_epoches 8"),
    "AMR (ResNet-50, 512 px, the default network)": (VOC_TRAIN_AUG, 8, "JayQine/AMR run_sample.py: cam_num_epoches 8, crop 512"),
    "DeepLab-LargeFOV (VGG16, 321 px)": (20 * 6000, 1, "DeepLab-LargeFOV's VOC solver: 6,000 iterations of batch 20"),
}


#: dense bf16 tensor-core peak of one H100 SXM and one H200 (the same chip's compute), FLOP/s
BF16_PEAK = 989.4e12
#: the share of that peak the best training step reached on the H200 (the classifier + OAA step, VGG16
#: at 321 px, bf16: 1,023 images/s; reports/bench_gpu.md), taken as what a tuned make_cam might reach
REFERENCE_EFFICIENCY = 0.32
#: VOC 2012's most common image size (the rehearsal's too): 375 x 500
VOC_SIZE = (375, 500)
#: the AMR rows of the VOC job (AMR, AMR + threshold + area): each reads its network with make_cam
VOC_JOB_AMR_RUNS = 2
#: how many runs of each stage the VOC job (wsss_lib/experiments/voc.py) trains: OAA+ with MCE and HL,
#: two AMR variants, a DeepLab on each of its 7 rows' pseudo labels
VOC_JOB_RUNS = {"classifier + OAA store (VGG16, 321 px)": 1, "OAA+ (VGG16, 321 px)": 2,
                "CAM classifier (ResNet-50, 512 px)": 1, "AMR (ResNet-50, 512 px, the default network)": VOC_JOB_AMR_RUNS,
                "DeepLab-LargeFOV (VGG16, 321 px)": 7}


def make_cam_flops(size: tuple[int, int] = VOC_SIZE) -> dict:
    """FLOPs of the official ``make_cam`` for one image of ``size`` and one present class, per branch
    of the official AMR network (ResNet-50 at output stride 16, no extra head, AMMs in the
    bottlenecks): every climbing iteration of the official schedule (27 iterations, 7 scales; the
    first scale's 13) is a forward and a backward to the input of an image-and-mirror pair, counted
    by torch's FLOP counter on meta tensors (no memory, no weights) at each scale's rounded size."""
    with torch.device("meta"):
        net = build_amr("resnet50", 20, None, output_stride=16, placement="bottleneck", head_convs=0,
                        form="official").eval()
    net.requires_grad_(False)  # the climb differentiates to the input only
    out = {}
    for name in ("spotlight", "compensation"):
        branch, total = getattr(net, name), 0.0
        for idx, iters, _ in ClimbSettings(adv_iter=27).schedule():
            h, w = (int(np.round(v * OFFICIAL_SCALES[idx])) for v in size)
            x = torch.zeros(2, 3, h, w, device="meta", requires_grad=True)
            with FlopCounterMode(display=False) as fc:
                branch(x).relu().mean().backward()
            total += iters * fc.get_total_flops()
        out[name] = total
    return out


def make_cam_lines(classes_per_image: float, flops: dict) -> list[str]:
    """The make_cam section of the page: the FLOP bound (``flops``: :func:`make_cam_flops`) per AMR
    run and for the VOC job."""
    per_image = sum(flops.values()) * classes_per_image
    run = per_image * VOC_TRAIN_AUG
    peak_min = run / BF16_PEAK / 60
    eff_min = peak_min / REFERENCE_EFFICIENCY
    return [
        "## AMR's official make_cam: the FLOP bound", "",
        f"Counted (`make_cam_flops`: torch's FLOP counter on meta tensors): one {VOC_SIZE[0]} x {VOC_SIZE[1]} image, "
        "one present class, the official network (ResNet-50, output stride 16, no extra head, AMMs in the "
        "bottlenecks), the official schedule (27 climbing iterations at 7 scales, 13 at scale 0.5; each a forward "
        "and a backward to the input of the image and its mirror): "
        f"spotlight {flops['spotlight'] / 1e12:.1f} TFLOP, compensation {flops['compensation'] / 1e12:.1f} TFLOP. "
        f"With {classes_per_image:.2f} present classes an image (as measured above):", "",
        "| | FLOP | minutes at the bf16 peak (H100 SXM / H200, 989 TFLOP/s) | minutes at the best training "
        f"step's efficiency ({100 * REFERENCE_EFFICIENCY:.0f}% of the peak) |", "|---|---:|---:|---:|",
        f"| one image | {per_image:.2e} | | |",
        f"| one AMR run over train_aug ({VOC_TRAIN_AUG:,} images) | {run:.2e} | {peak_min:.0f} | {eff_min:.0f} |",
        f"| the VOC job (its {VOC_JOB_AMR_RUNS} AMR rows) | {VOC_JOB_AMR_RUNS * run:.2e} | "
        f"{VOC_JOB_AMR_RUNS * peak_min:.0f} | {VOC_JOB_AMR_RUNS * eff_min:.0f} |", "",
        "Not measured: the batched make_cam's efficiency on a GPU (no GPU has run it; there it now runs under bf16 "
        "autocast). The climb's steps are small convolutions on one scale's chunk at a time, "
        "so its efficiency may well be below the training step's.", ""]


#: the batched multi-scale CAM inference on the H200 (reports/bench_gpu.md), images/s
INFERENCE_RATE = 152.0


#: CPU cores of the lent GPU machines (H100 / H200: 16 each, README of the device tool); the CUDA
#: default of loader workers (``engine.loop.loader_workers``: up to 8, one core left for the main process)
GPU_MACHINE_CORES = 16
CUDA_LOADER_WORKERS = 8


def rehearsal_train_aug(rehearsal: Path) -> VOCLayout:
    """The rehearsal folder's train_aug list (its VOC folder with its SBD folder)."""
    return VOCLayout(rehearsal / "VOCdevkit" / "VOC2012", "train_aug", sbd_root=rehearsal / "benchmark_RELEASE" / "dataset")


def pseudo_label_minutes(costs: dict, workers: int = CUDA_LOADER_WORKERS) -> float:
    """Wall minutes of one pseudo-label run over train_aug on ``workers`` loader workers (``costs``:
    :func:`host_costs`)."""
    return VOC_TRAIN_AUG * costs["pseudo_labels"] / workers / 60


def _packaged_photos() -> list[Path]:
    """Real photos shipped with a locked package (scikit-learn's ``china.jpg`` and ``flower.jpg``,
    427 x 640), to set the rehearsal's drawn JPEGs against; none where it is not installed."""
    try:
        import sklearn.datasets  # lazy: only its packaged photos are read, by this page alone
    except ImportError:  # pragma: no cover - the lock installs it
        return []
    folder = Path(sklearn.datasets.__file__).parent / "images"
    return sorted(folder.glob("*.jpg"))


def _decode_seconds(paths: list[Path], rounds: int = 3) -> tuple[float, float]:
    """``(seconds, pixels)`` of decoding each of ``paths`` once (``load_image``, the stages' reader;
    the fastest of ``rounds``), summed over the paths."""

    best, pixels = float("inf"), 0
    for _ in range(rounds):
        t, px = time.perf_counter(), 0
        for path in paths:
            px += int(np.prod(load_image(Path(path)).shape[:2]))
        best, pixels = min(best, time.perf_counter() - t), px
    return best, float(pixels)


def host_costs(rehearsal: Path, run: Path, images: int = 120, batch: int = 16) -> dict:
    """Seconds of one CPU thread per image for the two host jobs of a VOC run, measured on the
    rehearsal's train_aug images (VOC's size distribution) with the stages' own code:

    - ``loader``: what a training loader worker does per image (``VOCSegDataset``: the JPEG decoded,
      no mask; batches of ``batch`` put on one canvas by ``collate_samples``);
    - ``pseudo_labels``: what a pseudo-label job does per image (``LabelJobs``: the ``cam`` maps of
      ``run`` prepared as the official ``res.py``, the official ``gen_gt.py`` rule with the image's
      saliency map, the PNG written, the label counted against the mask), split into its
      ``pseudo_prep_rule`` part (preparation and rule, what a device version could take over) and the
      rest (mask, saliency and PNG I/O, the counts)."""
    layout = rehearsal_train_aug(rehearsal)
    n = min(images, len(layout))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ds = VOCSegDataset(layout, with_mask=False)
        collate_samples([ds[0]])  # warm-up: the decoders' first use
        t = time.perf_counter()
        for b in range(0, n, batch):
            collate_samples([ds[i] for i in range(b, min(b + batch, n))])
        loader = (time.perf_counter() - t) / n
        # the decoding alone, per pixel, against real photos' (the rehearsal's JPEGs are drawn scenes)
        decode, decode_px = _decode_seconds([layout.image_path(i) for i in range(n)])
        photo, photo_px = _decode_seconds(_packaged_photos())

        src = load_attention(run / "attention" / "cam.pt")
        if src["image_ids"] != layout.ids:
            raise ValueError(f"{run}: attention/cam.pt was made for other images than {layout.root}'s train_aug")
        slots: dict[int, list[int]] = {}
        for k, i in enumerate(src["slot_image"].tolist()):
            slots.setdefault(i, []).append(k)
        cfg = PseudoLabelConfig(source="cam", mode="saliency", attention_prep="official")
        with tempfile.TemporaryDirectory() as tmp:
            jobs = LabelJobs(cfg, layout, src, slots, rehearsal / "saliency", Path(tmp))
            jobs[0]  # warm-up: OpenCV's import, the first PNG
            t = time.perf_counter()
            for i in range(n):
                jobs[i]
            labels = (time.perf_counter() - t) / n
        prep_rule = 0.0  # the same images' preparation and rule alone (their inputs read first)
        for i in range(n):
            sl = slots.get(i, [])
            if not sl:
                continue
            shape = layout.load_mask(i).shape
            sal = load_saliency(rehearsal / "saliency", layout.ids[i], shape)
            t = time.perf_counter()
            att = official_attention_prep(src["maps"][sl].numpy(), shape)
            saliency_labels(att, src["slot_class"][sl].numpy(), sal)
            prep_rule += time.perf_counter() - t
    finally:
        torch.set_num_threads(before)
    return {"images": n, "loader": loader, "pseudo_labels": labels, "pseudo_prep_rule": prep_rule / n,
            "decode_per_pixel": decode / max(decode_px, 1), "photo_decode_per_pixel": photo / max(photo_px, 1) if photo_px else None,
            "mean_pixels": decode_px / n}


def host_lines(costs: dict) -> list[str]:
    """The page's section on the host's share (``costs``: :func:`host_costs`), projected to train_aug
    and set against the H200's training rates."""
    pl, pr, px = costs["pseudo_labels"], costs["pseudo_prep_rule"], costs["mean_pixels"]
    drawn = costs["decode_per_pixel"] * px
    photo = (costs["photo_decode_per_pixel"] or costs["decode_per_pixel"]) * px
    ld = costs["loader"] + max(photo - drawn, 0.0)  # a worker's seconds an image with real photos' decoding
    need = {stage: bf16 * ld for stage, (_, bf16) in H200_RATES.items()}
    workers = CUDA_LOADER_WORKERS
    pl_min = pseudo_label_minutes(costs, workers=1)  # core-minutes
    saved_min = pseudo_label_minutes({"pseudo_labels": pr})
    lines = [
        "## The host's share: data loading and pseudo labels, measured on this CPU", "",
        f"`host_costs`: one CPU thread, the stages' own code, the first {costs['images']} train_aug images of the "
        "rehearsal (VOC's sizes; the classifier run's `cam` maps for the pseudo labels). This machine's cores, not "
        "a GPU machine's: a faster core divides these figures.", "",
        "| host work | per image, one core | images/s a core | train_aug, one core |", "|---|---:|---:|---:|",
        f"| a training loader worker: JPEG decoded, batches of 16 on one canvas (`VOCSegDataset`, "
        f"`collate_samples`) | {1e3 * costs['loader']:.1f} ms; with real photos' decoding {1e3 * ld:.1f} ms | "
        f"{1 / ld:.0f} | {VOC_TRAIN_AUG * ld / 60:.1f} min an epoch |",
        f"| a pseudo-label job: the official preparation (8-bit maps, OpenCV bicubic, min-max) and `gen_gt.py`'s "
        f"rule with the saliency map, the PNG written, the label counted against its mask (`LabelJobs`) | "
        f"{1e3 * pl:.1f} ms (preparation and rule {1e3 * pr:.1f} ms) | {1 / pl:.0f} | {pl_min:.1f} min a run |", "",
        f"The rehearsal's JPEGs are drawn scenes: decoding one of its images ({px:,.0f} pixels on average) takes "
        f"{1e3 * drawn:.2f} ms, a real photo of that size {1e3 * photo:.2f} ms (scikit-learn's packaged photos, "
        "per pixel); the loader's figures with real photos add the difference.", "",
        "**Loader workers the training rates need** (the H200's bf16 images/s times a worker's seconds an image; "
        f"a CUDA run starts {workers} by default, `num_workers` sets more; a lent GPU machine has "
        f"{GPU_MACHINE_CORES} cores):", "",
        "| stage | H200 bf16 images/s | cores of loading it needs |", "|---|---:|---:|",
        *[f"| {stage} | {H200_RATES[stage][1]:,.0f} | {c:.1f} |" for stage, c in need.items()], ""]
    short = [stage for stage, c in need.items() if c > workers]
    if short:
        lines.append(f"So the loading cannot keep up with {', '.join(short)} on {workers} workers of cores like these "
                     f"(the step would wait for its input: at most {workers / ld:,.0f} images/s); the other stages' "
                     "loading fits. Not measured on the GPU machine's own cores.")
    else:
        lines.append(f"So the default {workers} workers of cores like these keep up with every stage's training rate "
                     f"(the fastest needs {max(need.values()):.1f}). Not measured on the GPU machine's own cores.")
    lines += ["", f"**The pseudo labels stay on the host, in loader workers** (decided from these figures): one run "
              f"over train_aug costs {pl_min:.1f} core-minutes, {pseudo_label_minutes(costs):.1f} minutes on the "
              f"{CUDA_LOADER_WORKERS} workers a CUDA run gets. A device version could take over the preparation and "
              f"the rule only ({100 * pr / pl:.0f}% of a job; reading the mask and the saliency map and writing the "
              f"PNG stay on the host), so it would save at most {saved_min:.1f} minutes a run, and its bicubic "
              "resize would not be OpenCV's fixed-point one: its labels would no longer be the official code's "
              "bit for bit.", ""]
    return lines


def mean_pixels(rehearsal: Path) -> tuple[float, int]:
    """``(mean H x W, images)`` over the rehearsal's train_aug masks."""
    layout = rehearsal_train_aug(rehearsal)
    px = [np.prod(layout.load_mask(i).shape) for i in range(len(layout))]
    return float(np.mean(px)), len(px)


def _nbytes(o) -> int:
    if torch.is_tensor(o):
        return o.numel() * o.element_size()
    if isinstance(o, dict):
        return sum(_nbytes(v) for v in o.values())
    if isinstance(o, (list, tuple)):
        return sum(_nbytes(v) for v in o)
    return 0


def checkpoint_parts(run: Path) -> dict:
    """Bytes of each part of a classifier run's checkpoint, its slot count, images and epochs."""
    ck = torch_load(run / "checkpoint.pt", weights_only=False)
    extra = ck.get("extra", {})
    params = read_json(run / "params.json")["params"]
    slots = int(extra["store"]["slot_image"].numel())
    images = len(extra["store"]["image_ids"])
    epochs = int(params["epochs"])
    h, w = extra["store"]["size"]
    return {"drift_slot_epoch": h * w * 2 + 1,  # one fp16 map and its "seen" flag per (slot, epoch)
            "weights": _nbytes(ck["model"]), "optimizer": _nbytes(ck["optimizer"]),
            "store": _nbytes(extra.get("store", {})), "drift": _nbytes(extra.get("drift", {})),
            "snapshots": _nbytes(extra.get("snapshots", {})), "file": (run / "checkpoint.pt").stat().st_size,
            "slots": slots, "images": images, "epochs": epochs}


def _gb(b: float) -> str:
    return f"{b / 1e9:.2f} GB"


def _run_cost_lines(run: Path) -> list[str]:
    """What the run's own ``metrics.json`` recorded of its cost (checkpoint and peak host memory), projected."""
    m = read_json(run / "metrics.json") if (run / "metrics.json").exists() else {}
    if "peak_host_bytes" not in m:
        return []
    split = read_json(run / "params.json").get("params", {}).get("train_split", "train")
    return [f"Recorded by the run itself (`metrics.json`, on its `{split}` list): checkpoint "
            f"{m['checkpoint_bytes'] / 1e6:.1f} MB ({m['checkpoint_bytes_per_image'] / 1e3:.0f} kB a training image), "
            f"peak host memory of its process {m['peak_host_bytes'] / 1e9:.2f} GB ({m['peak_host_bytes_per_image'] / 1e6:.1f} MB "
            "a training image; most of it is the interpreter, torch and the cached images, so it does not scale "
            "linearly: the per-image figures above are the ones to project).", ""]


def page(rehearsal: Path, run: Path, costs: dict | None = None) -> str:
    px, n_images = mean_pixels(rehearsal)
    costs = costs if costs is not None else host_costs(rehearsal, run)
    ck = checkpoint_parts(run)
    slots_per_image = ck["slots"] / ck["images"]
    voc_slots = slots_per_image * VOC_TRAIN_AUG
    drift_per_slot_epoch = ck["drift_slot_epoch"]
    store_per_slot = ck["store"] / ck["slots"]
    split = read_json(run / "params.json").get("params", {}).get("train_split", "train")
    lines = [
        "# The VOC budget: memory, disk and GPU time of a VOC run, measured on the rehearsal and projected", "",
        "`python -m wsss_lib.speed.voc_budget` (wsss_lib/speed/voc_budget.py). Measured here, on this code: the "
        f"rehearsal folder of `python -m wsss_lib.data.rehearsal` ({n_images} train_aug images of VOC's size "
        f"distribution: mean {px:,.0f} pixels an image) and a classifier + OAA run on its `{split}` list at crop 321 "
        f"(`{run.name}`: {ck['images']} images, {ck['slots']} (image, class) slots, {ck['epochs']} epochs, the tiny "
        "backbone: the store and drift record depend on the crop and output stride (8: 41 x 41 cells), not on the "
        f"backbone). Projected: the per-image and per-slot bytes times train_aug's {VOC_TRAIN_AUG:,} images "
        f"({slots_per_image:.2f} slots an image as measured).", "",
        "## Host memory and disk, per image and for train_aug", "",
        "| what | per image (measured) | train_aug (projected) | before / still to do |",
        "|---|---:|---:|---:|",
        f"| masks held by the CAM scorers (`VOCLayout.mask_tensor`: uint8, one copy a process that every "
        f"`CAMEvaluator` shares) | {px / 1e6:.2f} MB | {_gb(px * VOC_TRAIN_AUG)} | int64, one copy per scorer: "
        f"{_gb(px * 8 * VOC_TRAIN_AUG)} each |",
        f"| pseudo labels held by the segmentation stage (`PseudoLabelSet`: uint8) | {px / 1e6:.2f} MB | "
        f"{_gb(px * VOC_TRAIN_AUG)} | int64: {_gb(px * 8 * VOC_TRAIN_AUG)} |",
        f"| OAA store in the checkpoint (max, ave, pixel counts) | {store_per_slot * slots_per_image / 1e3:.1f} kB | "
        f"{_gb(store_per_slot * voc_slots)} | the same |",
        f"| drift record, per epoch recorded (an fp16 map of every slot): each finished epoch written once to "
        f"`drift_epochs/` (removed when the run ends), the checkpoint holding the epoch in progress only | "
        f"{drift_per_slot_epoch * slots_per_image / 1e3:.1f} kB | {_gb(drift_per_slot_epoch * voc_slots)} an epoch, "
        f"{_gb(drift_per_slot_epoch * voc_slots * 15)} written over 15 epochs | inside every per-epoch checkpoint: "
        f"{_gb(drift_per_slot_epoch * voc_slots * 15)} in each, "
        f"{_gb(drift_per_slot_epoch * voc_slots * 15 * 15)} written over 15 checkpoints |",
        "", f"The run's checkpoint here: {ck['file'] / 1e6:.1f} MB (weights {ck['weights'] / 1e6:.1f} MB, optimizer "
        f"{ck['optimizer'] / 1e6:.1f} MB, store {ck['store'] / 1e6:.2f} MB, drift {ck['drift'] / 1e6:.2f} MB, snapshots "
        f"{ck['snapshots'] / 1e6:.2f} MB). VGG16's weights and momentum add about 0.12 GB a checkpoint "
        "(14.7 M backbone parameters + the head, float32, twice).", "",
        "A checkpoint of the VGG16 classifier on train_aug thus holds about "
        f"{_gb(store_per_slot * voc_slots + drift_per_slot_epoch * voc_slots + 0.12e9)} at most (store + the drift "
        "record of the epoch in progress + weights and momentum; at an epoch's end, when it is written, "
        f"{_gb(store_per_slot * voc_slots + 0.12e9)}), and one is written every epoch.", "",
        *_run_cost_lines(run),
        "**Where this stands.** The masks and pseudo labels are held as uint8 (the masks once a process, shared by "
        "every scorer); the drift record is out of the per-epoch checkpoint (each epoch written once). The OAA "
        "store (float32 max and average maps) is the checkpoint's largest part on VOC.", "",
        "## GPU time per stage, projected from the H200's measured training rates", "",
        "Training only: images x epochs / images per second, with the rates `make bench-gpu` measured on one "
        "NVIDIA H200 (reports/bench_gpu.md, second session; synthetic tensors of VOC size, the stages' own steps, "
        "no data loading). An H100 (SXM) has the H200's SM count and bf16 peak and 70% of its memory bandwidth: "
        "the same minutes where a step is compute-bound, up to 1.4x where it is memory-bound (not measured on an "
        "H100).", "",
        "| stage | schedule | image-steps | fp32 min | bf16 min | source of the schedule |",
        "|---|---|---:|---:|---:|---|"]
    tot32 = tot16 = 0.0
    for stage, (per_epoch, epochs, src) in SCHEDULES.items():
        fp32, bf16 = H200_RATES[stage]
        n = per_epoch * epochs
        tot32 += n / fp32 / 60
        tot16 += n / bf16 / 60
        lines.append(f"| {stage} | {epochs} x {per_epoch:,} | {n:,} | {n / fp32 / 60:.1f} | {n / bf16 / 60:.1f} | {src} |")
    infer_min = 3 * VOC_TRAIN_AUG / INFERENCE_RATE / 60
    job16 = sum(VOC_JOB_RUNS[st] * per_epoch * epochs / H200_RATES[st][1] / 60
                for st, (per_epoch, epochs, _) in SCHEDULES.items())
    one_cam = VOC_TRAIN_AUG / INFERENCE_RATE / 60
    flops = make_cam_flops()
    mc_peak = sum(flops.values()) * slots_per_image * VOC_TRAIN_AUG / BF16_PEAK / 60
    pl_min = pseudo_label_minutes(costs)  # one pseudo-label run's wall minutes
    one_rest = tot16 + one_cam + pl_min
    job_rest = job16 + infer_min + VOC_JOB_RUNS["DeepLab-LargeFOV (VGG16, 321 px)"] * pl_min  # a pseudo-label run per DeepLab
    lines += [f"| **training, all stages** | | | **{tot32:.0f}** | **{tot16:.0f}** | |", "",
              "The AMR rows are the default network's rates (output stride 8 and a 3 x 512 head); the VOC job trains "
              "the official network (output stride 16, no extra head), which costs less: not measured on a GPU. Not in "
              "these minutes: the data loading and the pseudo labels (both on the host: measured in the next section) "
              "and the CAM inference over train_aug, not measured on a GPU (the "
              f"batched multi-scale inference ran at {INFERENCE_RATE:.0f} images/s on the H200: about "
              f"{VOC_TRAIN_AUG / INFERENCE_RATE / 60:.1f} min a source; the VOC job infers 3: the classifier and the two "
              f"OAA+ runs, about {infer_min:.0f} min).", "", *host_lines(costs), *make_cam_lines(slots_per_image, flops),
              "## Where this stands against the goal", "",
              "The goal: the whole VOC pipeline (one run of each stage: classifier + OAA, OAA+, AMR, official "
              "`make_cam`, pseudo labels, DeepLab) within 90 minutes on one H100, everything except `make_cam` within "
              "40. On the H200's rates, bf16; the pseudo labels on the default loader workers of cores like this "
              "machine's; the loading hidden behind the steps (it keeps up: above):", "",
              "| | training | CAM inference | pseudo labels | everything except `make_cam` | `make_cam` at the bf16 "
              f"peak / at {100 * REFERENCE_EFFICIENCY:.0f}% of it | total |", "|---|---:|---:|---:|---:|---:|---:|",
              f"| one pipeline | {tot16:.0f} min | {one_cam:.0f} min | {pl_min:.1f} min | {one_rest:.0f} min (goal 40) | "
              f"{mc_peak:.0f} / {mc_peak / REFERENCE_EFFICIENCY:.0f} min | {one_rest + mc_peak:.0f} - "
              f"{one_rest + mc_peak / REFERENCE_EFFICIENCY:.0f} min (goal 90) |",
              f"| the VOC job (`make voc`: OAA+ x 2, AMR x 2, DeepLab x 7) | {job16:.0f} min | {infer_min:.0f} min | "
              f"{job_rest - job16 - infer_min:.1f} min | {job_rest:.0f} min | {VOC_JOB_AMR_RUNS * mc_peak:.0f} / "
              f"{VOC_JOB_AMR_RUNS * mc_peak / REFERENCE_EFFICIENCY:.0f} min | {job_rest + VOC_JOB_AMR_RUNS * mc_peak:.0f}"
              f" - {job_rest + VOC_JOB_AMR_RUNS * mc_peak / REFERENCE_EFFICIENCY:.0f} min |", "",
              "So one pipeline's everything-except-`make_cam` fits its 40 minutes (training measured on synthetic "
              "tensors; the AMR training at the default network's rate). `make_cam` decides "
              "the 90: one pipeline fits only if the batched climb reaches about "
              f"{100 * mc_peak / max(90 - one_rest, 1e-9):.0f}% of the bf16 peak, which no GPU has measured."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m wsss_lib.speed.voc_budget", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rehearsal", type=Path, required=True, help="a folder written by python -m wsss_lib.data.rehearsal")
    ap.add_argument("--run", type=Path, required=True, help="a classifier run on the rehearsal (its checkpoint is read)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    for p, what in ((args.rehearsal, "rehearsal folder"), (args.run / "checkpoint.pt", "classifier run's checkpoint")):
        if not p.exists():
            print(f"error: {what} {p} not found", file=sys.stderr)
            return 2
    text = page(args.rehearsal, args.run)
    print(text)
    if args.out:
        write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
