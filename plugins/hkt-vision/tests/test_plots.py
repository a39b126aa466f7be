import numpy as np
import pytest
import torch

from hkt_vision.plots import confusion_matrix, confusion_matrix_png


def _reference(pred, target, k):
    m = np.zeros((k, k), dtype=np.int64)
    for p, t in zip(pred, target):
        m[t, p] += 1
    return m


def test_confusion_matrix_matches_a_loop():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(200, 7, generator=gen)
    target = torch.randint(0, 7, (200,), generator=gen)
    expected = _reference(scores.argmax(1).tolist(), target.tolist(), 7)
    assert np.array_equal(confusion_matrix(scores, target, 7), expected)
    assert np.array_equal(confusion_matrix(scores.argmax(1), target, 7), expected)


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="2 predictions but 3 targets"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 1, 2]), 3)
    with pytest.raises(ValueError, match="4 columns for 3 classes"):
        confusion_matrix(torch.randn(2, 4), torch.tensor([0, 1]), 3)


def test_png_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    matrix = np.array([[5, 1, 0], [0, 4, 2], [1, 0, 7]])
    path = confusion_matrix_png(matrix, tmp_path / "cm.png", ["a", "b", "c"], title="demo")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 200
    with pytest.raises(ValueError, match="2 class names for a 3-class matrix"):
        confusion_matrix_png(matrix, tmp_path / "x.png", ["a", "b"])
    assert not (tmp_path / "x.png").exists()
