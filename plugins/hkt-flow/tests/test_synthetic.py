"""Synthetic flow: exact geometry (checked with coordinate-ramp photos), occlusion, splits, augmentation."""

import functools

import numpy as np
import pytest
import torch

import hkt_flow.synthetic as synthetic
from hkt_flow.augment import FlowAugmentation
from hkt_flow.datasets import motorcycle_bundle, motorcycle_pair
from hkt_flow.synthetic import SyntheticFlow, render_pair, synthetic_bundle


@functools.lru_cache(maxsize=None)
def _ramp_photo(name):
    """Channels 0/1 encode the photo's own x/y; channel 2 tells the two photos apart."""
    ys, xs = np.mgrid[0:300, 0:300].astype(np.float64)
    return np.dstack([xs, ys, np.full_like(xs, 0.0 if name == "bg" else 1000.0)])


def test_frame2_at_its_source_positions_moves_by_the_ground_truth(monkeypatch):
    monkeypatch.setattr(synthetic, "photo", _ramp_photo)
    for seed in range(4):
        p = render_pair(np.random.default_rng(seed), (48, 64), ("bg", "fg"), max_motion=5.0)
        h, w = p.flow.shape[:2]
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        bg_value = p.image1[~p.foreground][0, 2]  # which photo drew the background
        bg1 = p.image1[..., 2] == bg_value
        # frame 1 maps pixel -> photo coordinates linearly (origin + zoom * x): recover the map
        zoom_x, origin_x = np.polyfit(xs[bg1], p.image1[..., 0][bg1], 1)
        zoom_y, origin_y = np.polyfit(ys[bg1], p.image1[..., 1][bg1], 1)
        assert zoom_x == pytest.approx(zoom_y)
        # every background pixel y of frame 2 shows the frame-1 point x with x + F(x) = y
        bg2 = p.image2[..., 2] == bg_value
        src_x = (p.image2[..., 0] - origin_x) / zoom_x
        src_y = (p.image2[..., 1] - origin_y) / zoom_y
        inside = bg2 & (src_x >= 0) & (src_x <= w - 1) & (src_y >= 0) & (src_y <= h - 1)
        x0, y0 = np.floor(src_x[inside]).astype(int), np.floor(src_y[inside]).astype(int)
        x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
        # keep points whose four neighbours are background in frame 1 (the flow is smooth there)
        smooth = bg1[y0, x0] & bg1[y0, x1] & bg1[y1, x0] & bg1[y1, x1]
        fx, fy = src_x[inside] - x0, src_y[inside] - y0
        flow = ((1 - fy) * (1 - fx))[:, None] * p.flow[y0, x0] + ((1 - fy) * fx)[:, None] * p.flow[y0, x1] \
            + (fy * (1 - fx))[:, None] * p.flow[y1, x0] + (fy * fx)[:, None] * p.flow[y1, x1]
        landed = np.stack([src_x[inside], src_y[inside]], -1) + flow
        target = np.stack([xs[inside], ys[inside]], -1)
        assert smooth.sum() > 0.5 * h * w
        assert np.abs(landed - target)[smooth].max() < 0.02
        # the object moves rigidly: frame-2 object pixels decode to frame-1 object pixels
        assert (p.image2[..., 2] != bg_value).any() and p.foreground.any()


def test_occlusion_is_out_of_frame_or_under_the_object(monkeypatch):
    monkeypatch.setattr(synthetic, "photo", _ramp_photo)
    p = render_pair(np.random.default_rng(3), (48, 64), ("bg", "fg"), max_motion=5.0)
    h, w = p.flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    tx, ty = xs + p.flow[..., 0], ys + p.flow[..., 1]
    out = (tx < 0) | (tx > w - 1) | (ty < 0) | (ty > h - 1)
    assert np.all(p.occluded[out])
    assert not np.any(p.occluded[p.foreground & ~out])  # the object is on top: never covered
    ix, iy = np.clip(np.round(tx), 0, w - 1).astype(int), np.clip(np.round(ty), 0, h - 1).astype(int)
    covered = p.occluded & ~out
    # covered background pixels land where frame 2 shows the object (allowing rounding at its edge)
    bg_value = p.image1[~p.foreground][0, 2]
    assert covered.any() and (p.image2[iy, ix, 2] != bg_value)[covered].mean() > 0.8


def test_dataset_is_deterministic_and_splits_use_different_photos():
    ds = SyntheticFlow(3, size=(32, 48), seed=5)
    (a1, a2), (f, v) = ds[1]
    (b1, _), (g, _) = SyntheticFlow(3, size=(32, 48), seed=5, cache=False)[1]  # rendered again
    assert torch.equal(a1, b1) and torch.equal(f, g)
    assert ds[1][0][0] is a1  # kept in memory
    assert a1.shape == (3, 32, 48) and f.shape == (2, 32, 48) and v.dtype == torch.bool and bool(v.all())
    assert float(a1.min()) >= 0 and float(a1.max()) <= 255
    visible = SyntheticFlow(3, size=(32, 48), seed=5, valid="visible")
    assert torch.equal(visible[1][1][1], torch.from_numpy(~visible.pair(1).occluded))
    bundle = synthetic_bundle(train_size=4, test_size=2, size=[32, 32])
    assert set(bundle.info["train_photos"]).isdisjoint(bundle.info["test_photos"])
    assert bundle.input_shapes == ((3, 32, 32), (3, 32, 32)) and len(bundle.test) == 2
    for bad, match in (({"size": (30, 32)}, "multiples of 8"), ({"valid": "some"}, "valid"),
                       ({"max_motion": 0}, "max_motion")):
        with pytest.raises(ValueError, match=match):
            SyntheticFlow(2, **bad)
    with pytest.raises(IndexError):
        ds.pair(3)


def test_augmentation_flips_keep_the_ground_truth_exact():
    torch.manual_seed(0)
    image1, image2 = torch.rand(4, 3, 8, 8) * 255, torch.rand(4, 3, 8, 8) * 255
    flow = torch.randn(4, 2, 8, 8)
    valid = torch.rand(4, 8, 8) > 0.5
    aug = FlowAugmentation(jitter=0.0, erase=0.0, hflip=1.0, vflip=0.0)
    (o1, o2), (f, v) = aug((image1, image2), (flow, valid), torch.Generator().manual_seed(0))
    assert torch.allclose(o1, image1.flip(-1), atol=1e-3) and torch.allclose(o2, image2.flip(-1), atol=1e-3)
    assert torch.equal(f[:, 0], -flow[:, 0].flip(-1)) and torch.equal(f[:, 1], flow[:, 1].flip(-1))
    assert torch.equal(v, valid.flip(-1))
    aug = FlowAugmentation(jitter=0.0, erase=0.0, hflip=0.0, vflip=1.0)
    (_, _), f = aug((image1, image2), flow, torch.Generator().manual_seed(0))
    assert torch.equal(f[:, 1], -flow[:, 1].flip(-2)) and torch.equal(f[:, 0], flow[:, 0].flip(-2))


def test_photometric_augmentation_is_shared_unless_asymmetric_and_stays_in_range():
    image = torch.rand(3, 3, 8, 8) * 255
    aug = FlowAugmentation(jitter=0.4, asymmetric=0.0, erase=0.0, hflip=0.0, vflip=0.0)
    (o1, o2), _ = aug((image, image.clone()), torch.zeros(3, 2, 8, 8), torch.Generator().manual_seed(1))
    assert torch.allclose(o1, o2) and not torch.allclose(o1, image)
    assert float(o1.min()) >= 0 and float(o1.max()) <= 255
    aug = FlowAugmentation(jitter=0.4, asymmetric=1.0, erase=1.0, hflip=0.0, vflip=0.0)
    (o1, o2), _ = aug((image, image.clone()), torch.zeros(3, 2, 8, 8), torch.Generator().manual_seed(1))
    assert not torch.allclose(o1, o2)
    with pytest.raises(ValueError, match="hflip"):
        FlowAugmentation(hflip=2.0)


def test_motorcycle_is_horizontal_flow_from_disparity():
    import skimage.data

    left, right, flow, valid = motorcycle_pair(4)
    assert left.shape[:2] == flow.shape[:2] and left.shape[0] % 8 == 0 and left.shape[1] % 8 == 0
    assert np.all(flow[..., 1] == 0) and np.all(flow[..., 0][valid] < 0) and 0.5 < valid.mean() < 1
    _, _, disparity = skimage.data.stereo_motorcycle()
    block = disparity[8:12, 20:24]
    if np.isfinite(block).all():
        assert flow[2, 5, 0] == pytest.approx(-block.mean() / 4, rel=1e-5)
    bundle = motorcycle_bundle()
    (left, r), (f, v) = bundle.test[0]
    assert left.shape == (3, *flow.shape[:2]) and torch.equal(v, torch.from_numpy(valid))
