"""AMR's compensation branch on a pretrained backbone: the default AMM placement keeps the scale
the backbone's frozen BatchNorm statistics were made for (it pretrains the quick tiny backbone once
when the cache is cold, so it is not in the fast tier)."""

import pytest
import torch

from wsss_lib.models.amr import build_amr


@pytest.mark.parametrize("form", ["paper", "official"])
def test_default_compensation_branch_keeps_the_scale_of_a_pretrained_backbone(quick_voc, form):
    """On the pretrained tiny backbone (frozen BatchNorm, the official recipe), the default
    compensation branch's features keep at least the spotlight's scale at every stage: the next
    stage's frozen BatchNorm shift cannot silence its units. The literal ``"stage"`` placement shrinks
    them 2-4x (each AMM scales ``|f|`` by about 0.45), and the branch collapses in training. (The
    residual placement grows them instead, measured 1.5x at the first stage to 4.2x at the last with
    the paper form, 2.5x to 4.7x with the official form, whose Gaussian is a density.)"""
    import numpy as np
    from PIL import Image

    from wsss_lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from wsss_lib.models.weights import Weights
    from wsss_lib.runs.profile import MINI_NETWORK, QUICK
    from wsss_lib.stages.amr import AMRConfig

    files = sorted((quick_voc / "JPEGImages").glob("*.jpg"))[:8]
    x = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1).float() / 255
                     for f in files])
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    weights = Weights("pretraining-task", QUICK.pretrains["mini"])

    def ratios(placement: str) -> list[float]:
        torch.manual_seed(0)
        amr = build_amr("tiny", 8, weights, placement=placement, form=form, **MINI_NETWORK).eval()
        out = []
        with torch.no_grad():
            fs = fc = x
            for s, c in zip(amr.spotlight.backbone, amr.compensation.backbone):
                fs, fc = s(fs), c(fc)
                out.append((fc.abs().mean() / fs.abs().mean()).item())
        return out

    default = ratios(AMRConfig.from_params(amm_form=form).placement)
    assert min(default) >= 0.9, f"compensation / spotlight mean |f| per stage: {default}"
    if form == "paper":  # the literal reading shrinks them (the official form's Gaussian is a density: not bounded by 1)
        assert max(ratios("stage")) < 0.75
