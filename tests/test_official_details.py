"""Fidelity to the official code, the details around the formulas: each official function is
restated here from reading its repository (PengtaoJiang/OAA-PyTorch ``scripts/train_iam.py``,
``res.py``, ``gen_gt.py``; PengtaoJiang/OAA ``examples/seg/exp1/train.prototxt``), run next to
``wsss_lib``'s version on random inputs, and the outputs compared."""

from __future__ import annotations

import numpy as np
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


def _official_per_image(logits, target):
    """The official loss at batch 1 (the Caffe layer sees one image, ``bottom[0].data[0]``), the
    images' losses averaged (Caffe divides the ``iter_size`` accumulated gradients by ``iter_size``)."""
    return torch.stack([_official_exloss(logits[i:i + 1], target[i:i + 1]) for i in range(len(logits))]).mean()


@pytest.mark.parametrize("scale", [1.0, 8.0, 25.0])
def test_official_hybrid_loss_matches_exloss_at_large_logits(scale):
    g = torch.Generator().manual_seed(int(scale))
    logits = torch.randn(3, 5, 9, 9, generator=g) * scale
    target = torch.rand(3, 5, 9, 9, generator=g)
    target[target < 0.5] = 0.0                  # a pseudo-label map: many zeros
    target[1] *= (torch.rand(5, 9, 9, generator=g) < 0.05)  # an image with few positives: normalization matters
    target[0, 0, 0, :3] = torch.tensor([0.001, 0.0009, 0.0011])  # the threshold's edge
    torch.testing.assert_close(hybrid_loss_official(logits, target), _official_per_image(logits, target),
                               rtol=1e-5, atol=1e-6)
    # one image: exactly the official ExLoss on that batch
    torch.testing.assert_close(hybrid_loss_official(logits[1:2], target[1:2]), _official_exloss(logits[1:2], target[1:2]),
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


# --- restatement of DeepLab-LargeFOV (PengtaoJiang/OAA examples/seg/exp1/train.prototxt) ----------------
# (name, kind, args) in prototxt order; conv: (out, kernel, pad, dilation); pool: (kernel, stride, pad)
_PROTOTXT = [("conv1_1", "conv", (64, 3, 1, 1)), ("conv1_2", "conv", (64, 3, 1, 1)), ("pool1", "max", (3, 2, 1)),
             ("conv2_1", "conv", (128, 3, 1, 1)), ("conv2_2", "conv", (128, 3, 1, 1)), ("pool2", "max", (3, 2, 1)),
             ("conv3_1", "conv", (256, 3, 1, 1)), ("conv3_2", "conv", (256, 3, 1, 1)),
             ("conv3_3", "conv", (256, 3, 1, 1)), ("pool3", "max", (3, 2, 1)),
             ("conv4_1", "conv", (512, 3, 1, 1)), ("conv4_2", "conv", (512, 3, 1, 1)),
             ("conv4_3", "conv", (512, 3, 1, 1)), ("pool4", "max", (3, 1, 1)),
             ("conv5_1", "conv", (512, 3, 2, 2)), ("conv5_2", "conv", (512, 3, 2, 2)),
             ("conv5_3", "conv", (512, 3, 2, 2)), ("pool5", "max", (3, 1, 1)), ("pool5a", "ave", (3, 1, 1)),
             ("fc6", "conv", (1024, 3, 12, 12)), ("drop6", "dropout", ()), ("fc7", "conv", (1024, 1, 0, 1)),
             ("drop7", "dropout", ()), ("score", "score", (21, 1, 0, 1))]


def _caffe_pool_size(n, k, s, p):
    """Caffe's pooled size: rounded up, then the last window must start inside the image (+ pad)."""
    out = -(-(n + 2 * p - k) // s) + 1
    if p and (out - 1) * s >= n + p:
        out -= 1
    return out


def _official_largefov(x, convs, train=False):
    """Run the prototxt's layers with the given conv weights (name -> (weight, bias)); ReLU after every
    conv but the score layer; Caffe max pooling sizes (checked) and average pooling over the padded window."""
    for name, kind, args in _PROTOTXT:
        if kind in ("conv", "score"):
            w, b = convs[name]
            _, k, pad, dil = args
            x = torch.nn.functional.conv2d(x, w, b, padding=pad, dilation=dil)
            if kind == "conv":
                x = torch.relu(x)
        elif kind == "max":
            k, s, p = args
            expect = _caffe_pool_size(x.shape[-1], k, s, p)
            x = torch.nn.functional.max_pool2d(x, k, s, p, ceil_mode=True)
            assert x.shape[-1] == expect, (name, x.shape, expect)
        elif kind == "ave":
            k, s, p = args
            x = torch.nn.functional.avg_pool2d(x, k, s, p, count_include_pad=True)
        elif kind == "dropout":
            x = torch.nn.functional.dropout(x, 0.5, training=train)  # element-wise (Caffe Dropout)
    return x


def _conv_weights_in_order(model):
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    names = [n for n, kind, _ in _PROTOTXT if kind in ("conv", "score")]
    assert len(convs) == len(names)
    return {n: (m.weight, m.bias) for n, m in zip(names, convs)}


@pytest.mark.parametrize("size", [321, 320, 65])
def test_deeplab_largefov_is_the_official_layer_list(size):
    from wsss_lib.models.segnet import build_segnet

    torch.manual_seed(0)
    net = build_segnet("deeplab_largefov", 21).eval()
    convs = _conv_weights_in_order(net)
    for name, kind, args in _PROTOTXT:  # same channels, kernels, paddings and dilations as the prototxt
        if kind in ("conv", "score"):
            w = convs[name][0]
            assert w.shape[0] == args[0] and w.shape[-1] == args[1], name
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        ours, ref = net(x), _official_largefov(x, convs)
    assert ours.shape == ref.shape
    if size == 321:
        assert ours.shape[-2:] == (41, 41)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_deeplab_largefov_dropout_is_element_wise():
    from wsss_lib.models.segnet import build_segnet

    net = build_segnet("deeplab_largefov", 21)
    drops = [m for m in net.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    assert [type(m) for m in drops] == [torch.nn.Dropout, torch.nn.Dropout] and all(m.p == 0.5 for m in drops)


# --- restatement of the official OAA accumulation (OAA-PyTorch models/vgg.py, VGG.forward) -------------
def _official_accumulate(png, epoch, training_epoch, index, class_maps, logits, labels):
    """One batch of the official forward's accumulation; ``png``: dict (image index, class) -> uint8 map,
    standing in for the PNG files (cv2.imwrite rounds a float image to uint8)."""
    probs = torch.sigmoid(logits.clone().detach())
    pred_inds_sort = torch.argsort(-probs)
    if epoch > 0:
        atts = class_maps.clone()
        atts[atts < 0] = 0
        num_labels = torch.sum(labels, dim=1).long()
        for batch_index, la in torch.nonzero(labels).tolist():
            pred_ind_select = pred_inds_sort[batch_index, :num_labels[batch_index]]
            key = (batch_index + index, la)
            att = atts[batch_index, la].numpy()
            att = att / (att.max() + 1e-8) * 255
            if epoch == training_epoch - 1 and key not in png:
                png[key] = np.clip(np.rint(att), 0, 255).astype(np.uint8)
                continue
            if la not in list(pred_ind_select.tolist()):
                continue
            if key not in png:
                png[key] = np.clip(np.rint(att), 0, 255).astype(np.uint8)
            else:
                png[key] = np.clip(np.rint(np.maximum(png[key], att)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("epochs", [1, 2, 4])
def test_official_preset_store_matches_the_official_png_store(epochs):
    from wsss_lib.formulas.accumulation import OAAStore
    from wsss_lib.formulas.attention import attention_maps
    from wsss_lib.stages.classifier import ClassifierConfig

    cfg = ClassifierConfig.from_params(preset="official")
    assert (cfg.gate, cfg.gate_start_epoch, cfg.last_epoch_fallback, cfg.augment) == ("topk_prob", 1, True, "none")
    g = torch.Generator().manual_seed(epochs)
    n, k, size, batch = 8, 5, 7, 4
    labels = (torch.rand(n, k, generator=g) < 0.4)
    labels[torch.arange(n), torch.randint(0, k, (n,), generator=g)] = True
    store = OAAStore([str(i) for i in range(n)], labels, (size, size), gate=cfg.gate, start_epoch=cfg.gate_start_epoch,
                     last_epoch_fallback=cfg.last_epoch_fallback)
    png = {}
    for epoch in range(epochs):
        for start in range(0, n, batch):
            idx = torch.arange(start, start + batch)
            F = torch.randn(batch, k, size, size, generator=g) * 3
            logits = torch.randn(batch, k, generator=g) * 4
            logits[0, :3] = torch.tensor([20.0, 25.0, 30.0])  # probabilities saturate at 1.0: ties
            _official_accumulate(png, epoch, epochs, start, F, logits, labels[idx].float())
            store.update(idx, attention_maps(F), None, logits, labels[idx], epoch, last_epoch=epoch == epochs - 1)
    ours = store.maps["max"] * 255
    written = 0
    for s, (i, c) in enumerate(zip(store.slot_image.tolist(), store.slot_class.tolist())):
        if (i, c) in png:
            written += 1
            assert (ours[s] - torch.from_numpy(png[(i, c)]).float()).abs().max() <= 0.5 + 1e-3, (i, c)
        else:  # never written officially: never accumulated here either
            assert int(store.counts[s]) == 0 and not bool(store.fallback[s]) and float(ours[s].abs().max()) == 0
    assert written == (0 if epochs == 1 else int(labels.sum()))  # one epoch writes nothing; else the fallback fills all


# --- restatement of the official attention preparation (OAA-PyTorch res.py) ------------------------------
def _official_res(png_uint8, height, width):
    import cv2

    att = cv2.resize(png_uint8, (width, height), interpolation=cv2.INTER_CUBIC)
    min_value, max_value = np.min(att), np.max(att)
    att = (att - min_value) / (max_value - min_value + 1e-8)
    return np.array(att * 255, dtype=np.uint8)


@pytest.mark.parametrize("size", [(37, 50), (96, 96), (9, 7)])
def test_official_attention_prep_matches_res_py(size):
    from wsss_lib.formulas.label_rules import official_attention_prep

    rng = np.random.default_rng(size[0])
    maps = rng.random((3, 12, 12)).astype(np.float32) ** 2
    maps /= maps.max(axis=(1, 2), keepdims=True)
    ours = official_attention_prep(maps, size)
    for m, got in zip(maps, ours):
        png = np.clip(np.rint(m * 255), 0, 255).astype(np.uint8)  # the accumulated map as the official PNG
        ref = _official_res(png, *size)
        assert got.shape == size and np.array_equal(np.rint(got * 255).astype(np.uint8), ref)


def test_pseudo_label_stage_takes_the_official_preparation(tmp_path, quick_voc):
    import json

    from wsss_lib.stages import get_stage

    with pytest.raises(ValueError, match="attention_prep"):
        get_stage("pseudo_labels")(quick=True, run_dir=str(tmp_path / "bad"), progress=False, attention_prep="cv2")
    run = get_stage("pseudo_labels")(quick=True, run_dir=str(tmp_path / "p"), progress=False, source="cam",
                                     attention_prep="official")
    assert json.loads((run / "params.json").read_text())["params"]["attention_prep"] == "official"
    assert len(list((run / "SegmentationClassPseudo").glob("*.png"))) > 0
