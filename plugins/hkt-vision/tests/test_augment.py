import itertools

import pytest
import torch
import torch.nn.functional as F

from hkt_vision.data import RandomCropFlip


def _crops_2d(x, p):
    """Every crop of the zero-padded image, with and without a horizontal flip (reference)."""
    padded = F.pad(x, (p, p, p, p))
    h, w = x.shape[-2:]
    out = []
    for dy, dx in itertools.product(range(2 * p + 1), repeat=2):
        crop = padded[..., dy:dy + h, dx:dx + w]
        out += [((dy, dx, False), crop), ((dy, dx, True), crop.flip(-1))]
    return out


def test_each_image_is_one_padded_crop_or_its_mirror():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 6, 6, dtype=torch.float64)
    target = torch.arange(64)
    out, out_target = RandomCropFlip(padding=2, flip=True)(x, target, gen)
    assert out.shape == x.shape and torch.equal(out_target, target)
    seen = set()
    for i in range(64):
        matches = [key for key, crop in _crops_2d(x[i], 2) if torch.equal(crop, out[i])]
        assert matches, f"sample {i} is not a crop of its padded image"
        seen.add(matches[0])
    assert len(seen) > 20                          # offsets and flips actually vary


def test_signals_shift_without_flip():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(32, 1, 40, dtype=torch.float64)
    out, _ = RandomCropFlip(padding=3, flip=False)(x, torch.zeros(32), gen)
    padded = F.pad(x, (3, 3))
    for i in range(32):
        assert any(torch.equal(padded[i, :, d:d + 40], out[i]) for d in range(7))


def test_same_generator_seed_same_batch_and_identity_without_augmentation():
    x = torch.randn(8, 3, 8, 8)
    a, _ = RandomCropFlip(4, True)(x, None, torch.Generator().manual_seed(5))
    b, _ = RandomCropFlip(4, True)(x, None, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    same, _ = RandomCropFlip(0, False)(x, None, torch.Generator().manual_seed(5))
    assert torch.equal(same, x)


def test_bad_arguments():
    with pytest.raises(ValueError, match="padding"):
        RandomCropFlip(padding=-1)
    with pytest.raises(ValueError, match=r"\(B, C, L\) or \(B, C, H, W\)"):
        RandomCropFlip()(torch.randn(3, 4), None, torch.Generator())
