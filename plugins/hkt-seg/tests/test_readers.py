import numpy as np
import pytest
from PIL import Image

from hkt_core.errors import ConfigError
from hkt_seg.datasets import folder_bundle, lits_bundle
from hkt_seg.readers import lits_cases, read_lits_case, read_png_folder, window


def write_png_set(root, items, *, mode="L"):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for stem, (image, mask) in items.items():
        Image.fromarray(image, mode=mode).save(root / "images" / f"{stem}.png")
        Image.fromarray(mask.astype(np.uint8), mode="L").save(root / "masks" / f"{stem}.png")


def test_window_clips_and_scales_linearly():
    hu = np.array([-1000.0, -100.0, 50.0, 200.0, 3000.0])
    np.testing.assert_allclose(window(hu, -100, 200), [0.0, 0.0, 0.5, 1.0, 1.0])
    with pytest.raises(ConfigError, match="upper bound"):
        window(hu, 5, 5)


def test_png_folder_reads_pixels_and_class_masks(tmp_path):
    image = np.array([[0, 51], [102, 255]], dtype=np.uint8)
    mask = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    write_png_set(tmp_path, {"b": (image, mask), "a": (255 - image, mask[::-1])})
    images, masks, stems = read_png_folder(tmp_path, num_classes=3)
    assert stems == ["a", "b"]
    assert images.shape == (2, 1, 2, 2) and images.dtype == np.float32
    np.testing.assert_allclose(images[1, 0], [[0.0, 0.2], [0.4, 1.0]], atol=1e-7)
    np.testing.assert_array_equal(masks[1], mask)
    np.testing.assert_array_equal(masks[0], mask[::-1])


def test_png_folder_rgb_and_sixteen_bit(tmp_path):
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 51)
    write_png_set(tmp_path / "rgb", {"x": (rgb, np.zeros((2, 2)))}, mode="RGB")
    images, _, _ = read_png_folder(tmp_path / "rgb", channels=3)
    np.testing.assert_allclose(images[0, :, 0, 0], [1.0, 0.0, 0.2], atol=1e-7)

    root = tmp_path / "deep"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)).save(root / "images" / "x.png")
    Image.fromarray(np.array([[0, 1]], dtype=np.uint8)).save(root / "masks" / "x.png")
    images, masks, _ = read_png_folder(root)
    np.testing.assert_allclose(images[0, 0], [[0.0, 1.0]])


def test_png_mask_values_map_and_unknown_values_fail(tmp_path):
    mask = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    write_png_set(tmp_path, {"x": (np.zeros((2, 2), np.uint8), mask)})
    _, masks, _ = read_png_folder(tmp_path, mask_values={0: 0, 255: 1}, ignore_index=None)
    np.testing.assert_array_equal(masks[0], [[0, 1], [1, 0]])
    with pytest.raises(ConfigError, match=r"\[255\] are not in mask_values"):
        read_png_folder(tmp_path, mask_values={0: 0})
    with pytest.raises(ConfigError, match="num_classes = 2"):
        read_png_folder(tmp_path, num_classes=2, ignore_index=None)


def test_png_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="no such folder"):
        read_png_folder(tmp_path / "missing")
    write_png_set(tmp_path, {"x": (np.zeros((2, 2), np.uint8), np.zeros((2, 2)))})
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "images" / "lonely.png")
    with pytest.raises(ConfigError, match="unpaired: lonely"):
        read_png_folder(tmp_path)
    (tmp_path / "images" / "lonely.png").unlink()
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "images" / "y.png")
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "masks" / "y.png")
    with pytest.raises(ConfigError, match="pass size"):
        read_png_folder(tmp_path)
    images, masks, _ = read_png_folder(tmp_path, size=4)
    assert images.shape == (2, 1, 4, 4) and masks.shape == (2, 4, 4)


def test_folder_bundle_splits_and_counts_classes(tmp_path):
    rng = np.random.default_rng(0)
    items = {f"s{i}": (rng.integers(0, 256, (4, 4), dtype=np.uint8), rng.integers(0, 3, (4, 4)))
             for i in range(5)}
    write_png_set(tmp_path, items)
    bundle = folder_bundle(root=str(tmp_path), test_fraction=0.4, seed=1)
    assert len(bundle.train) == 3 and len(bundle.test) == 2
    assert bundle.input_shapes == ((1, 4, 4),)
    assert bundle.info["num_classes"] == 3
    image, mask = bundle.train[0]
    assert image.shape == (1, 4, 4) and mask.dtype.is_floating_point is False


# -- NIfTI (LiTS layout): these tests need nibabel (hkt-seg[nifti]); the PNG tests above do not ---

@pytest.fixture
def nib():
    return pytest.importorskip("nibabel")


def write_case(root, number, volume, labels, gz=False):
    import nibabel as nib

    ext = ".nii.gz" if gz else ".nii"
    nib.save(nib.Nifti1Image(volume.astype(np.float32), np.eye(4)), str(root / f"volume-{number}{ext}"))
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), np.eye(4)), str(root / f"segmentation-{number}{ext}"))


def small_case(seed):
    rng = np.random.default_rng(seed)
    volume = rng.uniform(-300, 400, size=(4, 3, 2))  # X, Y, Z
    labels = rng.integers(0, 3, size=(4, 3, 2))
    return volume, labels


def test_lits_case_is_windowed_and_sliced_along_the_axis(nib, tmp_path):
    volume, labels = small_case(0)
    write_case(tmp_path, 7, volume, labels)
    cases = lits_cases(tmp_path)
    assert list(cases) == [7]
    images, masks = read_lits_case(*cases[7], window_range=(-100, 200), merge_tumor=False)
    assert images.shape == (2, 1, 3, 4) and masks.shape == (2, 3, 4)
    for z in range(2):
        expected = (np.clip(volume[:, :, z].astype(np.float32), -100, 200) + 100) / 300
        np.testing.assert_allclose(images[z, 0], expected.T, atol=1e-6)
        np.testing.assert_array_equal(masks[z], labels[:, :, z].T)
    _, merged = read_lits_case(*cases[7], merge_tumor=True)
    np.testing.assert_array_equal(merged, np.minimum(masks, 1))
    images0, _ = read_lits_case(*cases[7], axis=0, every=2)
    assert images0.shape == (2, 1, 2, 3)


def test_lits_foreground_only_and_resize(nib, tmp_path):
    volume, labels = small_case(1)
    labels[:, :, 0] = 0
    write_case(tmp_path, 0, volume, labels, gz=True)
    images, masks = read_lits_case(*lits_cases(tmp_path)[0], foreground_only=True, size=8)
    assert images.shape == (1, 1, 8, 8) and masks.max() >= 1


def test_lits_errors_name_the_problem(nib, tmp_path):
    volume, labels = small_case(2)
    nib.save(nib.Nifti1Image(volume.astype(np.float32), np.eye(4)), str(tmp_path / "volume-3.nii"))
    with pytest.raises(ConfigError, match="no matching segmentation-3"):
        lits_cases(tmp_path)
    labels[0, 0, 0] = 5
    write_case(tmp_path, 3, volume, labels)
    with pytest.raises(ConfigError, match=r"label value\(s\) \[5\]"):
        read_lits_case(*lits_cases(tmp_path)[3])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no volume-N.nii"):
        lits_cases(tmp_path / "empty")


def test_lits_bundle_splits_by_case(nib, tmp_path):
    for n in range(3):
        write_case(tmp_path, n, *small_case(n))
    bundle = lits_bundle(root=str(tmp_path), size=None, test_cases=[1], augment=False)
    assert bundle.info["test_cases"] == [1]
    assert len(bundle.train) == 4 and len(bundle.test) == 2
    assert bundle.info["class_names"] == ["background", "liver"]
    with pytest.raises(ConfigError, match=r"test_cases \[9\]"):
        lits_bundle(root=str(tmp_path), test_cases=[9])
