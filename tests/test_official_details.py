"""Fidelity to the official code, the details around the formulas: each official function is
restated here from reading its repository (PengtaoJiang/OAA-PyTorch ``scripts/train_iam.py``,
``res.py``, ``gen_gt.py``; PengtaoJiang/OAA ``examples/seg/exp1/train.prototxt``), run next to
``wsss_lib``'s version on random inputs, and the outputs compared."""

from __future__ import annotations

import pytest
import torch

from wsss_lib.formulas.losses import hybrid_loss_official


# --- restatement of the official OAA+ loss (scripts/train_iam.py, ExLoss) ------------------------------
def _official_exloss(logits, target):
    """Positives ``target > 0.001``: ``-t log(sigmoid(x))``; the rest: ``-log(1 - sigmoid(x) + 1e-8)``;
    each sum divided by its own count when that count is not zero, the two added."""
    positive = target > 0.001
    negative = ~positive
    pos_terms = -target[positive] * torch.log(torch.sigmoid(logits[positive]))
    neg_terms = -torch.log(1 - torch.sigmoid(logits[negative]) + 1e-8)
    total = torch.zeros(())
    if positive.sum() > 0:
        total = total + pos_terms.sum() / positive.sum().float()
    if negative.sum() > 0:
        total = total + neg_terms.sum() / negative.sum().float()
    return total


@pytest.mark.parametrize("scale", [1.0, 8.0, 25.0])
def test_official_hybrid_loss_matches_exloss_at_large_logits(scale):
    g = torch.Generator().manual_seed(int(scale))
    logits = torch.randn(2, 5, 9, 9, generator=g) * scale
    target = torch.rand(2, 5, 9, 9, generator=g)
    target[target < 0.5] = 0.0                  # a pseudo-label map: many zeros
    target[0, 0, 0, :3] = torch.tensor([0.001, 0.0009, 0.0011])  # the threshold's edge
    torch.testing.assert_close(hybrid_loss_official(logits, target), _official_exloss(logits, target),
                               rtol=1e-5, atol=1e-6)


def test_official_negative_term_is_capped_where_sigmoid_saturates():
    logits = torch.full((1, 1, 1, 2), 25.0)
    target = torch.zeros(1, 1, 1, 2)       # every pixel negative: the loss is the capped term
    cap = -torch.log(torch.tensor(1e-8)).item()
    assert hybrid_loss_official(logits, target).item() == pytest.approx(cap, rel=1e-4)
    assert _official_exloss(logits, target).item() == pytest.approx(cap, rel=1e-4)


def test_official_hybrid_loss_without_positives_or_negatives():
    logits = torch.randn(1, 2, 3, 3)
    for target in (torch.zeros(1, 2, 3, 3), torch.ones(1, 2, 3, 3)):
        torch.testing.assert_close(hybrid_loss_official(logits, target), _official_exloss(logits, target))
