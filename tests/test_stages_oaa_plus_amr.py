"""OAA+ and AMR stages end to end on the quick benchmark, and the batched multi-scale inference."""

import json
import re

import pytest
import torch

from wsss_lib.formulas.attention import attention_maps, multiscale_attention
from wsss_lib.runs.attention_io import load_attention
from wsss_lib.models.cam import build_cam_net
from wsss_lib.stages.amr import run_amr_stage
from wsss_lib.stages.classifier import run_classifier_stage
from wsss_lib.stages.oaa_plus import SoftLabels, run_oaa_plus_stage

Q = dict(quick=True, progress=False)


@pytest.fixture(scope="module")
def oaa_run(tmp_path_factory, quick_voc):
    return run_classifier_stage(run_dir=str(tmp_path_factory.mktemp("oaa") / "run"), **Q)


def test_soft_labels_are_normalized_and_dense():
    src = {"slot_image": torch.tensor([0, 1, 1]), "slot_class": torch.tensor([1, 0, 2]),
           "maps": torch.tensor([[[0.2, 0.4]], [[0.0, 0.0]], [[0.5, 1.0]]])}
    sl = SoftLabels(src, num_images=2, num_classes=3, device=torch.device("cpu"))
    d = sl.batch(torch.tensor([1, 0]))
    assert d.shape == (2, 3, 1, 2)
    torch.testing.assert_close(d[1, 1], torch.tensor([[0.5, 1.0]]))  # 0.2, 0.4 / max 0.4
    torch.testing.assert_close(d[0, 2], torch.tensor([[0.5, 1.0]]))
    assert d[0, 0].abs().sum() == 0 and d[1, 0].abs().sum() == 0 and d[0, 1].abs().sum() == 0


@pytest.mark.parametrize("loss", ["mce", "hl", "hl_official"])
def test_oaa_plus_stage(tmp_path, oaa_run, loss):
    run = run_oaa_plus_stage(oaa_run=str(oaa_run), run_dir=str(tmp_path / loss), loss=loss, **Q)
    m = json.loads((run / "metrics.json").read_text())
    assert 0 <= m["oaa_plus_miou"] <= 1
    src = load_attention(run / "attention" / "oaa_plus.pt")
    assert src["image_ids"] == load_attention(oaa_run / "attention" / "oaa_max.pt")["image_ids"]


def test_oaa_plus_bad_inputs(tmp_path, oaa_run):
    with pytest.raises(ValueError, match="loss='bce' is invalid"):
        run_oaa_plus_stage(oaa_run=str(oaa_run), loss="bce", **Q)
    with pytest.raises(FileNotFoundError, match="expected a finished classifier run"):
        run_oaa_plus_stage(oaa_run=str(tmp_path), **Q)


def test_amr_stage_branches_xi_and_frozen_spotlight(tmp_path, oaa_run):
    run = run_amr_stage(run_dir=str(tmp_path / "amr"), variant="AMR+both", init_from=str(oaa_run),
                        xi=(0.3, 0.7), **Q)
    m = json.loads((run / "metrics.json").read_text())
    for key in ("amr_miou", "amr_spotlight_miou", "amr_compensation_miou", "amr_xi0.3_miou", "amr_xi0.7_miou"):
        assert 0 <= m[key] <= 1
    a = {n: load_attention(run / "attention" / f"{n}.pt")["maps"]
         for n in ("amr_spotlight", "amr_compensation", "amr_xi0.3", "amr_xi0.5")}
    torch.testing.assert_close(a["amr_xi0.3"], 0.3 * a["amr_spotlight"] + 0.7 * a["amr_compensation"],
                               atol=2e-3, rtol=0)  # fp16 storage
    # frozen spotlight: same weights as the classifier it was initialized from, so its maps are the CAM
    cam = load_attention(oaa_run / "attention" / "cam.pt")["maps"]
    torch.testing.assert_close(a["amr_spotlight"], cam, atol=2e-3, rtol=0)


def test_amr_bad_parameters():
    with pytest.raises(ValueError, match=re.escape("variant='AMR++' is invalid")):
        run_amr_stage(variant="AMR++", **Q)
    with pytest.raises(ValueError, match="freeze_spotlight=True is invalid"):
        run_amr_stage(init_from="", freeze_spotlight=True, **Q)
    with pytest.raises(FileNotFoundError, match="expected a finished classifier run.*or an official AMR checkpoint file"):
        run_amr_stage(init_from="/nonexistent", **Q)


def test_multiscale_single_scale_equals_eq2_and_flip_is_equivariant():
    torch.manual_seed(0)
    net = build_cam_net("tiny", 3).eval()
    x = torch.randn(2, 3, 32, 32)
    one = multiscale_attention(net, x, (1.0,), flip=False, out_size=(4, 4))
    torch.testing.assert_close(one, attention_maps(torch.relu(net(x))))
    y = torch.cat([x[:1], x[:1].flip(-1)])
    ms = multiscale_attention(net, y, (0.5, 1.0, 1.5), flip=True)
    assert ms.shape == (2, 3, 32, 32)
    torch.testing.assert_close(ms[1], ms[0].flip(-1), atol=1e-5, rtol=1e-4)
    both, logits = multiscale_attention(lambda t: (net(t), 2 * net(t)), x, (1.0,), return_logits=True)
    torch.testing.assert_close(both[0], both[1])  # max-normalization removes the factor 2
    torch.testing.assert_close(logits[1], 2 * logits[0])
