"""The CIFAR-100 binary reader, on small synthetic files written here in that format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hkt_core
from hkt_vision.data import DatasetError, cifar100
from hkt_vision.data.cifar100 import MEAN, RECORD, STD


def write_cifar100(folder, n_train=7, n_test=3, seed=0):
    """train.bin / test.bin of ``coarse, fine, 3072 pixels`` records, and the label name files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    content = {}
    for name, n in (("train.bin", n_train), ("test.bin", n_test)):
        coarse = rng.integers(0, 20, n, dtype=np.uint8)
        fine = rng.integers(0, 100, n, dtype=np.uint8)
        pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        records = np.concatenate([coarse[:, None], fine[:, None], pixels], axis=1)
        assert records.shape[1] == RECORD == 3074
        records.tofile(folder / name)
        content[name] = (coarse, fine, pixels)
    (folder / "fine_label_names.txt").write_text("\n".join(f"fine{k}" for k in range(100)) + "\n")
    (folder / "coarse_label_names.txt").write_text("\n".join(f"coarse{k}" for k in range(20)) + "\n")
    return content


def _pixels(row):
    mean = torch.tensor(MEAN, dtype=torch.float64)[:, None, None]
    std = torch.tensor(STD, dtype=torch.float64)[:, None, None]
    return (torch.from_numpy(row.reshape(3, 32, 32).astype(np.float64)) / 255 - mean) / std


def test_fine_labels_pixels_and_names(tmp_path):
    content = write_cifar100(tmp_path / "cifar-100-binary")
    bundle = cifar100(root=str(tmp_path), augment=False)
    assert (len(bundle.train), len(bundle.test)) == (7, 3)
    assert bundle.info["num_classes"] == 100 and bundle.info["class_names"][:2] == ["fine0", "fine1"]
    coarse, fine, pixels = content["train.bin"]
    x, y = bundle.train[5]
    assert y.item() == fine[5] and x.shape == (3, 32, 32)
    assert torch.allclose(x.double(), _pixels(pixels[5]), atol=1e-5)
    assert bundle.test[2][1].item() == content["test.bin"][1][2]
    assert bundle.augment is None and cifar100(root=str(tmp_path)).augment is not None


def test_coarse_labels_and_the_folder_itself(tmp_path):
    content = write_cifar100(tmp_path / "cifar-100-binary")
    bundle = cifar100(root=str(tmp_path / "cifar-100-binary"), labels="coarse")
    assert bundle.info["num_classes"] == 20 and bundle.info["class_names"][0] == "coarse0"
    assert [bundle.train[i][1].item() for i in range(7)] == content["train.bin"][0].tolist()


def test_default_root_is_under_hkt_home(tmp_path):
    write_cifar100(tmp_path / "hkt-home" / "data" / "cifar100" / "cifar-100-binary")
    assert len(cifar100().train) == 7


def test_bad_files_are_refused_with_what_is_expected(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        cifar100(root=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no CIFAR-100 binary files"):
        cifar100(root=str(tmp_path / "empty"))
    folder = tmp_path / "cut" / "cifar-100-binary"
    write_cifar100(folder)
    (folder / "train.bin").write_bytes((folder / "train.bin").read_bytes()[:-1])
    with pytest.raises(DatasetError, match="not a positive multiple of the 3074-byte record"):
        cifar100(root=str(tmp_path / "cut"))
    folder = tmp_path / "labels" / "cifar-100-binary"
    write_cifar100(folder)
    raw = bytearray((folder / "test.bin").read_bytes())
    raw[1] = 100  # a fine label outside 0..99
    (folder / "test.bin").write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="expected 0..99"):
        cifar100(root=str(tmp_path / "labels"))
    with pytest.raises(DatasetError, match="'fine' \\(100 classes\\) or 'coarse'"):
        cifar100(root=str(tmp_path / "cut"), labels="superclass")


def test_the_cifar100_pair_trains_on_the_reader(tmp_path):
    """The registered pair reads the data through its card: two steps of the baseline on the file."""
    write_cifar100(tmp_path / "hkt-home" / "data" / "cifar100" / "cifar-100-binary", n_train=20, n_test=4)
    card = hkt_core.default_manager().lookup("pairs", "cifar100-resnet110-resnet20")
    assert card.dataset == "cifar100" and card.child_options == {"num_classes": 100}
    run = hkt_core.train(card, "baseline", out=tmp_path / "r", epochs=1, batch_size=10, device="cpu", num_workers=0)
    assert run.summary["test"]["accuracy"] >= 0.0 and run.summary["parameters"] > 250_000
