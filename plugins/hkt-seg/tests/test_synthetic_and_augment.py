import numpy as np
import pytest
import torch

from hkt_core.errors import ConfigError
from hkt_seg.data import SegAugment, SegmentationArrays, split_indices
from hkt_seg.datasets import synthetic_bundle
from hkt_seg.synthetic import make_synthetic


def test_synthetic_is_seeded_and_labels_every_class():
    a_images, a_masks = make_synthetic(12, size=32, num_classes=3, seed=3)
    b_images, b_masks = make_synthetic(12, size=32, num_classes=3, seed=3)
    np.testing.assert_array_equal(a_images, b_images)
    np.testing.assert_array_equal(a_masks, b_masks)
    assert a_images.shape == (12, 1, 32, 32) and a_masks.shape == (12, 32, 32)
    assert set(np.unique(a_masks)) == {0, 1, 2}
    assert all((m > 0).any() for m in a_masks)  # every image has at least one shape
    c_images, _ = make_synthetic(12, size=32, num_classes=3, seed=4)
    assert not np.array_equal(a_images, c_images)


def test_synthetic_masks_are_exact(monkeypatch):
    # with flat textures (background 0, class k = k/10) and no jitter, every pixel of the image
    # tells its class: the mask must agree pixel for pixel, overlapping shapes included
    import hkt_seg.synthetic as synthetic

    flat = {name: 0.0 for name in synthetic.BACKGROUNDS}
    flat.update({name: (k + 1) / 10 for k, name in enumerate(synthetic.CLASS_TEXTURES)})
    monkeypatch.setattr(synthetic, "texture", lambda name: np.full((40, 40), flat[name], np.float32))
    images, masks = synthetic.make_synthetic(20, size=32, num_classes=4, shapes=(2, 5), jitter=0.0, seed=5)
    np.testing.assert_allclose(images[:, 0], masks / 10, atol=1e-7)
    assert len(np.unique(masks)) == 4


@pytest.mark.parametrize("options, field", [({"num_classes": 9}, "num_classes"), ({"size": 4}, "size"),
                                            ({"shapes": (3, 1)}, "shapes"), ({"count": 0}, "count")])
def test_synthetic_refuses_bad_options(options, field):
    kwargs = {"count": 2, **options}
    with pytest.raises(ConfigError, match=field):
        make_synthetic(**kwargs)


def test_synthetic_bundle_has_disjoint_splits_and_info():
    bundle = synthetic_bundle(size=32, n_train=6, n_test=4, num_classes=3)
    assert len(bundle.train) == 6 and len(bundle.test) == 4
    assert bundle.input_shapes == ((1, 32, 32),)
    assert bundle.info["num_classes"] == 3 and bundle.info["class_names"][0] == "background"
    assert not torch.equal(bundle.train[0][0], bundle.test[0][0])
    assert isinstance(bundle.augment, SegAugment)


def test_augment_moves_image_and_mask_together():
    masks = torch.randint(0, 4, (16, 8, 8))
    images = masks.float().unsqueeze(1)  # the image encodes its own mask
    augment = SegAugment(brightness=0.0, contrast=0.0)
    out_images, out_masks = augment(images, masks, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out_images[:, 0], out_masks.float())
    assert not torch.equal(out_masks, masks)  # something moved
    (packed,), _ = augment((images,), masks, torch.Generator().manual_seed(0))
    torch.testing.assert_close(packed, out_images)


def test_augment_intensity_jitter_is_affine_per_sample():
    images = torch.rand(4, 1, 6, 6)
    masks = torch.zeros(4, 6, 6, dtype=torch.long)
    out, same = SegAugment(flips=False, rotations=False, brightness=0.2, contrast=0.2)(
        images, masks, torch.Generator().manual_seed(1))
    assert torch.equal(same, masks)
    for i in range(4):
        x, y = images[i].flatten(), out[i].flatten()
        slope = (y[1] - y[0]) / (x[1] - x[0])
        assert 0.8 - 1e-5 <= slope <= 1.2 + 1e-5
        torch.testing.assert_close(y, x * slope + (y[0] - x[0] * slope))


def test_arrays_and_split_validate():
    with pytest.raises(ValueError, match="masks must have shape"):
        SegmentationArrays(np.zeros((2, 1, 4, 4)), np.zeros((2, 3, 4), np.int64))
    with pytest.raises(ValueError, match="integer"):
        SegmentationArrays(np.zeros((2, 1, 4, 4)), np.zeros((2, 4, 4)))
    train, test = split_indices(10, 0.3, seed=0)
    assert len(test) == 3 and sorted([*train, *test]) == list(range(10))
    with pytest.raises(ValueError, match="test_fraction"):
        split_indices(10, 1.5, 0)
