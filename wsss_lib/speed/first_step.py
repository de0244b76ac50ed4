"""The size of the first optimizer step of every attention loss, against the official recipes'.

    python -m wsss_lib.speed.first_step              # on the default benchmark -> reports/first_step.md

The step of a recipe is ``lr x |grad|`` of the new layers' weights (the head convs and the
class-aware conv, the parameter group the recipes train at 10x), on the same images, soft labels and
initial weights for every case:

- ``classifier``: our classifier's BCE (eq. 1) at :class:`~wsss_lib.stages.classifier.ClassifierConfig`'s lr;
- ``mce``, ``hl``, ``hl_official``: OAA+'s losses at :class:`~wsss_lib.stages.oaa_plus.OAAPlusConfig`'s lr;
- ``official OAA+``: OAA-PyTorch ``scripts/train_iam.py`` with ``train_iam.sh``: lr 1e-3 with the new
  layers at 10x, its loss normalized once over each batch of 5 images, the gradients of 5 such batches
  summed before the step (the script does not divide by ``iter_size``);
- ``official classifier``: OAA-PyTorch ``scripts/train.py``: lr 1e-3 x 10, the BCE of 5 batches of 5,
  each divided by ``iter_size`` (averaged).

Momentum and weight decay play no part in a first step's gradient (Nesterov's first step is
``1 + momentum`` times it for every recipe that has it). tests/test_recipe.py restates the official
loss from its repository and holds OAA+ within 2x of the official step.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable

import torch

from wsss_lib.data.transforms import image_frame_to_views
from wsss_lib.engine.common import build_attention_net, training_set
from wsss_lib.engine.loop import epoch_order, make_views, view_geometries
from wsss_lib.formulas.attention import class_scores
from wsss_lib.formulas.losses import OAA_PLUS_LOSSES, hybrid_loss_official, multilabel_bce
from wsss_lib.runs.attention_io import load_attention
from wsss_lib.stages import get_stage
from wsss_lib.stages.base import execute_plan
from wsss_lib.stages.oaa_plus import SoftLabels, fill_empty_targets
from wsss_lib.util.io import write_text

#: the official scripts' optimizer: base lr, the new layers' multiplier, images per batch, batches per step
OFFICIAL_LR, OFFICIAL_NEW_MULT, OFFICIAL_BATCH, OFFICIAL_ITER = 1e-3, 10.0, 5, 5


def new_layer_step(model: torch.nn.Module, groups: list[dict], name: str = "head_w") -> float:
    """``lr x |grad|`` over the parameters of the group ``name`` (the new layers' weights)."""
    sq = 0.0
    for g in groups:
        if g.get("name") == name:
            sq += sum(float((g["lr"] * p.grad.float()).pow(2).sum()) for p in g["params"] if p.grad is not None)
    return math.sqrt(sq)


def batch_global_exloss(F: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The official loss normalized once over a whole batch (OAA-PyTorch's ExLoss on its batch of 5):
    :func:`~wsss_lib.formulas.losses.hybrid_loss_official` of the batch taken as one image."""
    return hybrid_loss_official(F.reshape(1, -1, *F.shape[2:]), p.reshape(1, -1, *p.shape[2:]))


def first_steps(views: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor,
                make_model: Callable[[], torch.nn.Module], lrs: dict[str, float]) -> dict[str, float]:
    """The first step of every case (module docstring) on ``views`` (``B x 3 x S x S``, B a multiple
    of 5), their multi-hot ``labels`` and OAA+ soft ``labels`` at the output resolution ``soft``.
    ``make_model()`` returns the same initial CAM network at each call; ``lrs``: the base lr of
    ``classifier`` and of each OAA+ loss."""
    def run(loss_fn, lr, chunks, scale):
        model = make_model()
        model.train()
        groups = model.param_groups(lr, 0.0)
        for sl in chunks:
            (loss_fn(model(views[sl]).float(), sl) * scale).backward()
        return new_layer_step(model, groups)

    whole = [slice(0, len(views))]
    official = [slice(i, i + OFFICIAL_BATCH) for i in range(0, OFFICIAL_BATCH * OFFICIAL_ITER, OFFICIAL_BATCH)]
    bce = lambda F, sl: multilabel_bce(class_scores(F), labels[sl])  # noqa: E731
    out = {"classifier": run(bce, lrs["classifier"], whole, 1.0)}
    for name, fn in OAA_PLUS_LOSSES.items():
        out[name] = run(lambda F, sl, fn=fn: fn(F, soft[sl]), lrs[name], whole, 1.0)
    out["official OAA+"] = run(lambda F, sl: batch_global_exloss(F, soft[sl]), OFFICIAL_LR, official, 1.0)
    out["official classifier"] = run(bce, OFFICIAL_LR, official, 1.0 / OFFICIAL_ITER)
    return out


def measure(oaa_run: str = "", seed: int = 0, progress: bool = True) -> tuple[dict[str, float], dict]:
    """The first steps on the default benchmark: the first 25 images of epoch 0's order, the
    soft labels OAA+ would train on (``oaa_run``'s OAA-MAX; empty: the seed's classifier run, made if
    missing), OAA+'s own network and initialization."""
    stage = get_stage("oaa_plus")
    plan = stage.plan(seed=seed, progress=progress, **({"oaa_run": oaa_run} if oaa_run else {}))
    up = plan.upstream["oaa_run"]
    run = execute_plan(up, progress) if not isinstance(up, Path) else up
    cfg = plan.cfg
    ts = training_set(plan.root, cfg.crop_size, cfg.output_stride)
    src, _ = fill_empty_targets(load_attention(run / "attention" / f"{cfg.source}.pt"),
                                load_attention(run / "attention" / "cam.pt"))
    soft_labels = SoftLabels(src, len(ts.layout), ts.num_classes, torch.device("cpu"))
    n = OFFICIAL_BATCH * OFFICIAL_ITER
    order = epoch_order(len(ts.dataset), seed, 0)[:n]
    samples = [ts.dataset[i] for i in order]
    geo = view_geometries(order, seed, 0, cfg.augment, cfg.scale_range)
    views = make_views(torch.stack([s["image"] for s in samples]), geo, ts.crop, torch.device("cpu"))
    labels = torch.stack([s["label"] for s in samples])
    feat = -(-ts.crop // cfg.output_stride)
    soft = image_frame_to_views(soft_labels.batch(torch.tensor(order)), geo, (feat, feat)).clamp(0, 1)

    def make_model():
        torch.manual_seed(seed)
        return build_attention_net(cfg, ts.num_classes, plan.weights)

    cls_cfg = get_stage("classifier").config()
    lrs = {"classifier": cls_cfg.lr, **{name: stage.config(loss=name).lr for name in OAA_PLUS_LOSSES}}
    return first_steps(views, labels, soft, make_model, lrs), {"run": run.name, "lrs": lrs, "images": n}


def report(steps: dict[str, float], info: dict) -> str:
    ref = steps["official OAA+"]
    lines = ["# The first step of each attention loss, against the official recipes", "",
             "`python -m wsss_lib.speed.first_step` (wsss_lib/speed/first_step.py): lr x |grad| of the new layers' "
             f"weights (head convs and class-aware conv) on the same {info['images']} images of the default benchmark, "
             f"the same soft labels (the OAA-MAX maps of `{info['run']}`) and the same initial network. Official OAA+: "
             "OAA-PyTorch train_iam.py (lr 1e-3, new layers x10, the loss normalized over each batch of 5, the "
             "gradients of 5 batches summed); official classifier: train.py (the same, the 5 batches averaged).", "",
             "| case | base lr | step (lr x grad) | / official OAA+ |", "|:--|--:|--:|--:|"]
    for name, v in steps.items():
        lr = info["lrs"].get(name, OFFICIAL_LR)
        lines.append(f"| {name} | {lr:g} | {v:.4f} | {v / ref:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--oaa-run", default="", help="the classifier run whose OAA-MAX maps are the soft labels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="reports/first_step.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    steps, info = measure(args.oaa_run, args.seed)
    text = report(steps, info)
    print(text)
    if args.out:
        write_text(Path(args.out), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
