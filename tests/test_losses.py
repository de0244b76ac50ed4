"""Losses on tiny tensors computed by hand (OAA eqs. 6-9 and the official form, AMR eqs. 5-7, 10)."""

import math

import pytest
import torch

from wsss_lib.formulas.losses import (amr_classification_loss, amr_total_loss, area_regularizer, cps_loss,
                             hybrid_loss, hybrid_loss_official, mce_loss, multilabel_bce)

L = math.log


def _sig(x):
    return 1 / (1 + math.exp(-x))


# one image, one class, 1 x 2 pixels: F = [0, ln 3] -> q = [1/2, 3/4]; soft labels p = [0.5, 0]
F1 = torch.tensor([[[[0.0, math.log(3.0)]]]])
P1 = torch.tensor([[[[0.5, 0.0]]]])


def test_eq6_mce_by_hand():
    # -(1/2) [ (.5 ln .5 + .5 ln .5) + (0 ln .75 + 1 ln .25) ]
    expected = -0.5 * ((0.5 * L(0.5) + 0.5 * L(0.5)) + L(0.25))
    assert mce_loss(F1, P1).item() == pytest.approx(expected)


def test_eqs7_to_9_hybrid_by_hand_and_the_eq8_misprint():
    # N+ = {pixel 0}: L+ = -(1/1) * .5 ln(1/2);  N- = {pixel 1}: L- = -(1/1) ln(1 - 3/4)
    expected = -0.5 * L(0.5) - L(0.25)
    assert hybrid_loss(F1, P1).item() == pytest.approx(expected)
    # eq. 8 as printed (times p, which is 0 on N-) would give only the L+ term:
    assert hybrid_loss(F1, P1).item() != pytest.approx(-0.5 * L(0.5))


def test_hybrid_averages_classes_and_images():
    F = torch.zeros(2, 2, 1, 2)  # q = 1/2 everywhere
    p = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]],      # image 0: class 0 half positive, class 1 all negative
                      [[[0.2, 0.4]], [[0.0, 0.0]]]])     # image 1: class 0 all positive
    ln2 = L(2)
    img0 = ((1.0 * ln2 + ln2) + (0 + ln2)) / 2          # class 0: L+ = ln2 (p=1), L- = ln2 ; class 1: L- = ln2
    img1 = ((0.5 * (0.2 + 0.4) * ln2 + 0) + ln2) / 2    # class 0: L+ = mean(p) ln2, N- empty -> 0
    assert hybrid_loss(F, p).item() == pytest.approx((img0 + img1) / 2)
    # eq. 9's sum over the K = 2 classes, divided by K: the same minimiser, the classifier's scale
    assert mce_loss(F, p).item() == pytest.approx(ln2)  # q = 1/2: every pixel's cross entropy is ln 2


def test_official_hybrid_is_per_image_over_classes_with_its_threshold():
    F = torch.zeros(1, 2, 1, 2)
    p = torch.tensor([[[[0.8, 0.0005]], [[0.0, 0.4]]]])  # 0.0005 <= 0.001 counts as negative
    ln2 = L(2)
    pos = (0.8 * ln2 + 0.4 * ln2) / 2
    neg = (ln2 + ln2) / 2
    assert hybrid_loss_official(F, p).item() == pytest.approx(pos + neg)
    # per-class form: class 0 has no p == 0 pixel (N- empty), class 1 has one; classes averaged
    assert hybrid_loss(F, p).item() == pytest.approx((0.5 * (0.8 + 0.0005) * ln2 + (0.4 * ln2 + ln2)) / 2)
    # a second image with one positive pixel: normalized on its own, then the images averaged
    F2, p2 = torch.zeros(2, 2, 1, 2), torch.cat([p, torch.tensor([[[[0.5, 0.0]], [[0.0, 0.0]]]])])
    img1 = 0.5 * ln2 + ln2  # its positive: 0.5 ln2 over 1 pixel; its three negatives: ln2 each, over 3
    assert hybrid_loss_official(F2, p2).item() == pytest.approx((pos + neg + img1) / 2)


def test_bce_and_amr_eq5():
    s = torch.tensor([[0.0, 2.0]])
    y = torch.tensor([[1.0, 0.0]])
    bce = -(L(0.5) + L(1 - _sig(2.0))) / 2
    assert multilabel_bce(s, y).item() == pytest.approx(bce)
    s2 = torch.tensor([[0.0, 0.0]])
    assert amr_classification_loss(s, s2, y).item() == pytest.approx(0.5 * (bce + L(2)))


def test_eq6_cps_l1_and_present_classes():
    Ms = torch.tensor([[[[1.0, 0.0]], [[0.5, 0.5]]]])
    Mc = torch.tensor([[[[0.5, 0.5]], [[0.0, 0.0]]]])
    assert cps_loss(Ms, Mc).item() == pytest.approx((0.5 + 0.5 + 0.5 + 0.5) / 4)
    assert cps_loss(Ms, Mc, torch.tensor([[1, 0]])).item() == pytest.approx(0.5)


def test_eq7_weights_and_eq10_area():
    a, b, c = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0)
    assert amr_total_loss(a, b, c).item() == pytest.approx(0.5 + 1 + 4)  # paper: eq. 5 + eq. 6
    assert amr_total_loss(a, b, c, 0.5, 0.5, 0.05).item() == pytest.approx(0.5 + 1 + 0.2)  # official
    P = torch.tensor([[[[1.0, 0.0]], [[0.5, 0.5]]]])
    assert area_regularizer(P).item() == pytest.approx(0.5)
    assert area_regularizer(P, torch.tensor([[1, 0]])).item() == pytest.approx(0.5)
    assert area_regularizer(P, torch.tensor([[0, 1]])).item() == pytest.approx(0.5)
    assert amr_total_loss(a, b, c, l_area=torch.tensor(0.5), w_area=2.0).item() == pytest.approx(5.5 + 1.0)
