"""Tables for ``reports/``: pandas frames written as Markdown and HTML, and the benchmark report."""

from __future__ import annotations

import html
import numbers
import os
from dataclasses import asdict
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd

from wsss_lib.data.saliency import DEFAULT_SALIENCY, ensure_saliency, load_saliency, saliency_quality
from wsss_lib.data.synthetic import ensure_benchmark
from wsss_lib.data.voc import VOCLayout
from wsss_lib.figures.plots import samples_figure, save_figure, side_by_side_figure
from wsss_lib.models.backbones import tiny_backbone
from wsss_lib.models.pretrain import load_tiny_pretrained, pretrained_dir, probe_accuracy, pretrain_split
from wsss_lib.runs.profile import FULL
from wsss_lib.util.io import read_json, write_text

#: the benchmark page's prose (filled with the spec and the measured statistics)
BENCHMARK_TEMPLATE = Path(__file__).resolve().parent / "tables" / "templates" / "benchmark.md"


def write_table(df: pd.DataFrame, stem: str | os.PathLike, floatfmt: str = ".3f", caption: str = "") -> str:
    """Write ``stem.md`` and ``stem.html``; return the Markdown text. Floats are formatted with
    ``floatfmt``; text cells (e.g. published figures quoted as written) are left as they are.
    ``caption``: a line under the table (e.g. where its rows came from)."""

    shown = df.map(lambda v: format(v, floatfmt) if isinstance(v, float) and np.isfinite(v) else
                   ("-" if isinstance(v, float) else v))
    num = [isinstance(v, numbers.Number) for v in df.iloc[0]] if len(df) else []
    md = shown.to_markdown(disable_numparse=True,
                           colalign=["left"] + ["right" if n else "left" for n in num])
    if caption:
        md += "\n\n" + caption
    write_text(f"{stem}.md", md + "\n")
    body = df.to_html(float_format=lambda x: format(x, floatfmt), na_rep="-")
    write_text(f"{stem}.html", body + (f"\n<p>{html.escape(caption.strip('_'))}</p>\n" if caption else ""))
    return md


def saliency_section(voc_root: str | os.PathLike, out_dir: str | os.PathLike) -> str:
    """The embedded saliency detector's imperfection model and measured quality (MAE, max F-measure)
    against the masks' foreground, per split; a figure of a few maps. Measured before any
    segmentation result is looked at, and independent of every trained model."""

    folder = ensure_saliency(voc_root, progress=False)
    q = pd.DataFrame({split: saliency_quality(folder, VOCLayout(voc_root, split)) for split in ("train", "val")}).T
    q_md = write_table(q.rename_axis("split"), Path(out_dir) / "benchmark_saliency_quality")
    layout = VOCLayout(voc_root, "train")
    idx = list(range(6))
    save_figure(side_by_side_figure({"image": [layout.load_image(i) for i in idx],
                                     "saliency": [np.repeat((load_saliency(folder, layout.ids[i], layout.load_mask(i).shape)
                                                             * 255).astype(np.uint8)[..., None], 3, -1) for i in idx],
                                     "ground truth": [layout.load_mask(i) for i in idx]},
                                    [layout.ids[i] for i in idx], title="embedded saliency detector"),
                Path(out_dir) / "benchmark_saliency.png")
    spec = ", ".join(f"`{k}={v}`" for k, v in asdict(DEFAULT_SALIENCY).items())
    return f"""
## Saliency maps (the background cue of OAA's pseudo labels)

`wsss_lib.data.saliency` writes one greyscale PNG per image, made to behave like an off-the-shelf
class-agnostic salient-object detector rather than like the ground truth. Its imperfection model
was decided and measured before any segmentation result was seen: per object, missed with
probability {DEFAULT_SALIENCY.miss_prob:.0%}, partly covered (a random straight cut dims one side)
with probability {DEFAULT_SALIENCY.partial_prob:.0%}, otherwise salient at a level in
{DEFAULT_SALIENCY.object_level}; each saturated clutter item salient with probability
{DEFAULT_SALIENCY.clutter_prob:.0%}; water/rails context partly salient (a smooth random field) in
{DEFAULT_SALIENCY.context_prob:.0%} of the images that have it; soft boundaries (Gaussian blur) and
a faint smooth field everywhere. Spec: {spec}; folder `saliency/{DEFAULT_SALIENCY.digest()}` next to
the benchmark.

Quality against the masks' foreground (MAE: mean absolute error per image; max F-measure with
beta^2 = 0.3 over 256 thresholds, the salient-object-detection convention; for scale, published
detectors of the DSS era, whose maps the OAA authors distribute, reach roughly MAE 0.04-0.10 and
max F 0.75-0.93 on the usual saliency benchmarks, depending on the data set):

{q_md}

![saliency](benchmark_saliency.png)
"""


#: what each pretraining task is, in words (the benchmark page)
TASK_WORDS = {
    "shapes": "6 shapes x 4 textures, random colour, size, place and angle, on the benchmark's cluttered "
              "backgrounds; no ellipse bodies, no disc parts, none of the 8 benchmark classes",
    "regions": "the benchmark's region vocabulary, 4 part hues x 6 patterns, drawn as a disc, a square or a band "
               "next to unlabelled striped bodies on the benchmark's backgrounds; none of the 8 benchmark classes, "
               "which are combinations of three such regions on a body",
}


def pretraining_section(out_dir: str | os.PathLike, profile=None) -> str:
    """The tiny backbone's pretraining task (the profile's): held-out accuracy, time, weights digest, and the
    features of the pretrained vs a randomly initialized backbone under a fixed nearest-class-mean
    probe on held-out source images."""
    import torch  # lazy: heavy: this module stays importable without torch

    spec = (profile or FULL).for_data("").pretrain  # the default benchmark's pretraining task
    state = load_tiny_pretrained(spec, spec.width)
    info = read_json(pretrained_dir(spec) / "pretrain.json")
    images, labels = pretrain_split(spec, "heldout")
    bb = tiny_backbone(spec.width)
    bb.load_state_dict(state)
    torch.manual_seed(0)
    probe_pre, probe_rand = probe_accuracy(bb, images, labels), probe_accuracy(tiny_backbone(spec.width), images, labels)
    return f"""
## The pretrained tiny backbone

The papers start from ImageNet weights; the embedded default starts the `tiny` backbone from weights
learnt on a generated **pretraining task** (`wsss_lib.models.pretrain`, task `{spec.task}`, width {spec.width}):
{len(spec.classes)} single-label classes ({TASK_WORDS[spec.task]}), {spec.n_train} training
and {spec.n_heldout} held-out images at {spec.size} px, {spec.epochs} epochs of SGD (cosine lr {spec.lr}),
spec digest `{spec.digest()}`, cached in `<cache>/pretrained/tiny-{spec.digest()}/`.

| measure | value |
|---|---:|
| held-out accuracy of the source classifier | {info['heldout_accuracy']:.3f} (chance {info['chance_accuracy']:.3f}) |
| nearest-class-mean probe on held-out images: pretrained features | {probe_pre:.3f} |
| the same probe: randomly initialized backbone | {probe_rand:.3f} |
| time: rendering / training ({info['threads']} threads) | {info['render_seconds']:.0f} s / {info['train_seconds']:.0f} s |
| weights sha256 | `{info['weights_sha256'][:16]}...` (torch {info['torch']}) |

The weights are deterministic for a spec on a given machine setup (seeded data, order and
initialization; `tests/test_pretrain_drift.py` trains twice and compares digests).
"""


def variant_section(out_dir: str | os.PathLike, profile=None) -> str:
    """The two-part variant's generated statistics: measured before any OAA result on it."""

    profile = profile or FULL
    spec = profile.benchmark("parts2")
    voc = ensure_benchmark(spec, progress=False)
    st = read_json(voc / "benchmark.json")["statistics"]["train"]
    pr = st["part_to_object_area"]
    one = read_json(ensure_benchmark(profile.benchmark("v1"), progress=False) / "benchmark.json")["statistics"]["train"]
    return f"""
## The two-part variant (`data_root="embedded:parts2"`)

Version 1 gives each class one discriminative part (a disc at one end of the body). The two-part
variant (`BenchmarkSpec(parts_per_object=2)`, spec digest `{spec.digest()}`) adds a second one at the
other end of the body: a square in the class's second hue with a checker or bar pattern; the
(hue, pattern) codes of either part alone name the class, and with probability
{spec.single_part_prob} one of the two is hidden. Bodies, backgrounds, contexts and object counts are
drawn as in version 1. Parameters decided and measured before any OAA run on it:

| train split | version 1 | two-part |
|---|---:|---:|
| images | {one['images']} | {st['images']} |
| visible part area / object area (mean) | {one['part_to_object_area']['mean']:.3f} | {pr['mean']:.3f} |
| foreground fraction | {one['foreground_fraction']:.3f} | {st['foreground_fraction']:.3f} |

How a plain CAM classifier's attention distributes over the two parts and the body, and whether its
peak moves between them over the epochs, is measured by the setting grids (`make setting`, page
`setting.md`).
"""


def candidates_section(out_dir: str | os.PathLike) -> str:
    """The candidate settings' property table (``benchmark_candidates.md``, written by
    ``python -m wsss_lib.experiments.candidates`` with the plain CAM classifier only) and the decision
    taken from it (``notes/benchmark.md``, by hand, as every page's notes), when they exist."""
    out_dir = Path(out_dir)
    table = out_dir / "benchmark_candidates.md"
    if not table.exists():
        return ""
    decision = out_dir / "notes" / "benchmark.md"
    return ("\n## Candidate settings, measured before any method ran on them\n\n"
            "Every candidate measured the same way by `python -m wsss_lib.experiments.candidates` (seed 0; the "
            "plain CAM classifier, `accumulate=False`, so no OAA map exists): geometry in feature cells against "
            "VOC's estimated figures, a linear probe of the frozen pretrained features (val mAP), where each "
            "epoch's attention peak sits, the CAM mass on the regions, drift, and the cost of a training step "
            "measured side by side.\n\n" + table.read_text()
            + ("\n" + decision.read_text() if decision.exists() else "")
            + ("\nEvery stage's own training step on version 1 and on the default, one CPU thread each (as the main "
               "job runs its points), side by side (`python -m wsss_lib.speed.bench variants --out reports/benchmark_stage_costs.md`):\n\n"
               + (out_dir / "benchmark_stage_costs.md").read_text() if (out_dir / "benchmark_stage_costs.md").exists() else ""))


def benchmark_report(voc_root: str | os.PathLike, out_dir: str | os.PathLike,
                     n_samples: int = 12, generation_seconds: float | None = None, profile=None) -> Path:
    """Write ``benchmark.md`` (+ tables as HTML) and ``benchmark_samples.png`` into ``out_dir``."""

    voc_root = Path(voc_root)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = read_json(voc_root / "benchmark.json")
    classes = meta["classes"]
    st = meta["statistics"]

    freq = pd.DataFrame({split: st[split]["images_per_class"] for split in st}).rename_axis("class")
    freq_md = write_table(freq, out_dir / "benchmark_class_frequency", floatfmt=".0f")
    objs = pd.DataFrame({split: st[split]["objects_per_image"] for split in st}).rename_axis("objects")
    objs_md = write_table(objs, out_dir / "benchmark_objects_per_image", floatfmt=".0f")
    parts = pd.DataFrame({split: st[split]["part_to_object_area"] for split in st}).T
    parts["foreground fraction"] = [st[s]["foreground_fraction"] for s in st]
    parts_md = write_table(parts.rename_axis("split"), out_dir / "benchmark_part_area")
    cooc = pd.DataFrame(st["train"]["cooccurrence"], index=classes, columns=classes).rename_axis("train")
    cooc_md = write_table(cooc, out_dir / "benchmark_cooccurrence", floatfmt=".0f")
    ctx = pd.DataFrame(st["train"]["context_with_class"]).T.rename_axis("context")
    ctx["images with context"] = [st["train"]["context_images"][c] for c in ctx.index]
    ctx_md = write_table(ctx, out_dir / "benchmark_context", floatfmt=".0f")

    layout = VOCLayout(voc_root, "train")
    idx = list(range(min(n_samples, len(layout))))
    fig = samples_figure([layout.load_image(i) for i in idx], [layout.load_mask(i) for i in idx],
                         [f"{layout.ids[i]}: " + ",".join(np.array(classes)[layout.labels[i]]) for i in idx])
    save_figure(fig, out_dir / "benchmark_samples.png")

    spec = meta["spec"]
    gen_file = voc_root.parents[1] / "generation_time.json"  # written by the generator next to its folder
    if generation_seconds is None and gen_file.exists():
        generation_seconds = read_json(gen_file)["seconds"]
    gen = (f"took {generation_seconds:.1f} s on this machine" if generation_seconds is not None
           else "time was not recorded (no generation_time.json next to the benchmark)")
    version = str(spec.get("version", "1"))
    design = Template((BENCHMARK_TEMPLATE.parent / f"benchmark_design_v{version}.md").read_text()).substitute(
        body_tint=spec["body_tint"], context_prob=f"{spec['context_prob']:.0%}",
        context_other_prob=f"{spec['context_other_prob']:.0%}", hide_prob=spec.get("hide_prob", ""),
        size_median=spec.get("size_median", ""), size_sigma=spec.get("size_sigma", ""))
    text = Template(BENCHMARK_TEMPLATE.read_text()).substitute(
        generator_version=meta["generator_version"], n_train=spec["n_train"], n_val=spec["n_val"], size=spec["size"],
        seed=spec["seed"], n_classes=len(classes), classes=", ".join(classes), digest=meta["files_sha256"][:16],
        generation=gen, design=design, freq_md=freq_md, objs_md=objs_md, parts_md=parts_md,
        cooc_md=cooc_md, ctx_md=ctx_md)
    text += saliency_section(voc_root, out_dir)
    text += pretraining_section(out_dir, profile)
    text += variant_section(out_dir, profile)
    cam_props = out_dir / "benchmark_cam_properties.md"
    if cam_props.exists():
        text += "\n" + cam_props.read_text()
    text += candidates_section(out_dir)
    write_text(out_dir / "benchmark.md", text)
    return out_dir / "benchmark.md"
