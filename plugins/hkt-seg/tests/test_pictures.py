import numpy as np
import pytest
import torch
from PIL import Image

from hkt_seg.cli import show_predictions
from hkt_seg.data import SegmentationArrays
from hkt_seg.models import PocketNet
from hkt_seg.pictures import PALETTE, comparison_sheet, overlay, save_png, to_rgb


def test_overlay_blends_class_colours_and_leaves_background():
    image = np.array([[0.0, 1.0], [0.5, 1.0]], dtype=np.float32)
    mask = np.array([[0, 1], [2, 255]])
    out = overlay(image, mask, alpha=0.5)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(out[0, 1], np.round(0.5 * 255 + 0.5 * PALETTE[1]).astype(np.uint8))
    np.testing.assert_array_equal(out[1, 0], np.round(0.5 * 128 + 0.5 * PALETTE[2]).astype(np.uint8))
    np.testing.assert_array_equal(out[1, 1], [192, 192, 192])  # ignored: greyed
    with pytest.raises(ValueError, match="does not match"):
        overlay(image, np.zeros((3, 3)))


def test_to_rgb_stretches_and_handles_channels():
    assert to_rgb(np.array([[2.0, 4.0]]))[0, 1].tolist() == [255, 255, 255]
    assert to_rgb(np.zeros((3, 2, 2)) + [[[1.0]], [[0.0]], [[0.0]]]).shape == (2, 2, 3)


def test_sheet_layout_and_png(tmp_path):
    images = [np.random.rand(1, 8, 8).astype(np.float32) for _ in range(3)]
    masks = [np.random.randint(0, 3, (8, 8)) for _ in range(3)]
    sheet = comparison_sheet(images, masks, masks, scale=2, gap=1)
    assert sheet.shape == (3 * 16 + 2, 3 * 16 + 2, 3)
    path = save_png(sheet, tmp_path / "sheet.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), sheet)
    with pytest.raises(ValueError, match="same non-zero number"):
        comparison_sheet(images, masks[:2], masks)


def test_show_predictions_writes_sheet_and_reports_dice(tmp_path):
    torch.manual_seed(0)
    model = PocketNet(num_classes=2, depth=2, width=4)
    data = SegmentationArrays(np.random.rand(3, 1, 16, 16), np.random.randint(0, 2, (3, 16, 16)))
    dice = show_predictions(model, data, tmp_path / "p.png", count=5, scale=1, class_names=["bg", "fg"])
    assert set(dice) == {"dice_bg", "dice_fg"}
    assert Image.open(tmp_path / "p.png").size == (3 * 16 + 8, 3 * 16 + 8)
