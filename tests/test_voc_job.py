"""The VOC job (``make voc``, ``python -m wsss_lib.experiments.main --data ...``): the papers' recipes
per network, every input checked before anything runs, and the whole job end to end at smoke size on
a VOC-size rehearsal folder (train_aug from SBD's ``.mat`` masks, images of VOC's sizes)."""

from __future__ import annotations


import pytest
import torch

from wsss_lib.data.rehearsal import write_rehearsal
from wsss_lib.data.voc import VOCLayout
from wsss_lib.experiments import main as main_job
from wsss_lib.experiments.voc import ROWS, check_inputs, voc_grids
from wsss_lib.runs.profile import VOC, VOC_QUICK, resolve_profile
from wsss_lib.stages import get_stage
from wsss_lib.stages.amr import AMRConfig
from wsss_lib.stages.classifier import ClassifierConfig
from wsss_lib.util.io import read_json


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = write_rehearsal(tmp_path_factory.mktemp("reh") / "voc", 0.003, progress=False)
    return out / "VOCdevkit", out / "benchmark_RELEASE" / "dataset", out / "saliency"


@pytest.fixture
def fake_imagenet(tmp_path, monkeypatch):
    """A torch hub folder holding files named as torchvision's VGG16 and ResNet-50 weights (planning
    hashes them; nothing here loads them)."""
    ck = tmp_path / "torch" / "hub" / "checkpoints"
    ck.mkdir(parents=True)
    for name in ("vgg16-397923af.pth", "resnet50-11ad3fa6.pth"):
        (ck / name).write_bytes(b"not weights")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    import torch.hub
    monkeypatch.setattr(torch.hub, "_hub_dir", None)


def _voc(args: list[str]) -> int:
    return main_job.main(args)


def test_the_voc_profile_holds_a_recipe_per_network(monkeypatch):
    """OAA's classifier is VGG16 at 321 px with the official OAA recipe; the classifier made for AMR
    (it inherits ResNet-50) is the official AMR CAM network's recipe, not OAA's; AMR reads officially."""
    monkeypatch.delenv("WSSS_QUICK", raising=False)
    oaa = ClassifierConfig.from_params(VOC)
    assert (oaa.backbone, oaa.crop_size, oaa.batch_size, oaa.epochs, oaa.lr, oaa.preset, oaa.gate) == (
        "vgg16", 321, 5, 15, 1e-3, "official", "topk_prob")  # the profile's preset is applied with its values
    amr = AMRConfig.from_params(VOC)
    assert (amr.backbone, amr.output_stride, amr.head_convs, amr.crop_size, amr.preset, amr.placement,
            amr.inference, amr.momentum) == ("resnet50", 16, 0, 512, "official", "bottleneck", "official", 1e-4)
    cam = ClassifierConfig.from_params(VOC, inherited={k: getattr(amr, k) for k in get_stage("amr").inherits})
    assert (cam.backbone, cam.output_stride, cam.head_convs, cam.crop_size, cam.batch_size, cam.epochs, cam.lr,
            cam.preset) == ("resnet50", 16, 0, 512, 16, 8, 0.01, "paper")
    # the test suite's WSSS_QUICK=1 makes the VOC job its smoke-size version, not the embedded quick profile
    monkeypatch.setenv("WSSS_QUICK", "1")
    assert resolve_profile(VOC) is VOC_QUICK and resolve_profile("voc-quick") is VOC_QUICK


def test_the_full_voc_job_plans_on_the_rehearsal(rehearsal, fake_imagenet, monkeypatch, tmp_path):
    """Every point of the full profile's job plans (data, splits, saliency maps, weights), the AMR
    points read the network trained by a plain AMR run (no recursion), and AMR's spotlight branch is
    the ResNet-50 CAM run of the AMR recipe."""
    from wsss_lib.experiments.points import plan

    monkeypatch.delenv("WSSS_QUICK", raising=False)
    monkeypatch.setenv("WSSS_RUNS", str(tmp_path / "runs"))
    voc, sbd, sal = rehearsal
    inputs = check_inputs(voc, sbd, sal)
    assert inputs.split == "train_aug"
    points = plan(voc_grids(inputs, VOC), VOC.name)
    assert len(points) == 1 + 2 + 2 + len(ROWS)
    assert not (tmp_path / "runs").exists()  # planning writes nothing
    amr = get_stage("amr").plan(data_root=str(voc), quick=VOC, progress=False, train_split="train_aug",
                                sbd_root=str(sbd), variant="AMR")
    trained = amr.upstream["trained_run"]
    assert trained.cfg.inference == "plain" and trained.cfg.preset == "official"
    cam = trained.upstream["init_run"]
    assert (cam.cfg.backbone, cam.cfg.crop_size, cam.cfg.output_stride, cam.cfg.head_convs) == ("resnet50", 512, 16, 0)
    assert cam.params["train_split"] == "train_aug"
    segs = [p for p in points if p.notebook.startswith("05")]
    assert {p.run.split("-")[1] for p in segs} == {"deeplab_largefov"}


def test_missing_inputs_are_named_before_anything_runs(rehearsal, tmp_path, monkeypatch, capsys):
    voc, sbd, sal = rehearsal
    runs = tmp_path / "runs"
    monkeypatch.setenv("WSSS_RUNS", str(runs))
    cases = [
        (["--data", str(voc), "--sbd", str(sbd)], "--saliency"),
        (["--data", str(voc), "--sbd", str(sbd.parent), "--saliency", str(sal)], "not SBD's dataset folder"),
        (["--data", str(voc), "--sbd", str(sbd), "--saliency", str(tmp_path / "nope")], "no such folder"),
        (["--data", str(tmp_path / "novoc"), "--saliency", str(sal)], "does not exist"),
        (["--data", str(voc), "--saliency", str(sal), "--split", "train_aug"], "needs SBD"),
    ]
    for args, says in cases:
        assert _voc(["--quick", *args]) == 2, args
        assert says in capsys.readouterr().err, args
    # the full profile: the ImageNet weights of both networks, named with the command that fetches them
    monkeypatch.delenv("WSSS_QUICK", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    import torch.hub
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    assert _voc(["--data", str(voc), "--sbd", str(sbd), "--saliency", str(sal)]) == 2
    err = capsys.readouterr().err
    assert "vgg16-397923af.pth" in err and "resnet50-11ad3fa6.pth" in err and "wsss_lib.models.weights" in err
    assert not runs.exists()  # no folder left behind


def test_the_voc_job_runs_end_to_end_at_smoke_size(rehearsal, tmp_path, monkeypatch):
    """make voc on the rehearsal: every stage on train_aug (SBD's .mat masks, variable sizes), AMR's
    official make_cam, each row's pseudo labels and segmentation, the table page rendered; the masks
    are held as uint8 and every training run records its checkpoint size."""
    voc, sbd, sal = rehearsal
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    monkeypatch.setenv("WSSS_RUNS", str(runs))
    assert _voc(["--quick", "--data", str(voc), "--sbd", str(sbd), "--saliency", str(sal), "--reports", str(reports),
                 "-j", "2"]) == 0
    page = (reports / "voc.md").read_text()
    assert (reports / "environment.json").exists()
    aug = VOCLayout(voc, "train_aug", sbd_root=str(sbd))
    assert f"train_aug: {len(aug)} training images" in page
    rows = [line for line in page.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert [r.split(" | ")[0][2:] for r in rows] == [r.label for r in ROWS]
    for r in rows:  # every row has its CAM score and a segmentation score
        cells = r.split(" | ")
        assert cells[1] != "-" and cells[4] != "-", r
    folders = sorted(p for p in runs.iterdir() if p.name != "batch")
    kinds = {p.name.split("-")[0] for p in folders}
    assert kinds == {"classifier", "oaaplus", "amr", "pseudo", "seg"}
    for f in folders:
        info = read_json(f / "params.json")["params"]
        assert info["train_split"] == "train_aug" and info["profile"] == "voc-quick", f.name
        m = read_json(f / "metrics.json")
        if (f / "checkpoint.pt").exists():
            assert m["checkpoint_bytes"] == (f / "checkpoint.pt").stat().st_size, f.name
    # one AMR network trained per variant, read by the official inference (no second, differently
    # configured AMR run made for the pseudo labels)
    amr = [f.name for f in folders if f.name.startswith("amr-")]
    assert len(amr) == 4 and sum("official-inference" in n for n in amr) == 2, amr
    assert aug.mask_tensor(0).dtype == torch.uint8  # the masks every scorer shares
    # the VOC budget's host section, measured on this rehearsal with a classifier run of the job
    from wsss_lib.speed.voc_budget import host_costs, host_lines
    run = next(f for f in folders if f.name.startswith("classifier-") and (f / "attention" / "cam.pt").exists())
    costs = host_costs(voc.parent, run, images=8)  # the rehearsal folder (voc is its VOCdevkit)
    assert costs["images"] == 8 and 0 < costs["pseudo_prep_rule"] < costs["pseudo_labels"]
    assert 0 < costs["loader"] and costs["photo_decode_per_pixel"] > 0 and costs["mean_pixels"] > 1e4
    text = "\n".join(host_lines(costs))
    assert "Loader workers the training rates need" in text and "The pseudo labels stay on the host" in text
