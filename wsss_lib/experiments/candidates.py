"""Candidate benchmark settings measured with the plain CAM classifier only, before any method runs.

The embedded benchmark should have the properties of the papers' setting that OAA depends on
(several regions the attention can move between, objects large enough in feature cells, pretrained
features that transfer so the first epochs' attention already sits on the object). Each
:class:`Candidate` (a benchmark variant, the network's output stride, the pretraining pretraining task)
is measured here on the same footing:

- geometry in feature cells against VOC's figures (:mod:`wsss_lib.data.geometry`; no model);
- transfer: a linear probe on the benchmark's classes from the frozen pretrained backbone, against
  the same backbone randomly initialized (:func:`wsss_lib.models.pretrain.linear_probe_map`);
- cost: seconds per training step of the classifier at the candidate's size and stride, measured
  side by side with the others in this process (a ratio to the first candidate);
- one plain CAM classifier run (``accumulate=False``: no OAA map exists) with the drift measures:
  where each epoch's attention peak sits (a region, the body, off the object), the CAM mass on each
  region, region switches, consecutive IoU, the discovery curve, and the CAM mIoU of every epoch's
  training-time maps on the snapshot images.

    python -m wsss_lib.experiments.candidates                 # every candidate, seed 0 -> reports/
    python -m wsss_lib.experiments.candidates --only mini-s4-regions --quick
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch

from wsss_lib.data.geometry import geometry_row, geometry_summary, instance_table, voc_row
from wsss_lib.data.synthetic import ensure_benchmark, rendered_set
from wsss_lib.data.voc import VOCLayout
from wsss_lib.engine.common import snapshot_epoch_miou
from wsss_lib.models.backbones import receptive_field, tiny_backbone
from wsss_lib.models.cam import build_cam_net
from wsss_lib.models.pretrain import DEFAULT_PRETRAIN, PretrainSpec, linear_probe_map, load_tiny_pretrained
from wsss_lib.runs.profile import FULL, QUICK
from wsss_lib.stages.classifier import run_classifier_stage
from wsss_lib.util.io import write_json, write_text
from wsss_lib.util.paths import REPO


@dataclass(frozen=True)
class Candidate:
    """A benchmark setting: the profile's benchmark ``variant`` (``data_root="embedded:<variant>"``),
    the tiny backbone's ``output_stride`` and the pretraining task it is pretrained on (whose ``width`` is
    the network's)."""

    name: str
    variant: str
    output_stride: int
    pretrain: PretrainSpec = DEFAULT_PRETRAIN
    note: str = ""

    @property
    def width(self) -> int:
        return self.pretrain.width


#: the candidates, the current default first (the cost ratios are to it)
CANDIDATES = (
    Candidate("v1", "v1", 8, note="version 1, the default until now (width 32, the first pretraining task)"),
    Candidate("parts2", "parts2", 8, note="version 1 with a second part"),
    Candidate("mini-s4-w16-shapes", "mini", 4, PretrainSpec(width=16),
              note="version 2, stride 4, width 16 (the CPU budget); the first pretraining task (64 px)"),
    Candidate("mini-s4-w16-regions", "mini", 4, PretrainSpec(size=112, task="regions", width=16),
              note="version 2, stride 4, width 16; the regions pretraining task at 112 px"),
    Candidate("mini-s4-w32-regions", "mini", 4, PretrainSpec(size=112, task="regions"),
              note="version 2, stride 4, width 32 (about 4x the CPU cost of version 1: a GPU setting)"),
)


def candidate_profile(c: Candidate, quick: bool = False):
    """The profile a candidate's runs are made under: the full profile's benchmarks with the
    candidate's pretraining, named ``candidates`` so no run of it is taken for a default one (with
    ``quick``: the quick profile, its pretraining task shrunk the same way; still ``quick``, so a smoke run
    behaves as one)."""

    base = QUICK if quick else FULL
    pretrain = c.pretrain if not quick else replace(QUICK.pretrain, size=min(c.pretrain.size, 64), task=c.pretrain.task,
                                                    width=c.width)
    return replace(base, name=base.name if quick else "candidates", pretrain=pretrain, pretrains={c.variant: pretrain},
                   networks={c.variant: {"output_stride": c.output_stride, "width": c.width}})


#: images per measured classifier step
STEP_BATCH = 16


def step_seconds(size: int, stride: int, width: int = 32, batch: int = STEP_BATCH, steps: int = 4) -> float:
    """Seconds per classifier training step (forward, backward, SGD) at ``size`` px, ``stride`` and
    the tiny backbone's ``width``."""

    torch.manual_seed(0)
    net = build_cam_net("tiny", 8, output_stride=stride, width=width)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(batch, 3, size, size), (torch.rand(batch, 8) < 0.3).float()

    def one():
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x).mean((2, 3)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    one()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        one()
    return (time.perf_counter() - t) / steps


def step_costs(sizes: dict[str, tuple[int, int, int]], rounds: int = 3) -> dict[str, float]:
    """Seconds per classifier step of each ``name -> (size, stride, width)``, measured side by side:
    ``rounds`` rounds over all of them in turn, the fastest round of each kept (a load that comes
    and goes slows some rounds, not the minimum)."""
    times: dict[str, list[float]] = {n: [] for n in sizes}
    for _ in range(rounds):
        for n, sz in sizes.items():
            times[n].append(step_seconds(*sz))
    return {n: min(t) for n, t in times.items()}


def measure(c: Candidate, runs: Path, seed: int = 0, quick: bool = False, n_geometry: int = 500,
            n_probe: tuple[int, int] = (1000, 500), n_snapshots: int = 300, progress: bool = True) -> dict:
    """Every property of :mod:`this module's docstring <wsss_lib.experiments.candidates>` for ``c``."""

    profile = candidate_profile(c, quick)
    spec = profile.benchmark(c.variant)
    out: dict = {"candidate": c.name, "note": c.note, "variant": c.variant, "image_size": spec.size,
                 "output_stride": c.output_stride, "width": c.width, "pretrain_task": profile.pretrain.task,
                 "pretrain_size": profile.pretrain.size, "benchmark_digest": spec.digest(),
                 "pretrain_digest": profile.pretrain.digest()}
    rf = receptive_field(build_cam_net("tiny", 8, output_stride=c.output_stride, width=c.width))
    out["receptive_field_px"] = rf
    out["geometry"] = geometry_summary(instance_table(spec, c.output_stride, rf, min(n_geometry, spec.n_train)))
    # transfer: frozen features of the pretrained backbone vs a random one
    n_fit, n_test = min(n_probe[0], spec.n_train), min(n_probe[1], spec.n_val)
    fit, fit_y = rendered_set(spec, "train", n_fit)
    test, test_y = rendered_set(spec, "val", n_test)
    state = load_tiny_pretrained(profile.pretrain, c.width, progress=progress)
    probe = {}
    for init in ("pretrained", "random"):
        torch.manual_seed(seed)
        bb = tiny_backbone(c.width, output_stride=c.output_stride)
        if init == "pretrained":
            bb.load_state_dict(state)
        probe[init] = linear_probe_map(bb, fit, fit_y, test, test_y)
    out["probe_map"] = probe
    # the plain CAM classifier with its drift record
    run = run_classifier_stage(data_root=f"embedded:{c.variant}", run_dir=str(runs / c.name), seed=seed, quick=profile,
                               output_stride=c.output_stride, width=c.width, accumulate=False,
                               n_snapshots=n_snapshots, progress=progress)
    run = Path(run).resolve()
    # the run folder as the repository sees it: a report must not depend on where the checkout lives
    out["run"] = str(run.relative_to(REPO)) if run.is_relative_to(REPO) else run.name
    metrics = json.loads((run / "metrics.json").read_text())
    # the run's own training + evaluation time (a reused run keeps the time it was made in)
    out["run_seconds"] = metrics.get("train_seconds", 0.0) + metrics.get("eval_seconds", 0.0)
    out["metrics"] = {k: v for k, v in metrics.items() if not k.startswith("oaa")}
    snaps = torch.load(run / "snapshots.pt", weights_only=False)
    out["epoch_cam_miou"] = snapshot_epoch_miou(snaps, VOCLayout(ensure_benchmark(spec, progress=False), "train"))
    return out


def property_rows(results: list[dict]) -> pd.DataFrame:
    """The property table: VOC's reference figures, then a row per candidate (geometry columns from
    :func:`wsss_lib.data.geometry.geometry_row`, then what the plain CAM classifier measured)."""

    rows = [voc_row()]
    for r in results:
        m = r["metrics"]

        def ep(key: str, e: int) -> str:
            v = m.get(f"{key}_e{e:02d}")
            return "-" if v is None else f"{v:.2f}"

        def num(key: str, fmt: str = ".2f") -> str:
            return "-" if key not in m else format(m[key], fmt)

        miou = r["epoch_cam_miou"]
        rows.append({
            **geometry_row(r["candidate"], r["geometry"]),
            "probe mAP pretrained / random": f"{r['probe_map']['pretrained']:.3f} / {r['probe_map']['random']:.3f}",
            "peak on region / body / off, epoch 1": f"{ep('peak_on_region', 1)} / {ep('peak_on_body', 1)} / {ep('peak_off_object', 1)}",
            "peak on region, epochs 2-3": f"{ep('peak_on_region', 2)}, {ep('peak_on_region', 3)}",
            "CAM mass on regions / rest of body (last epoch)":
                f"{sum(m.get(f'cam_mass_part{j}_last', 0.0) for j in (1, 2, 3)):.2f} / {num('cam_mass_body_last')}",
            "pairs switching region": num("drift_pairs_switching_part"),
            "consecutive IoU (mean)": num("drift_consecutive_iou_mean"),
            "discovery gain": num("discovery_gain", ".3f"),
            "CAM mIoU, epochs 1 / 3 / last (snapshots)": " / ".join(f"{miou[i]:.3f}" for i in (0, min(2, len(miou) - 1), -1)),
            "CAM mIoU (train)": f"{m['cam_miou']:.3f}",
            "classifier step, images/s": f"{r['step_images_per_s']:.0f}",
            "step cost (x first)": f"{r['step_ratio']:.2f}",
            "run (train + eval), s": f"{r['run_seconds']:.0f}",
        })
    return pd.DataFrame(rows).fillna("-")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m wsss_lib.experiments.candidates", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", default=None, help="candidate names (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="the quick profile's tiny benchmarks (a smoke run)")
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "candidates")
    ap.add_argument("--out", type=Path, default=None, help="folder for benchmark_candidates.{md,json} "
                                                            "(default: reports/, or reports/quick/ with --quick)")
    args = ap.parse_args(argv)
    known = {c.name: c for c in CANDIDATES}
    names = args.only or list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        ap.error(f"unknown candidate(s) {unknown}; known: {list(known)}")
    out_dir = args.out or (REPO / "reports" / ("quick" if args.quick else ""))
    chosen = [known[n] for n in names]
    # cost first, side by side in this process (a ratio to the first candidate)
    sizes = {c.name: (candidate_profile(c, args.quick).benchmark(c.variant).size, c.output_stride, c.width)
             for c in chosen}
    secs = step_costs(sizes)
    results = []
    for c in chosen:
        r = measure(c, args.runs, args.seed, args.quick)
        r["step_seconds"] = secs[c.name]
        r["step_ratio"] = secs[c.name] / secs[chosen[0].name]
        r["step_images_per_s"] = STEP_BATCH / secs[c.name]
        results.append(r)
        print(f"{c.name}: measured ({r['run_seconds']:.0f} s)", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "benchmark_candidates.json", {"seed": args.seed, "results": results})
    table = property_rows(results)
    write_text(out_dir / "benchmark_candidates.md", table.to_markdown(index=False) + "\n")
    print(table.to_markdown(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
