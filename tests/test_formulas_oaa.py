"""OAA formulas on tiny tensors computed by hand (eq. 1, 2, 5, 10, the gates, init, fallback)."""

import pytest
import torch

from wsss_lib.formulas.accumulation import OAAStore, fuse_ave, fuse_max, gate_all, gate_paper, gate_topk
from wsss_lib.formulas.attention import attention_maps, class_probabilities, class_scores


def test_eq1_scores_are_gap_and_probabilities_the_sigmoid():
    F = torch.tensor([[[[1.0, 3.0], [-2.0, 2.0]]]])  # GAP = 1.0
    assert class_scores(F).item() == pytest.approx(1.0)
    assert class_probabilities(F).item() == pytest.approx(1 / (1 + torch.e ** -1))


def test_eq2_attention_relu_over_max():
    F = torch.tensor([[[[2.0, -1.0], [4.0, 1.0]]]])
    expected = torch.tensor([[[[0.5, 0.0], [1.0, 0.25]]]])
    torch.testing.assert_close(attention_maps(F), expected)


def test_eq2_guard_non_positive_max_gives_zeros():
    F = torch.tensor([[[[-2.0, -1.0], [-4.0, -0.5]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    assert torch.equal(attention_maps(F), torch.zeros_like(F))


def test_eq5_max_fusion():
    M = torch.tensor([[0.2, 0.9], [0.0, 0.5]])
    A = torch.tensor([[0.6, 0.1], [0.3, 0.5]])
    torch.testing.assert_close(fuse_max(M, A), torch.tensor([[0.6, 0.9], [0.3, 0.5]]))


def test_eq10_average_fusion():
    # third accepted update: ((3-1) * M + A) / 3
    M = torch.tensor([[0.3, 0.6]])
    A = torch.tensor([[0.9, 0.0]])
    torch.testing.assert_close(fuse_ave(M, A, torch.tensor(3)), torch.tensor([[0.5, 0.4]]))


def test_gates_by_hand():
    scores = torch.tensor([[2.0, 1.0, 1.5, -1.0],    # labels {0, 1}: non-target max = 1.5
                           [0.0, 3.0, -1.0, 0.5]])   # labels {2}:   non-target max = 3.0
    labels = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 0]])
    assert gate_paper(scores, labels).tolist() == [[True, False, False, False], [False, False, False, False]]
    # top-k with k = #labels: row 0 top-2 = {0, 2} -> class 0 only; row 1 top-1 = {1} -> none
    assert gate_topk(scores, labels).tolist() == [[True, False, False, False], [False, False, False, False]]
    assert gate_all(scores, labels).tolist() == labels.bool().tolist()
    scores2 = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    assert gate_topk(scores2, labels[:1]).tolist() == [[True, True, False, False]]
    assert gate_paper(scores2, labels[:1]).tolist() == [[True, True, False, False]]


def _store(**kw):
    labels = torch.tensor([[1, 0], [1, 1]])
    return OAAStore(["a", "b"], labels, (1, 2), **kw)


def _upd(store, A, scores, epoch=0, last=False, idx=(0, 1), valid=None):
    labels = torch.tensor([[1, 0], [1, 1]])[list(idx)]
    return store.update(torch.tensor(idx), A, valid, scores, labels, epoch, last_epoch=last)


def test_store_first_init_max_and_ave_count_accepted_updates_only():
    st = _store(gate="paper")
    good = torch.tensor([[5.0, 0.0], [5.0, 5.0]])
    A1 = torch.tensor([[[[0.2, 0.8]], [[0, 0]]], [[[1.0, 0.0]], [[0.4, 0.4]]]])
    assert _upd(st, A1, good) == 3
    # first accepted map initializes both MAX and AVE
    torch.testing.assert_close(st.maps["max"], torch.tensor([[[0.2, 0.8]], [[1.0, 0.0]], [[0.4, 0.4]]]))
    torch.testing.assert_close(st.maps["ave"], st.maps["max"])
    # epoch 2: image 'a' class 0 is rejected (a non-target scores higher) -> unchanged, not counted
    bad_a = torch.tensor([[0.0, 9.0], [5.0, 5.0]])
    A2 = torch.tensor([[[[0.9, 0.9]], [[0, 0]]], [[[0.0, 0.6]], [[1.0, 0.0]]]])
    assert _upd(st, A2, bad_a, epoch=1) == 2
    assert st.counts.tolist() == [1, 2, 2]
    torch.testing.assert_close(st.maps["max"][0], torch.tensor([[0.2, 0.8]]))
    torch.testing.assert_close(st.maps["max"][1], torch.tensor([[1.0, 0.6]]))
    torch.testing.assert_close(st.maps["ave"][1], torch.tensor([[0.5, 0.3]]))  # (1*[1,0] + [0,.6]) / 2
    torch.testing.assert_close(st.maps["ave"][2], torch.tensor([[0.7, 0.2]]))
    # epoch 3 on 'b' class 1: t = 3 (accepted updates), not 3 epochs by coincidence only
    A3 = torch.tensor([[[[0.0, 0.0]], [[0.1, 0.9]]]])
    _upd(st, A3, torch.tensor([[5.0, 5.0]]), epoch=2, idx=(1,))
    torch.testing.assert_close(st.maps["ave"][2], torch.tensor([[0.5, 1.3 / 3]]))  # (2*[.7,.2] + [.1,.9]) / 3


def test_store_start_epoch_and_last_epoch_fallback():
    st = _store(gate="paper", start_epoch=1, last_epoch_fallback=True)
    A = torch.tensor([[[[0.3, 0.7]], [[0, 0]]], [[[1.0, 0.5]], [[0.2, 0.1]]]])
    assert _upd(st, A, torch.tensor([[5.0, 0.0], [5.0, 5.0]]), epoch=0) == 0  # before start_epoch
    assert st.counts.tolist() == [0, 0, 0]
    # last epoch, 'a' rejected -> fallback writes the current map; 'b' accepted normally
    assert _upd(st, A, torch.tensor([[0.0, 9.0], [5.0, 5.0]]), epoch=1, last=True) == 2
    assert st.fallback.tolist() == [True, False, False]
    torch.testing.assert_close(st.maps["max"][0], torch.tensor([[0.3, 0.7]]))
    assert st.counts.tolist() == [0, 1, 1]
    st2 = _store(gate="paper")
    _upd(st2, A, torch.tensor([[0.0, 9.0], [5.0, 5.0]]), epoch=1, last=True)
    assert st2.maps["max"][0].abs().sum() == 0  # no fallback unless asked


def test_store_partial_view_keeps_unseen_pixels():
    st = _store(gate="all")
    A1 = torch.tensor([[[[0.4, 0.4]], [[0, 0]]], [[[0.4, 0.4]], [[0.4, 0.4]]]])
    _upd(st, A1, torch.zeros(2, 2))
    valid = torch.tensor([[[[True, False]]], [[[True, False]]]])
    A2 = torch.ones(2, 2, 1, 2)
    _upd(st, A2, torch.zeros(2, 2), valid=valid)
    torch.testing.assert_close(st.maps["max"][0], torch.tensor([[1.0, 0.4]]))
    torch.testing.assert_close(st.maps["ave"][0], torch.tensor([[0.7, 0.4]]))


def test_store_state_dict_roundtrip():
    st = _store()
    _upd(st, torch.rand(2, 2, 1, 2), torch.tensor([[5.0, 0.0], [5.0, 5.0]]))
    st2 = _store()
    st2.load_state_dict(st.state_dict())
    assert torch.equal(st2.maps["max"], st.maps["max"]) and torch.equal(st2.counts, st.counts)
    with pytest.raises(ValueError, match="other images"):
        OAAStore(["x", "y"], torch.tensor([[1, 0], [1, 1]]), (1, 2)).load_state_dict(st.state_dict())


def test_eq10_ave_per_pixel_under_a_partial_view():
    """Issue example: a crop that sees the left half, [0.4, 0.5, -, -], then a full view,
    [0.4, 0.5, 0.6, 0.6], gives [0.4, 0.5, 0.6, 0.6] by eq. 10 per pixel (not [.., 0.3, 0.3])."""
    st = OAAStore(["a"], torch.tensor([[1]]), (1, 4), gate="all")
    left = torch.tensor([[[[True, True, False, False]]]])
    crop = torch.tensor([[[[0.4, 0.5, 0.0, 0.0]]]])
    st.update(torch.tensor([0]), crop, left, torch.zeros(1, 1), torch.tensor([[1]]), 0)
    full = torch.tensor([[[[0.4, 0.5, 0.6, 0.6]]]])
    st.update(torch.tensor([0]), full, None, torch.zeros(1, 1), torch.tensor([[1]]), 1)
    torch.testing.assert_close(st.maps["ave"][0], torch.tensor([[0.4, 0.5, 0.6, 0.6]]))
    torch.testing.assert_close(st.maps["max"][0], torch.tensor([[0.4, 0.5, 0.6, 0.6]]))
    assert st.pixel_counts[0].tolist() == [[2, 2, 1, 1]] and st.counts.tolist() == [2]
    # a third, right-half view averages only where it looked: (1*0.6 + 0.0) / 2 = 0.3 at pixel 3
    right = torch.tensor([[[[False, False, True, True]]]])
    st.update(torch.tensor([0]), torch.tensor([[[[9.0, 9.0, 0.6, 0.0]]]]), right, torch.zeros(1, 1),
              torch.tensor([[1]]), 2)
    torch.testing.assert_close(st.maps["ave"][0], torch.tensor([[0.4, 0.5, 0.6, 0.3]]))
    st2 = OAAStore(["a"], torch.tensor([[1]]), (1, 4))
    st2.load_state_dict(st.state_dict())
    assert torch.equal(st2.pixel_counts, st.pixel_counts)


def test_row_buffer_keeps_its_scratch_row_out_of_state_and_refuses_other_shapes():
    import pytest
    import torch

    from wsss_lib.util.row_buffer import RowBuffer

    buf = RowBuffer(3, {"maps": ((2, 2), torch.float16), "seen": ((), torch.bool)}, lead=(4,))
    assert buf["maps"].shape == (4, 4, 2, 2) and buf.touched.shape == (4, 4) and buf.scratch == 3
    rows = buf.row_of(torch.tensor([2, -1]))
    assert rows.tolist() == [2, 3]
    buf["maps"][1, rows] = torch.ones(2, 2, 2, dtype=torch.float16)
    buf["seen"][1, rows] = True
    buf.touched[1, rows] = True
    st = buf.state()
    assert st["maps"].shape == (4, 3, 2, 2) and st["seen"][1].tolist() == [False, False, True]
    other = RowBuffer(3, {"maps": ((2, 2), torch.float16), "seen": ((), torch.bool)}, lead=(4,))
    other.load(st)
    assert torch.equal(other.real("maps"), buf.real("maps")) and not other["seen"][:, 3].any()
    buf.merge_shards()  # one process: only forgets what was touched
    assert not buf.touched.any()
    with pytest.raises(ValueError, match="snapshots checkpoint has maps of shape"):
        RowBuffer(2, {"maps": ((2, 2), torch.float16), "seen": ((), torch.bool)}, lead=(4,)).load(st, "snapshots")
