"""Training throughput of every stage's step at a chosen size, fp32 against bf16 autocast.

    python -m wsss_lib.bench train --device cuda --backbone vgg16 --image-size 321 --batch-size 16
    python -m wsss_lib.bench voc --device cuda --out reports/bench_gpu.md    # the VOC-size set

Each case is one stage's step as the engine runs it (channels_last and bf16 autocast on CUDA), on
synthetic tensors: plain CAM (BCE), CAM + the OAA store update, OAA+ (hybrid loss on soft labels),
AMR (both branches, cross pseudo supervision) and segmentation (pixel cross entropy). Reported:
images/s (median of timed steps after warm-up, synchronised around each step) and peak GPU memory.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as Fn

CASES = ("cam", "cam+oaa", "oaa_plus", "amr", "segmentation")


def _device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def make_case(case: str, backbone: str, image_size: int, batch_size: int, num_classes: int, dev: torch.device,
              seg_network: str = "deeplab_largefov"):
    """``(model, step)``: the case's network and a function running one training step's loss."""
    from .accumulation import OAAStore
    from .attention import attention_maps, class_scores
    from .data.transforms import views_to_image_frame
    from .losses import OAA_PLUS_LOSSES, amr_total_loss, cps_loss, multilabel_bce
    from .models.amr import build_amr
    from .models.cam import build_cam_net
    from .models.segnet import build_segnet
    from .stages.segmentation import segmentation_loss

    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(batch_size, num_classes, generator=g) < 0.15)
    labels[torch.arange(batch_size), torch.randint(0, num_classes, (batch_size,), generator=g)] = True
    labels = labels.float().to(dev)
    if case == "segmentation":
        model = build_segnet(seg_network, num_classes + 1).to(dev)
        target = torch.randint(0, num_classes + 1, (batch_size, image_size, image_size), generator=g).to(dev)
        return model, lambda x, i: segmentation_loss(model(x), target)
    if case == "amr":
        model = build_amr(backbone, num_classes).to(dev)

        def amr_step(x, i):
            F_s, F_c = model(x)
            F_s, F_c = F_s.float(), F_c.float()
            return amr_total_loss(multilabel_bce(class_scores(F_s), labels), multilabel_bce(class_scores(F_c), labels),
                                  cps_loss(attention_maps(F_s), attention_maps(F_c), labels))
        return model, amr_step
    model = build_cam_net(backbone, num_classes).to(dev)
    with torch.no_grad():  # the map size as the network makes it (VGG-16's pools floor, 321 -> 40)
        size = int(model(torch.zeros(1, 3, image_size, image_size, device=dev)).shape[-1])
    if case == "oaa_plus":
        soft = torch.rand(batch_size, num_classes, size, size, generator=g).to(dev) * labels[:, :, None, None]
        return model, lambda x, i: OAA_PLUS_LOSSES["hl"](model(x).float(), soft)
    store = None
    if case == "cam+oaa":
        n = 10582  # VOC train_aug
        all_labels = torch.rand(n, num_classes, generator=g) < 0.1
        all_labels[torch.arange(n), torch.randint(0, num_classes, (n,), generator=g)] = True
        store = OAAStore([str(i) for i in range(n)], all_labels, (size, size), device=dev)
        geo = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0]).expand(batch_size, 5).to(dev)
        all_labels = all_labels.float().to(dev)

    def cam_step(x, i):
        F = model(x).float()
        logits = class_scores(F)
        if store is None:
            return multilabel_bce(logits, labels)
        idx = (torch.arange(batch_size, device=dev) + i * batch_size) % len(store.image_ids)
        y = all_labels[idx]
        with torch.no_grad():
            A, valid = views_to_image_frame(attention_maps(F.detach()), geo, store.size)
            store.update(idx, A, valid, logits.detach(), y, epoch=1)
        return multilabel_bce(logits, y)
    return model, cam_step


def bench_train(device: str = "cuda", backbone: str = "vgg16", image_size: int = 321, batch_size: int = 16,
                steps: int = 20, warmup: int = 5, num_classes: int = 20, cases=CASES,
                precisions=("fp32", "bf16"), seg_network: str = "deeplab_largefov", seg_image_size: int | None = None) -> dict:
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    rows = []
    for case in cases:
        for prec in precisions:
            if prec == "bf16" and not cuda:
                continue  # bf16 autocast is the GPU fast path
            torch.manual_seed(0)
            size = seg_image_size or image_size if case == "segmentation" else image_size
            model, step = make_case(case, backbone, size, batch_size, num_classes, dev, seg_network)
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
                    loss = step(x, i)
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
