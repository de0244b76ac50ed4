"""Benchmarks that print figures (ratios measured side by side in one process).

    python -m wsss_lib.speed.bench oaa [--device cpu|cuda] [--steps 30] [--out reports/bench_oaa.md]
    python -m wsss_lib.speed.bench cam [--device cpu|cuda] [--image-size 96] [--out reports/bench_cam.md]

``cam``: CAM inference for every attention source: our batched multi-scale + flip inference (all
present classes at once, many images per batch) against a per-image, per-scale, per-class loop with
a backward pass per class (the design of the official AMR ``make_cam``); images/s and the ratio.

``oaa``: time per training step of (a) plain CAM training, (b) the same with our OAA store
(attention, alignment to the image frame, MAX and AVE fusion on device), (c) the same with a
baseline store that, like the official code, writes and reads one PNG per (image, class) inside
the step. Same model, same data, one process; the three variants run in interleaved rounds and
the median step time of each is reported. Also: the store's memory at VOC ``train_aug`` size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn
from PIL import Image

from wsss_lib.formulas.accumulation import OAAStore, gate_paper
from wsss_lib.formulas.attention import attention_maps, class_scores
from wsss_lib.data.transforms import views_to_image_frame
from wsss_lib.util.io import write_text
from wsss_lib.models.cam import build_cam_net

VOC_TRAIN_AUG_IMAGES = 10582
VOC_LABELS_PER_IMAGE = 1.5


class PNGStore:
    """The official code's scheme: one PNG per (image, class), read, fused and rewritten in the step."""

    def __init__(self, folder: Path, image_size: int) -> None:
        self.folder = folder
        self.image_size = image_size

    def update(self, ids: list[str], A: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> None:
        accept = gate_paper(scores, labels)
        up = Fn.interpolate(A, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        for b, c in accept.nonzero().tolist():
            new = (up[b, c].detach().cpu().numpy() * 255).astype(np.uint8)
            path = self.folder / f"{ids[b]}_{c}.png"
            if path.exists():
                new = np.maximum(np.asarray(Image.open(path)), new)
            Image.fromarray(new).save(path)


def store_memory_table(sizes=(41, 64), dtypes=(torch.float32, torch.float16)) -> list[dict]:
    slots = int(VOC_TRAIN_AUG_IMAGES * VOC_LABELS_PER_IMAGE)
    rows = []
    for s in sizes:
        for dt in dtypes:
            elem = torch.tensor([], dtype=dt).element_size()
            mb = 2 * slots * s * s * elem / 2**20  # MAX and AVE
            counts = slots * s * s * 2 / 2**20  # AVE's per-pixel update counts, int16 (eq. 10 per pixel)
            rows.append({"map size": f"{s}x{s}", "dtype": str(dt).replace("torch.", ""), "slots": slots,
                         "MAX+AVE MiB": round(mb, 1), "pixel counts MiB": round(counts, 1),
                         "total MiB": round(mb + counts, 1)})
    return rows


def bench_oaa(device: str = "cpu", steps: int = 30, rounds: int = 5, batch_size: int = 16,
              image_size: int = 96, num_classes: int = 8, backbone: str = "tiny", n_images: int = 400,
              seed: int = 0) -> dict:
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = build_cam_net(backbone, num_classes).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    rng = np.random.default_rng(seed)
    labels_all = torch.from_numpy(rng.random((n_images, num_classes)) < 0.2)
    labels_all[np.arange(n_images), rng.integers(0, num_classes, n_images)] = True
    ids = [f"img{i:05d}" for i in range(n_images)]
    images = torch.randn(n_images, 3, image_size, image_size)
    size = (image_size // model.output_stride,) * 2
    store = OAAStore(ids, labels_all, size, device=dev)
    tmp = tempfile.TemporaryDirectory()
    png = PNGStore(Path(tmp.name), image_size)
    geo = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0]).expand(batch_size, 5).to(dev)

    def step(i: int, variant: str) -> None:
        idx = torch.arange(i * batch_size, (i + 1) * batch_size) % n_images
        x = images[idx].to(dev)
        y = labels_all[idx].float().to(dev)
        F = model(x)
        logits = class_scores(F)
        loss = Fn.binary_cross_entropy_with_logits(logits, y)
        if variant == "oaa":
            with torch.no_grad():
                A = attention_maps(F.detach())
                A_img, valid = views_to_image_frame(A, geo, size)
                store.update(idx.to(dev), A_img, valid, logits.detach(), y, epoch=1)
        elif variant == "png":
            with torch.no_grad():
                png.update([ids[j] for j in idx.tolist()], attention_maps(F.detach()), logits.detach(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    variants = ("plain", "oaa", "png")
    for v in variants:  # warm-up (and the PNG store's first writes)
        for i in range(3):
            step(i, v)
    times: dict[str, list[float]] = {v: [] for v in variants}
    counter = 0
    for _ in range(rounds):
        for v in variants:
            for _ in range(steps // rounds):
                sync()
                t0 = time.perf_counter()
                step(counter, v)
                sync()
                times[v].append(time.perf_counter() - t0)
                counter += 1
    tmp.cleanup()
    med = {v: statistics.median(t) for v, t in times.items()}
    return {"device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
            "threads": torch.get_num_threads(), "batch_size": batch_size, "image_size": image_size,
            "backbone": backbone, "steps_per_variant": len(times["plain"]),
            "median_ms": {v: 1000 * t for v, t in med.items()},
            "oaa_over_plain": med["oaa"] / med["plain"], "png_over_plain": med["png"] / med["plain"]}


def format_oaa(res: dict) -> str:
    m = res["median_ms"]
    lines = [f"### OAA store overhead on {res['device']} ({res['threads']} threads), {res['backbone']} backbone, "
             f"batch {res['batch_size']} of {res['image_size']} px, {res['steps_per_variant']} steps each (interleaved)",
             "", "| variant | median ms/step | ratio to plain |", "|---|---:|---:|",
             f"| (a) plain CAM training | {m['plain']:.1f} | 1.000 |",
             f"| (b) + OAA store (tensors on device) | {m['oaa']:.1f} | {res['oaa_over_plain']:.3f} |",
             f"| (c) + PNG per (image, class) in the step (official scheme) | {m['png']:.1f} | {res['png_over_plain']:.3f} |",
             "", f"Goal: (b) within 5% of (a): **{'met' if res['oaa_over_plain'] <= 1.05 else 'NOT met'}** "
             f"({100 * (res['oaa_over_plain'] - 1):+.1f}%)."]
    return "\n".join(lines)


def format_memory() -> str:
    rows = store_memory_table()
    lines = [f"### OAA store memory at VOC train_aug size ({VOC_TRAIN_AUG_IMAGES} images x "
             f"{VOC_LABELS_PER_IMAGE} classes = {rows[0]['slots']} maps, MAX and AVE both kept)", "",
             "| map size | dtype | MAX+AVE MiB | AVE pixel counts (int16) MiB | total MiB |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['map size']} | {r['dtype']} | {r['MAX+AVE MiB']} | {r['pixel counts MiB']} | {r['total MiB']} |"
              for r in rows]
    lines += ["", "41x41 is the feature map of a 321 px crop at output stride 8 (the default store size). AVE counts "
              "its updates per pixel (OAA eq. 10 per pixel: a view that saw part of the image updates only what it "
              "saw), one int16 per stored pixel."]
    return "\n".join(lines)


def naive_cams(model, image: torch.Tensor, present: list[int], scales, adv_iter: int = 1) -> torch.Tensor:
    """The official AMR ``make_cam`` loop for one branch: for each scale and each present class,
    ``adv_iter`` times: a forward pass of the image and its mirror with gradients on, a Grad-CAM
    backward to the last features, and a backward of the class score to the input image, which
    then takes an adversarial step (the official default is ``adv_iter=27``; ``adv_iter=1`` is the
    same work as a plain multi-scale CAM). Returns ``len(present) x H x W`` max-normalized maps."""
    h, w = image.shape[-2:]
    acc = torch.zeros((len(present), h, w), device=image.device)
    for s in scales:
        x0 = Fn.interpolate(image[None], scale_factor=s, mode="bilinear", align_corners=False)
        for k, c in enumerate(present):
            x = torch.cat([x0, x0.flip(-1)])
            for _ in range(adv_iter):
                x = x.detach().requires_grad_(True)
                feats = model.head(model.backbone(x))
                score = model.classifier(feats)[:, c].mean((1, 2)).sum()
                g, = torch.autograd.grad(score, feats, retain_graph=True)
                cam = torch.relu((g.mean((2, 3), keepdim=True) * feats).sum(1, keepdim=True))
                cam = Fn.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
                acc[k] += (cam[0] + cam[1].flip(-1)).detach()
                model.zero_grad(set_to_none=True)
                (-score).backward()  # the input gradient of the adversarial step
                x = x + 0.08 * x.grad / (x.grad.abs().max() + 1e-12)
    mx = acc.amax((1, 2), keepdim=True)
    return torch.where(mx > 0, acc / mx.clamp_min(1e-12), acc)


def bench_cam(device: str = "cpu", image_size: int = 96, n_images: int = 64, batch_size: int = 16,
              scales=(0.5, 1.0, 1.5, 2.0), num_classes: int = 8, backbone: str = "tiny", seed: int = 0,
              naive_images: int = 16, official_images: int = 2, official_adv_iter: int = 27) -> dict:
    from wsss_lib.formulas.attention import multiscale_attention

    dev = torch.device(device)
    torch.manual_seed(seed)
    model = build_cam_net(backbone, num_classes).to(dev).eval()
    rng = np.random.default_rng(seed)
    images = torch.randn(n_images, 3, image_size, image_size, device=dev)
    labels = [sorted(set(rng.integers(0, num_classes, rng.integers(1, 3)).tolist())) for _ in range(n_images)]

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):  # warm-up (oneDNN picks its kernels on the first calls)
        multiscale_attention(model, images[:batch_size], scales, flip=True, amp=True)
    sync()
    t0 = time.perf_counter()
    for i in range(0, n_images, batch_size):
        maps = multiscale_attention(model, images[i:i + batch_size], scales, flip=True, amp=True)
        _ = [maps[j, labels[i + j]] for j in range(maps.shape[0])]
    sync()
    batched = n_images / (time.perf_counter() - t0)
    naive_cams(model, images[0], labels[0], scales)  # warm-up
    sync()
    t0 = time.perf_counter()
    for i in range(naive_images):
        naive_cams(model, images[i], labels[i], scales)
    sync()
    naive = naive_images / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(official_images):
        naive_cams(model, images[i], labels[i], scales, adv_iter=official_adv_iter)
    sync()
    official = official_images / (time.perf_counter() - t0) if official_images else float("nan")
    return {"official_images_per_s": official, "official_adv_iter": official_adv_iter,
            "speedup_vs_official": batched / official if official_images else float("nan"),"device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
            "threads": torch.get_num_threads(), "image_size": image_size, "backbone": backbone,
            "scales": list(scales), "batch_size": batch_size, "batched_images_per_s": batched,
            "naive_images_per_s": naive, "speedup": batched / naive,
            "mean_classes_per_image": float(np.mean([len(x) for x in labels]))}


def format_cam(res: dict) -> str:
    return "\n".join([
        f"### CAM inference on {res['device']} ({res['threads']} threads), {res['backbone']} backbone, "
        f"{res['image_size']} px, scales {res['scales']} + flip, {res['mean_classes_per_image']:.2f} classes/image",
        "", "| method | images/s |", "|---|---:|",
        f"| batched multi-scale + flip, all classes at once (batch {res['batch_size']}) | {res['batched_images_per_s']:.1f} |",
        f"| per image, per scale, per class: forward + Grad-CAM backward + backward to the input (official make_cam loop, adv_iter = 1, one branch) | {res['naive_images_per_s']:.2f} |",
        f"| the same loop with the official default adv_iter = {res['official_adv_iter']} | {res['official_images_per_s']:.3f} |",
        "", f"Speed-up against the same work (adv_iter = 1): **{res['speedup']:.1f}x**; against the official "
        f"default (adv_iter = {res['official_adv_iter']}): **{res['speedup_vs_official']:.0f}x**. Goal: at least 5x "
        f"on CPU: {'met' if res['speedup'] >= 5 else 'not met'} like for like, "
        f"{'met' if res['speedup_vs_official'] >= 5 else 'not met'} against the official setting."])


def voc_benchmarks(device: str, steps: int = 20) -> list[str]:
    """The VOC-size set, on synthetic tensors: training throughput of every stage's
    step (VGG16 at 321 px crops; ResNet-50 at 512 px; DeepLab-LargeFOV at 321 px), fp32 vs bf16;
    batched multi-scale CAM inference against the official make_cam loop; the OAA store's share of a
    training step next to the official PNG store."""
    import platform

    from wsss_lib.speed.training import bench_train, format_train

    dev = torch.device(device)
    head = [f"Device: {torch.cuda.get_device_name(dev) if dev.type == 'cuda' else platform.processor() or 'cpu'}; "
            f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
            f"Python {platform.python_version()}. Synthetic tensors of VOC size, 20 classes."]
    parts = ["\n".join(head)]
    parts.append(format_train(bench_train(device, "vgg16", 321, 16, steps)))
    parts.append(format_train(bench_train(device, "resnet50", 512, 8, steps, cases=("cam", "cam+oaa", "amr"))))
    parts.append(format_cam(bench_cam(device, 321, n_images=64, batch_size=16, num_classes=20, backbone="vgg16",
                                      naive_images=4, official_images=1)))
    parts.append(format_oaa(bench_oaa(device, steps=30, batch_size=16, image_size=321, num_classes=20,
                                      backbone="vgg16", n_images=800)))
    return parts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m wsss_lib.speed.bench")
    sub = ap.add_subparsers(dest="what", required=True)
    o = sub.add_parser("oaa", help="OAA store overhead per training step")
    o.add_argument("--device", default="cpu")
    o.add_argument("--steps", type=int, default=30)
    o.add_argument("--backbone", default="tiny")
    o.add_argument("--image-size", type=int, default=96)
    o.add_argument("--batch-size", type=int, default=16)
    o.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    c = sub.add_parser("cam", help="batched multi-scale CAM inference vs a per-class backward loop")
    c.add_argument("--device", default="cpu")
    c.add_argument("--image-size", type=int, default=96)
    c.add_argument("--images", type=int, default=64)
    c.add_argument("--backbone", default="tiny")
    c.add_argument("--out", type=Path, default=None)
    t = sub.add_parser("train", help="training images/s of every stage's step, fp32 vs bf16, peak memory")
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    t.add_argument("--backbone", default="vgg16")
    t.add_argument("--image-size", type=int, default=321)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--steps", type=int, default=20)
    t.add_argument("--seg-network", default="deeplab_largefov")
    t.add_argument("--out", type=Path, default=None)
    v = sub.add_parser("voc", help="the VOC-size set: train (VGG16 at 321, ResNet-50 at 512), CAM inference, "
                                   "OAA store share; with the device and versions")
    v.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    v.add_argument("--steps", type=int, default=20)
    v.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.what in ("train", "voc"):
        from wsss_lib.speed.training import bench_train, format_train

        if args.what == "train":
            parts = [format_train(bench_train(args.device, args.backbone, args.image_size, args.batch_size,
                                              args.steps, seg_network=args.seg_network))]
        else:
            parts = voc_benchmarks(args.device, args.steps)
        text = "\n\n".join(parts) + "\n"
        print(text)
        if args.out:
            write_text(args.out, text)
        return 0
    if args.what == "cam":
        res = bench_cam(args.device, args.image_size, args.images, backbone=args.backbone)
        text = format_cam(res) + "\n"
        print(text)
        if args.out:
            write_text(args.out, text)
        return 0
    if args.what == "oaa":
        res = bench_oaa(args.device, args.steps, batch_size=args.batch_size, image_size=args.image_size,
                        backbone=args.backbone)
        text = format_oaa(res) + "\n\n" + format_memory() + "\n"
        print(text)
        if args.out:
            write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
