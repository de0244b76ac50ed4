"""The VOC job (``make voc``): every method on PASCAL VOC 2012 + SBD with the papers' recipes, from one
command, into one table page with the papers' columns beside ours.

    python -m wsss_lib.experiments.main --data /data/VOCdevkit --sbd /data/benchmark_RELEASE/dataset \\
        --saliency /data/saliency
    make voc VOC=/data/VOCdevkit SBD=/data/benchmark_RELEASE/dataset SALIENCY=/data/saliency

The recipes are the ``voc`` profile's (:data:`wsss_lib.runs.profile.VOC_RECIPES`: OAA and OAA+ on
VGG16 at 321 px, AMR on the official ResNet-50 network at 512 px with the official ``make_cam``,
DeepLab-LargeFOV on saliency-mode pseudo labels). The grids (:func:`voc_grids`) are the papers' rows:
the classifier + OAA (CAM, OAA-AVE, OAA-MAX), OAA+ with MCE and with the official hybrid loss, AMR and
AMR with both modifications of the reproduction report, each source's pseudo labels and DeepLab. Every
stage trains on ``train_aug`` when SBD (``--sbd``) or ``SegmentationClassAug`` with its
``train_aug.txt`` is there, on ``train`` otherwise (said so).

Before anything runs, the job checks the VOC folder, the SBD folder, the saliency folder and the
ImageNet weights, and names what is missing and how to get it; then it plans every point (the data
of every split decodes, every saliency map is there) and only then makes a run folder.

``--quick`` runs the same job at smoke size (profile ``voc-quick``: the tiny backbone, one epoch a
stage): the test suite runs it on a rehearsal folder of :mod:`wsss_lib.data.rehearsal`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from wsss_lib.data.voc import VOCLayout, resolve_voc_root
from wsss_lib.experiments.executors import run_batch
from wsss_lib.experiments.grids import Grid
from wsss_lib.experiments.points import Point, notebook_defaults, plan
from wsss_lib.models.weights import WeightsUnavailable, imagenet_file
from wsss_lib.reporting.tables.oaa import OAA_TABLE2, REPORT_TABLE1
from wsss_lib.runs.profile import VOC, VOC_QUICK, Profile, resolve_profile
from wsss_lib.stages.notebook import notebook_stages
from wsss_lib.util.environment import environment_summary
from wsss_lib.util.io import read_json, write_json, write_text


class VOCJobError(ValueError):
    """An input of the VOC job that is missing or not what it should be (names it and how to get it)."""


#: where the inputs come from (named in the errors)
SBD_HINT = ("SBD (Hariharan et al.): benchmark.tgz from http://home.bharathh.info/pubs/codes/SBD/download.html; "
            "pass its benchmark_RELEASE/dataset folder (cls/, train.txt, val.txt)")
SALIENCY_HINT = ("a folder of greyscale <image id>.png saliency maps for the training images (the OAA code uses "
                 "DSS maps; any salient-object detector's maps work)")

#: the papers' rows: label -> (notebook, the attention point's parameters, its metric, the segmentation
#: point's source and attention parameters, the paper's figure)
@dataclass(frozen=True)
class Row:
    label: str
    notebook: str
    params: dict
    metric: str
    source: str
    attention_params: dict
    paper: str


ROWS = (
    Row("CAM", "01_train_classifier_oaa.ipynb", {}, "cam_miou", "cam", {}, f"{OAA_TABLE2['CAM']:.1f} (OAA, val)"),
    Row("OAA-AVE", "01_train_classifier_oaa.ipynb", {}, "oaa_ave_miou", "oaa_ave", {},
        f"{OAA_TABLE2['OAA-AVE']:.1f} (OAA, val)"),
    Row("OAA-MAX", "01_train_classifier_oaa.ipynb", {}, "oaa_max_miou", "oaa_max", {},
        f"{OAA_TABLE2['OAA-MAX']:.1f} (OAA, val)"),
    Row("OAA+ (MCE)", "03_train_oaa_plus.ipynb", {"loss": "mce"}, "oaa_plus_miou", "oaa_plus", {"loss": "mce"},
        f"{OAA_TABLE2['OAA+ (MCE)']:.1f} (OAA, val)"),
    Row("OAA+ (HL, official ExLoss)", "03_train_oaa_plus.ipynb", {"loss": "hl_official"}, "oaa_plus_miou", "oaa_plus",
        {"loss": "hl_official"}, f"{OAA_TABLE2['OAA+ (HL)']:.1f} (OAA, val)"),
    Row("AMR (xi 0.5)", "04_train_amr.ipynb", {"variant": "AMR"}, "amr_miou_at_xi_main", "amr_xi0.5",
        {"variant": "AMR"}, f"{REPORT_TABLE1['AMR']:.1f} (report, test)"),
    Row("AMR + threshold + area (xi 0.5)", "04_train_amr.ipynb", {"variant": "AMR+both"}, "amr_miou_at_xi_main",
        "amr_xi0.5", {"variant": "AMR+both"}, f"{REPORT_TABLE1['AMR+both']:.1f} (report, test)"),
)
SEG_NOTEBOOK = "05_pseudo_labels_segmentation.ipynb"


@dataclass(frozen=True)
class VOCInputs:
    """The job's data, checked: the VOC 2012 folder, SBD's (or ``None``), the saliency folder, the split."""

    voc: Path
    sbd: Path | None
    saliency: Path
    split: str

    def data_params(self) -> dict:
        """What every point of the job is given: the data, and the split its stages train on."""
        return {"data_root": str(self.voc), "train_split": self.split,
                **({"sbd_root": str(self.sbd)} if self.sbd else {})}


def has_train_aug(voc: Path, sbd: str | Path | None) -> bool:
    """Whether the papers' ``train_aug`` list can be read on the VOC folder ``voc``: SBD is given, or the
    folder has ``ImageSets/Segmentation/train_aug.txt`` (with ``SegmentationClassAug/``)."""
    return bool(sbd) or (Path(voc) / "ImageSets" / "Segmentation" / "train_aug.txt").exists()


def default_train_split(data_root: str, sbd_root: str | None) -> str | None:
    """The training split a stage run from the command line reads on a real VOC folder when none is given:
    ``train_aug`` (the papers' 10,582 images) where :func:`has_train_aug`, else ``None`` (the stage's own
    default, ``train``). The embedded benchmark (``embedded:...``) and an empty ``data_root`` keep the
    stage's default. A folder that is not in VOC layout is left to the stage's own error."""
    if not data_root or str(data_root).startswith("embedded:"):
        return None
    try:
        voc = resolve_voc_root(str(data_root))
    except ValueError:
        return None
    return "train_aug" if has_train_aug(voc, sbd_root) else None


def check_inputs(data: str | Path, sbd: str | Path | None, saliency: str | Path | None,
                 split: str | None = None) -> VOCInputs:
    """The VOC, SBD and saliency folders checked (errors name the folder, what was expected and where
    to get it), and the training split: ``split`` as asked, else ``train_aug`` where SBD or
    ``train_aug.txt`` is there, else ``train`` (said so)."""
    voc = resolve_voc_root(str(Path(data).expanduser().resolve()))  # DataError names what is missing
    sbd_path = None
    if sbd:
        sbd_path = Path(sbd).expanduser().resolve()
        missing = [n for n in ("cls", "train.txt", "val.txt") if not (sbd_path / n).exists()]
        if missing:
            raise VOCJobError(f"--sbd {sbd}: not SBD's dataset folder (missing {', '.join(missing)}). Expected "
                              f"benchmark_RELEASE/dataset of {SBD_HINT}")
    if not saliency:
        raise VOCJobError(f"--saliency (make voc SALIENCY=...) is needed: the pseudo labels follow OAA section 4 and "
                          f"read {SALIENCY_HINT}")
    sal = Path(saliency).expanduser().resolve()
    if not sal.is_dir():
        raise VOCJobError(f"--saliency {saliency}: no such folder; expected {SALIENCY_HINT}")
    has_aug = has_train_aug(voc, sbd_path)
    if split is None:
        split = "train_aug" if has_aug else "train"
        if not has_aug:
            print(f"[voc] note: no SBD (--sbd) and no {voc / 'ImageSets/Segmentation/train_aug.txt'}: every stage "
                  "trains on VOC's train list (1,464 images), not the papers' train_aug (10,582)", file=sys.stderr)
    elif split == "train_aug" and not has_aug:
        raise VOCJobError(f"--split train_aug needs SBD (--sbd, {SBD_HINT}) or "
                          f"{voc / 'ImageSets/Segmentation/train_aug.txt'} with SegmentationClassAug/")
    VOCLayout(voc, split, sbd_root=str(sbd_path or ""))  # the list and its masks are there (DataError names them)
    return VOCInputs(voc, sbd_path, sal, split)


def check_weights(profile: Profile) -> None:
    """The ImageNet weights the profile's networks load are on this machine (one error naming every
    missing file and how to fetch it)."""
    if profile.quick:
        return  # the tiny backbone: its pretraining task's weights are made here
    missing = []
    for name in ("vgg16", "resnet50"):
        try:
            imagenet_file(name)
        except WeightsUnavailable as e:
            missing.append(str(e))
    if missing:
        raise VOCJobError("the VOC job's networks start from ImageNet weights that are not here:\n  "
                          + "\n  ".join(missing) + "\n(`python -m wsss_lib.models.weights vgg16 resnet50` fetches "
                          "both where there is internet)")


def shadowed(notebook: str, profile: Profile) -> dict:
    """The profile's values for the parameters a notebook's parameters cell spells out (a value given
    there wins over a profile's, as any given value does: notebook 04's ``preset = "paper"``), so
    that a point of the notebook runs the profile's recipe."""
    cell = {k: v for k, v in notebook_defaults(notebook).items() if v is not None}
    out = {}
    for st in notebook_stages(notebook):
        cls = st.Config
        backbone = profile.config_overrides(cls).get("backbone", getattr(cls, "backbone", None))
        for k, v in profile.config_overrides(cls, backbone).items():
            if k in cell and cell[k] != v:
                out[k] = v
    return out


def voc_grids(inputs: VOCInputs, profile: Profile, seed: int = 0) -> list[Grid]:
    """The papers' rows as grids: classifier + OAA, OAA+ (MCE, official HL), AMR (plain, both
    modifications), and pseudo labels + DeepLab of every row's source; each notebook's points get
    the profile's values where its parameters cell spells a value (:func:`shadowed`)."""
    common = {**inputs.data_params(), "seed": seed}
    rows = [r for r in ROWS if r.notebook != "01_train_classifier_oaa.ipynb"]
    grids = [Grid("01_train_classifier_oaa.ipynb", {**common, **shadowed("01_train_classifier_oaa.ipynb", profile)},
                  name="voc_oaa")]
    for notebook, name in (("03_train_oaa_plus.ipynb", "voc_oaa_plus"), ("04_train_amr.ipynb", "voc_amr")):
        (key,) = {k for r in rows if r.notebook == notebook for k in r.params}
        fixed = {k: v for k, v in shadowed(notebook, profile).items() if k != key}
        grids.append(Grid(notebook, {**common, **fixed}, {key: [r.params[key] for r in rows if r.notebook == notebook]},
                          name=name))
    grids.append(Grid(SEG_NOTEBOOK, {**common, **shadowed(SEG_NOTEBOOK, profile), "mode": "saliency",
                                     "saliency_root": str(inputs.saliency)},
                      {"source": [r.source for r in ROWS], "attention_params": [dict(r.attention_params) for r in ROWS]},
                      [["source", "attention_params"]], name="voc_segmentation"))
    return grids


def _metrics(point: Point | None) -> dict:
    if point is None or not (point.folder / "metrics.json").exists():
        return {}
    return read_json(point.folder / "metrics.json")


def _find(points: list[Point], notebook: str, **want) -> Point | None:
    for p in points:
        if p.notebook == notebook and all(p.params.get(k) == v for k, v in want.items()):
            return p
    return None


def _cell(m: dict, key: str) -> str:
    v = m.get(key)
    return f"{100 * v:.1f}" if isinstance(v, (int, float)) else "-"


def voc_table(points: list[Point], inputs: VOCInputs, profile: Profile) -> str:
    """The table page: each row's CAM mIoU and pseudo-label mIoU on the training split, DeepLab's mIoU
    on val, the paper's figure, and the runs that made them."""
    n_train = len(VOCLayout(inputs.voc, inputs.split, sbd_root=str(inputs.sbd or "")))
    n_val = len(VOCLayout(inputs.voc, "val"))
    head = ["| method | CAM mIoU % (" + inputs.split + ") | pseudo-label mIoU % (" + inputs.split
            + ") | pseudo labels ignored % | seg mIoU % (val) | paper (VOC seg. mIoU %) | attention run | "
            "segmentation run |", "|---|---:|---:|---:|---:|---:|---|---|"]
    lines = []
    for r in ROWS:
        att = _find(points, r.notebook, **r.params)
        seg = _find(points, SEG_NOTEBOOK, source=r.source, attention_params=r.attention_params)
        ma, ms = _metrics(att), _metrics(seg)
        pseudo = "all ignored" if "pseudo_miou" not in ms and ms.get("pseudo_ignored") == 1 else _cell(ms, "pseudo_miou")
        lines.append(f"| {r.label} | {_cell(ma, r.metric)} | {pseudo} | {_cell(ms, 'pseudo_ignored')} | "
                     f"{_cell(ms, 'seg_miou')} | {r.paper} | {att.run if att else '-'} | {seg.run if seg else '-'} |")
    recipe = [f"- `{bb}` {cls}: " + ", ".join(f"{k}={v}" for k, v in vals.items())
              for bb, by_cls in profile.recipes.items() for cls, vals in by_cls.items()]
    recipe += [f"- {cls}: " + ", ".join(f"{k}={v}" for k, v in vals.items()) for cls, vals in profile.overrides.items()]
    return "\n".join([
        f"# PASCAL VOC 2012: the papers' rows (profile `{profile.name}`: {profile.note})", "",
        f"Made by `python -m wsss_lib.experiments.main --data ...` (wsss_lib/experiments/voc.py) on {inputs.voc} "
        f"({inputs.split}: {n_train} training images; val: {n_val}), seed 0. CAM and pseudo-label mIoU are scored on "
        f"the training split the stages trained on ({inputs.split}; the papers score CAMs on VOC train), the "
        "segmentation network on val. The papers' column is VOC val segmentation mIoU (OAA Table 2; the AMR "
        "reproduction report's Table 1 gives test mIoU). A run is identified by its resolved configuration, its "
        "data's content, its weights and its upstream runs (its folder: `runs/<stage>-<identity>`).", "",
        *head, *lines, "", "## The recipes (the profile's values; each stage's resolved config is in its run.json)", "",
        *recipe, ""])


def run_voc_job(data, sbd, saliency, quick: bool, jobs: int, reports: Path | None, repo: Path,
                split: str | None = None) -> int:
    """Check the inputs, plan every point, run them through the batch runner, write the table page."""
    profile = resolve_profile(VOC_QUICK if quick else VOC, announce=True)
    inputs = check_inputs(data, sbd, saliency, split)
    check_weights(profile)
    grids = voc_grids(inputs, profile)
    points = plan(grids, profile.name)  # every point checked and identified before anything runs
    reports = reports or profile.reports_dir(repo)
    t0 = time.perf_counter()
    summary = run_batch(grids, jobs, profile.name, points=points)
    reports.mkdir(parents=True, exist_ok=True)
    page = write_text(reports / "voc.md", voc_table(points, inputs, profile))
    write_json(reports / "environment.json", environment_summary())  # the versions that made the page
    failed = summary[summary["status"] == "failed"]
    print(f"[voc] {len(summary)} points, {len(failed)} failed, in {time.perf_counter() - t0:.0f} s; see {page}")
    return 1 if len(failed) else 0


__all__ = ["ROWS", "VOCInputs", "VOCJobError", "check_inputs", "check_weights", "run_voc_job", "voc_grids", "voc_table"]
