"""Alignment: a flipped / cropped view's attention fuses into the right image pixels."""

import numpy as np
import torch

from wsss_lib.data.transforms import (ViewGeometry, image_frame_to_views, render_views, sample_geometry,
                                      views_to_image_frame)


def _pattern(h=8, w=8):
    return torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)


def test_flip_view_maps_back_exactly():
    img = _pattern()
    geo = ViewGeometry(flip=True).as_tensor()[None]
    view = render_views(img, geo, 8)
    assert torch.equal(view, img.flip(-1))
    back, valid = views_to_image_frame(view, geo, (8, 8))
    assert valid.all()
    torch.testing.assert_close(back, img)


def test_crop_view_maps_back_into_the_right_pixels():
    img = _pattern()
    # the right half of the image, top half: centre (0.5, -0.5), half extents 0.5 -> a 4x4 view
    geo = ViewGeometry(cx=0.5, cy=-0.5, hw=0.5, hh=0.5, flip=True).as_tensor()[None]
    view = render_views(img, geo, 4)
    torch.testing.assert_close(view, img[..., :4, 4:].flip(-1))
    back, valid = views_to_image_frame(view, geo, (8, 8))
    expected_valid = torch.zeros(8, 8, dtype=torch.bool)
    expected_valid[:4, 4:] = True
    assert torch.equal(valid[0, 0], expected_valid)
    torch.testing.assert_close(back[0, 0][expected_valid], img[0, 0][expected_valid])
    assert back[0, 0][~expected_valid].abs().sum() == 0


def test_store_maps_sampled_into_views_roundtrip():
    maps = torch.rand(1, 3, 8, 8)
    geo = ViewGeometry(cx=-0.5, cy=0.5, hw=0.5, hh=0.5).as_tensor()[None]
    v = image_frame_to_views(maps, geo, (4, 4))
    torch.testing.assert_close(v, maps[..., 4:, :4])


def test_a_blob_seen_in_a_flipped_crop_fuses_at_its_image_position():
    """End to end through the OAA store: activation on the object's pixels in a flipped, zoomed view
    lands on the object's pixels in the image frame."""
    from wsss_lib.formulas.accumulation import OAAStore

    obj = torch.zeros(1, 1, 16, 16)
    obj[..., 2:6, 10:14] = 1.0  # an object near the top right
    geo = ViewGeometry(cx=0.25, cy=-0.25, hw=0.75, hh=0.75, flip=True).as_tensor()[None]
    view_att = render_views(obj, geo, 12)  # the network's "attention" follows the object in the view
    back, valid = views_to_image_frame(view_att, geo, (16, 16))
    st = OAAStore(["x"], torch.tensor([[1]]), (16, 16), gate="all")
    st.update(torch.tensor([0]), back, valid, torch.zeros(1, 1), torch.tensor([[1]]), epoch=0)
    m = st.maps["max"][0]
    assert m[2:6, 10:14].mean() > 0.8
    assert m[obj[0, 0] == 0].max() < 0.6 and m[obj[0, 0] == 0].mean() < 0.05


def test_geometry_sampling_is_seeded_and_in_range():
    a = sample_geometry(np.random.default_rng([1, 2, 3]), "flip_scale_crop", (0.6, 0.9))
    b = sample_geometry(np.random.default_rng([1, 2, 3]), "flip_scale_crop", (0.6, 0.9))
    assert a == b
    assert 0.6 <= a.hw <= 0.9 and abs(a.cx) <= 1 - a.hw + 1e-9
