"""Benchmarks that print figures (ratios measured side by side in one process).

    python -m wsss_lib.speed.bench oaa [--device cpu|cuda] [--steps 30] [--out reports/bench_oaa.md]
    python -m wsss_lib.speed.bench cam [--device cpu|cuda] [--image-size 64] [--out reports/bench_cam.md]

``cam``: AMR's official inference (adversarial climbing with Grad-CAM, ``make_cam``), batched
across images, classes and pairs, against the official loop (one image-and-mirror pair per forward)
on the same output; images/s, the ratio and the largest difference between the two outputs.

``oaa``: time per training step of (a) plain CAM training, (b) the same with our OAA store
(attention, alignment to the image frame, MAX and AVE fusion on device), (c) the same with a
baseline store that, like the official code, writes and reads one PNG per (image, class) inside
the step. Same model, same data, one process; the three variants run in interleaved rounds and
the median step time of each is reported. Also: the store's memory at VOC ``train_aug`` size.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn
from PIL import Image

from wsss_lib.data.transforms import views_to_image_frame
from wsss_lib.engine.adversarial_cam import ClimbSettings, autocast_agreement, official_cams
from wsss_lib.formulas.accumulation import OAAStore, gate_paper
from wsss_lib.formulas.attention import attention_maps, class_scores
from wsss_lib.models.amr import build_amr
from wsss_lib.models.cam import build_cam_net
from wsss_lib.runs.profile import FULL, QUICK
from wsss_lib.speed.official_loop import official_loop_cams
from wsss_lib.speed.training import backbone_costs, bench_train, format_train, variant_costs
from wsss_lib.util.io import write_text

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
        if variant in ("oaa", "oaa_eval"):
            with torch.no_grad():
                F_store = F.detach()
                if variant == "oaa_eval":  # BatchNorm trains (from scratch): the store read in the CAM's mode
                    model.eval()
                    F_store = model(x)
                    model.train()
                A = attention_maps(F_store)
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

    variants = ("plain", "oaa", "oaa_eval", "png")
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
            "oaa_over_plain": med["oaa"] / med["plain"], "png_over_plain": med["png"] / med["plain"],
            "oaa_eval_over_plain": med["oaa_eval"] / med["plain"]}


def format_oaa(res: dict) -> str:
    m = res["median_ms"]
    lines = [f"### OAA store overhead on {res['device']} ({res['threads']} threads), {res['backbone']} backbone, "
             f"batch {res['batch_size']} of {res['image_size']} px, {res['steps_per_variant']} steps each (interleaved)",
             "", "| variant | median ms/step | ratio to plain |", "|---|---:|---:|",
             f"| (a) plain CAM training | {m['plain']:.1f} | 1.000 |",
             f"| (b) + OAA store (tensors on device) | {m['oaa']:.1f} | {res['oaa_over_plain']:.3f} |",
             f"| (c) + PNG per (image, class) in the step (official scheme) | {m['png']:.1f} | {res['png_over_plain']:.3f} |",
             f"| (d) + OAA store fed by an evaluation-mode forward (BatchNorm trained from scratch) | "
             f"{m['oaa_eval']:.1f} | {res['oaa_eval_over_plain']:.3f} |",
             "", f"Goal: (b) within 5% of (a): **{'met' if res['oaa_over_plain'] <= 1.05 else 'NOT met'}** "
             f"({100 * (res['oaa_over_plain'] - 1):+.1f}%). (d) is what one network mode costs where BatchNorm must "
             "train: a pretrained backbone's BatchNorm is frozen, and its store is (b)."]
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


def bench_cam(device: str = "cpu", image_size: int = 64, n_images: int = 16, num_classes: int = 8,
              backbone: str = "tiny", seed: int = 0, loop_images: int = 4, adv_iter: int = 8,
              scales=(1.0, 0.5, 1.5), max_pairs: int = 64, amm_form: str = "official", check_images: int = 2,
              bf16: bool | None = None) -> dict:
    """AMR's official inference, batched (:func:`wsss_lib.engine.adversarial_cam.official_cams`)
    against the official loop (:func:`wsss_lib.speed.official_loop.official_loop_cams`: one
    image-and-mirror pair per forward, hooks and two backwards per iteration), both branches, on the
    same random AMR network and images; the outputs of the images both ran are compared, and the first
    ``check_images`` once more in float64 (where rounding cannot flip a threshold). ``bf16`` (default:
    on CUDA): the batched method also under bf16 autocast, timed, and its maps against float64 ones
    (:func:`~wsss_lib.engine.adversarial_cam.autocast_agreement`, on ``check_images`` images)."""

    dev = torch.device(device)
    torch.manual_seed(seed)
    placement = "bottleneck" if backbone.startswith("resnet") else "residual"
    model = build_amr(backbone, num_classes, None, placement=placement, form=amm_form).to(dev).eval()
    rng = np.random.default_rng(seed)
    images = [(rng.random((image_size, image_size, 3)) * 255).astype(np.uint8) for _ in range(n_images)]
    labels = [sorted(set(rng.integers(0, num_classes, rng.integers(1, 3)).tolist())) for _ in range(n_images)]
    settings = ClimbSettings(adv_iter=adv_iter, scales=tuple(scales))

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    official_cams(model, images[:1], labels[:1], ClimbSettings(adv_iter=1, scales=(1.0,)), dev)  # warm-up
    sync()
    t0 = time.perf_counter()
    batched = official_cams(model, images, labels, settings, dev, max_pairs=max_pairs)
    sync()
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop = official_loop_cams(model, [images[i] for i in range(loop_images)], labels[:loop_images], settings)
    sync()
    t_loop = time.perf_counter() - t0

    def max_diff(a, b):
        return max(float((x[k]["high_res"].cpu() - y[k]["high_res"].cpu()).abs().max()) for x, y in zip(a, b) for k in y)

    diff32 = max_diff(batched, loop)
    # equality is checked in float64 (the maps jump where a pixel crosses zero or the mask threshold)
    m64 = copy.deepcopy(model).double()
    few = slice(0, min(loop_images, check_images))
    diff64 = max_diff(official_cams(m64, images[few], labels[few], settings, dev, dtype=torch.float64),
                      official_loop_cams(m64, images[few], labels[few], settings, dtype=torch.float64))
    batched_rate, loop_rate = n_images / t_batched, loop_images / t_loop
    extra = {}
    if bf16 if bf16 is not None else dev.type == "cuda":
        sync()
        t0 = time.perf_counter()
        official_cams(model, images, labels, settings, dev, max_pairs=max_pairs, autocast=torch.bfloat16)
        sync()
        extra = {"bf16_images_per_s": n_images / (time.perf_counter() - t0),
                 "bf16_agreement": autocast_agreement(model, images, labels, settings, dev, torch.bfloat16,
                                                      n_images=check_images)}
    return {**extra, "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
            "threads": torch.get_num_threads(), "image_size": image_size, "backbone": backbone, "amm_form": amm_form,
            "scales": list(scales), "adv_iter": adv_iter, "schedule": settings.schedule(), "max_pairs": max_pairs,
            "batched_images_per_s": batched_rate, "loop_images_per_s": loop_rate, "speedup": batched_rate / loop_rate,
            "max_abs_diff": diff64, "max_abs_diff_float32": diff32, "checked_images": few.stop, "n_images": n_images, "loop_images": loop_images,
            "mean_classes_per_image": float(np.mean([len(x) for x in labels]))}


def format_cam(res: dict) -> str:
    iters = sum(n for _, n, _ in res["schedule"])
    return "\n".join([
        f"### AMR's official inference on {res['device']} ({res['threads']} threads), {res['backbone']} backbone "
        f"({res['amm_form']} AMM), {res['image_size']} px, scales {res['scales']} + mirror, adv_iter = "
        f"{res['adv_iter']} ({iters} climbing iterations per class over the scales), both branches, "
        f"{res['mean_classes_per_image']:.2f} classes/image",
        "", "| method | images/s |", "|---|---:|",
        f"| batched: image-and-mirror pairs of many images, classes and one scale per forward, closed-form Grad-CAM "
        f"(up to {res['max_pairs']} pairs; {res['n_images']} images) | {res['batched_images_per_s']:.3f} |",
        *([f"| batched under bf16 autocast ({res['n_images']} images) | {res['bf16_images_per_s']:.3f} |"]
          if "bf16_images_per_s" in res else []),
        f"| the official loop: one pair per forward, hooks, two backwards per iteration ({res['loop_images']} images) "
        f"| {res['loop_images_per_s']:.3f} |",
        "", f"Speed-up on the same output: **{res['speedup']:.1f}x**. Largest difference between the two methods' "
        f"normalized maps in float64 ({res['checked_images']} images, both branches): {res['max_abs_diff']:.1e}; "
        f"in the float32 runs timed above: {res['max_abs_diff_float32']:.1e} (the official maps jump where a pixel "
        "crosses zero or the climbing mask's threshold, so rounding differences between one pair per forward and "
        "many can grow; in float64 they do not arise).", *_bf16_line(res)])


def _bf16_line(res: dict) -> list[str]:
    a = res.get("bf16_agreement")
    if not a:
        return []
    parts = [f"{b}: mean |diff| {a[b]['mean_abs_diff']:.4f}, max {a[b]['max_abs_diff']:.3f}, labels agree on "
             f"{100 * a[b]['label_agreement']:.2f}% of the pixels" for b in ("spotlight", "compensation") if b in a]
    return ["", f"bf16 autocast against float64 on {a['images']} images (normalized maps in [0, 1]; labels at "
                "threshold 0.3): " + "; ".join(parts) + "."]


def voc_benchmarks(device: str, steps: int = 20, emit=print) -> list[str]:
    """The VOC-size set, on synthetic tensors: training throughput of every stage's
    step (VGG16 at 321 px crops; ResNet-50 at 512 px; DeepLab-LargeFOV at 321 px), fp32 vs bf16;
    AMR's official inference batched against the official make_cam loop; the OAA store's share of a
    training step next to the official PNG store. ``emit`` receives each part as soon as it is measured
    (the GPU check writes it into its report at once: a time limit keeps what was measured)."""

    dev = torch.device(device)
    head = [f"Device: {torch.cuda.get_device_name(dev) if dev.type == 'cuda' else platform.processor() or 'cpu'}; "
            f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
            f"Python {platform.python_version()}. Synthetic tensors of VOC size, 20 classes."]
    parts = ["\n".join(head)]
    cases = [lambda: format_train(bench_train(device, "vgg16", 321, 16, steps)),
             lambda: format_train(bench_train(device, "resnet50", 512, 8, steps, cases=("cam", "cam+oaa", "amr"))),
             lambda: format_oaa(bench_oaa(device, steps=30, batch_size=16, image_size=321, num_classes=20,
                                          backbone="vgg16", n_images=800)),
             # last, the slowest: the official loop at 27 iterations and 7 scales (over 4 minutes on an H200
             # with two float64 check images; one here)
             lambda: format_cam(bench_cam(device, 321, n_images=16, num_classes=20, backbone="resnet50", loop_images=2,
                                          adv_iter=27, scales=(1.0, 0.5, 0.75, 1.25, 1.5, 1.75, 2.0), max_pairs=8,
                                          check_images=1))]
    for case in cases:  # one part that breaks leaves the others' figures (a GPU lease is short)
        try:
            parts.append(case())
        except Exception as e:
            parts.append(f"FAILED: {type(e).__name__}: {e}")
        emit(parts[-1])
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
    c = sub.add_parser("cam", help="AMR's official inference, batched, vs the official one-pair loop (same output)")
    c.add_argument("--device", default="cpu")
    c.add_argument("--image-size", type=int, default=64)
    c.add_argument("--images", type=int, default=16, help="images of the batched inference")
    c.add_argument("--loop-images", type=int, default=4, help="images of the official loop (the first ones)")
    c.add_argument("--adv-iter", type=int, default=8)
    c.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 1.5])
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
    s = sub.add_parser("variants", help="every stage's training step on the tiny backbone, version 1 of the "
                                        "embedded benchmark against the default, one thread, side by side")
    s.add_argument("--quick", action="store_true", help="the quick profile's variants (a smoke run)")
    s.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    b = sub.add_parser("backbones", help="the classifier's and OAA+'s steps on tiny against ImageNet MobileNetV2 "
                                         "(strides 16 and 8) at the default benchmark's size, one thread, side by side")
    b.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    v = sub.add_parser("voc", help="the VOC-size set: train (VGG16 at 321, ResNet-50 at 512), CAM inference, "
                                   "OAA store share; with the device and versions")
    v.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    v.add_argument("--steps", type=int, default=20)
    v.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.what in ("train", "voc"):

        if args.what == "train":
            parts = [format_train(bench_train(args.device, args.backbone, args.image_size, args.batch_size,
                                              args.steps, seg_network=args.seg_network))]
        else:
            parts = voc_benchmarks(args.device, args.steps)  # prints each part as it is measured
        text = "\n\n".join(parts) + "\n"
        if args.what == "train":
            print(text)
        if args.out:
            write_text(args.out, text)
        return 0
    if args.what == "backbones":
        size = FULL.benchmark(FULL.default_variant).size
        text = backbone_costs(size).to_markdown(index=False) + "\n"
        print(text)
        if args.out:
            write_text(args.out, text)
        return 0
    if args.what == "variants":

        prof = QUICK if args.quick else FULL
        sizes = {"v1": prof.benchmark("v1").size, prof.default_variant: prof.benchmark(prof.default_variant).size}
        text = variant_costs(sizes, rounds=1 if args.quick else 2, steps=2 if args.quick else 6).to_markdown(index=False) + "\n"
        print(text)
        if args.out:
            write_text(args.out, text)
        return 0
    if args.what == "cam":
        res = bench_cam(args.device, args.image_size, args.images, backbone=args.backbone, loop_images=args.loop_images,
                        adv_iter=args.adv_iter, scales=tuple(args.scales))
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
