"""Every reader on files written here in the real formats, and the failure messages."""

import pickle

import numpy as np
import pytest
import torch

from hkt_vision.data import DatasetError, cifar10, digits, imagefolder, mnist1d, textures
from hkt_vision.data.cifar10 import MEAN, STD, restricted_load


# -- digits ------------------------------------------------------------------------------------

def test_digits_bundle_is_normalised_stratified_and_complete():
    bundle = digits(test_fraction=0.2, seed=0)
    assert bundle.info["num_classes"] == 10
    assert bundle.input_shapes == ((1, 8, 8),)
    assert len(bundle.train) + len(bundle.test) == 1797
    x, y = bundle.train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    train = torch.stack([bundle.train[i][0] for i in range(len(bundle.train))]).double()
    assert abs(train.mean().item()) < 1e-5 and abs(train.std().item() - 1) < 1e-3
    test_labels = torch.stack([bundle.test[i][1] for i in range(len(bundle.test))])
    assert torch.bincount(test_labels, minlength=10).min() >= 30   # every class in the test split
    assert bundle.augment is None
    assert digits(augment=True).augment is not None


def test_digits_values_match_sklearn():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    bundle = digits()
    x, y = bundle.test[5]
    restored = x * bundle.test.std + bundle.test.mean          # undo the normalisation
    matches = [i for i in range(len(bunch.images))
               if np.allclose(bunch.images[i] / 16.0, restored[0].numpy(), atol=1e-5)]
    assert matches and all(bunch.target[i] == y.item() for i in matches)


# -- mnist1d -----------------------------------------------------------------------------------

def test_mnist1d_generates_with_package_defaults_and_caches(tmp_path):
    from mnist1d.data import get_dataset_args, make_dataset

    bundle = mnist1d(num_samples=200)
    assert bundle.input_shapes == ((1, 40),)
    assert (len(bundle.train), len(bundle.test)) == (160, 40)
    assert bundle.info["num_classes"] == 10
    args = get_dataset_args()
    args.num_samples = 200
    reference = make_dataset(args)
    x0, y0 = bundle.train[0]
    assert np.allclose(x0[0].numpy(), reference["x"][0].astype(np.float32))
    assert y0.item() == reference["y"][0]
    cached = list((tmp_path / "hkt-home" / "cache" / "mnist1d").glob("*.npz"))
    assert len(cached) == 1
    again = mnist1d(num_samples=200)
    assert torch.equal(again.test.samples, bundle.test.samples)


def test_mnist1d_test_split_size_follows_options():
    bundle = mnist1d(num_samples=500, train_split=0.5, cache=False)
    assert len(bundle.test) == 250


def test_mnist1d_rejects_unknown_options():
    with pytest.raises(DatasetError, match="unknown option.*allowed"):
        mnist1d(samples=100)
    with pytest.raises(DatasetError, match="url"):
        mnist1d(url="https://example.org/x.pkl")


# -- CIFAR-10 ----------------------------------------------------------------------------------

def _batch(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write_cifar_binary(folder, per_file=3):
    folder.mkdir(parents=True)
    content = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data, labels = _batch(per_file, i)
        records = np.concatenate([labels[:, None], data], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
        content[name] = (data, labels)
    (folder / "batches.meta.txt").write_text("\n".join(f"class{k}" for k in range(10)) + "\n\n")
    return content


def write_cifar_python(folder, per_file=3, protocol=2):
    folder.mkdir(parents=True)
    content = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data, labels = _batch(per_file, i)
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": data,
                 b"filenames": [f"img{j}.png".encode() for j in range(per_file)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        content[name] = (data, labels)
    meta = {b"label_names": [f"py{k}".encode() for k in range(10)], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return content


def _check_cifar(bundle, content, names):
    assert bundle.info["num_classes"] == 10 and bundle.info["class_names"] == names
    assert (len(bundle.train), len(bundle.test)) == (15, 3)
    data, labels = content["data_batch_2"]
    x, y = bundle.train[4]                                   # record 1 of the second file
    mean = torch.tensor(MEAN, dtype=torch.float64)[:, None, None]
    std = torch.tensor(STD, dtype=torch.float64)[:, None, None]
    expected = (torch.from_numpy(data[1].reshape(3, 32, 32)).double() / 255 - mean) / std
    assert torch.allclose(x.double(), expected, atol=1e-5)
    assert y.item() == labels[1]
    tx, ty = bundle.test[2]
    assert ty.item() == content["test_batch"][1][2]


def test_cifar10_binary_reader(tmp_path):
    content = write_cifar_binary(tmp_path / "cifar-10-batches-bin")
    bundle = cifar10(root=str(tmp_path))
    _check_cifar(bundle, content, [f"class{k}" for k in range(10)])
    assert bundle.info["format"] == "bin"
    assert cifar10(root=str(tmp_path / "cifar-10-batches-bin")).info["format"] == "bin"   # the folder itself


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_python_reader(tmp_path, protocol):
    content = write_cifar_python(tmp_path / "cifar-10-batches-py", protocol=protocol)
    bundle = cifar10(root=str(tmp_path))
    _check_cifar(bundle, content, [f"py{k}" for k in range(10)])
    assert bundle.info["format"] == "py"


def test_cifar10_default_root_is_under_hkt_home(tmp_path):
    write_cifar_binary(tmp_path / "hkt-home" / "data" / "cifar10" / "cifar-10-batches-bin")
    assert len(cifar10().train) == 15


class Payload:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global posix.system|refusing to load global os"):
        restricted_load(pickle.dumps({b"data": Payload()}))
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_python(folder)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Payload(), b"labels": [1]}))
    with pytest.raises(DatasetError, match="data_batch_3.*refusing"):
        cifar10(root=str(tmp_path))


def test_cifar10_missing_directory_says_what_is_expected(tmp_path):
    with pytest.raises(DatasetError, match="does not exist; expected a folder holding cifar-10-batches-bin"):
        cifar10(root=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="holds no CIFAR-10 batches \\(found: readme.txt\\)"):
        cifar10(root=str(tmp_path / "empty"))


def test_cifar10_malformed_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar_binary(folder)
    (folder / "data_batch_4.bin").unlink()
    with pytest.raises(DatasetError, match="missing batch file .*data_batch_4.bin"):
        cifar10(root=str(tmp_path))
    (folder / "data_batch_4.bin").write_bytes(b"\x00" * 3000)
    with pytest.raises(DatasetError, match="3000 bytes, not a positive multiple of the 3073-byte record"):
        cifar10(root=str(tmp_path))
    bad = np.zeros((1, 3073), dtype=np.uint8)
    bad[0, 0] = 12
    (folder / "data_batch_4.bin").write_bytes(bad.tobytes())
    with pytest.raises(DatasetError, match="labels outside 0..9"):
        cifar10(root=str(tmp_path))


# -- imagefolder -------------------------------------------------------------------------------

def _write_images(folder, classes, per_class, size=(12, 10)):
    from PIL import Image

    rng = np.random.default_rng(0)
    written = {}
    for c in classes:
        (folder / c).mkdir(parents=True)
        for i in range(per_class):
            array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            path = folder / c / f"{i}.png"
            Image.fromarray(array).save(path)
            written[path] = array
    return written


def test_imagefolder_with_explicit_splits(tmp_path):
    _write_images(tmp_path / "train", ["cat", "dog"], 3)
    written = _write_images(tmp_path / "test", ["cat", "dog"], 2, size=(16, 16))
    bundle = imagefolder(root=str(tmp_path), size=16)
    assert bundle.info["class_names"] == ["cat", "dog"] and bundle.info["num_classes"] == 2
    assert (len(bundle.train), len(bundle.test)) == (6, 4)
    assert bundle.input_shapes == ((3, 16, 16),)
    x, y = bundle.test[2]                           # dog/0.png (16x16: no resize)
    raw = torch.from_numpy(written[tmp_path / "test" / "dog" / "0.png"]).permute(2, 0, 1).double() / 255
    assert y.item() == 1
    assert torch.allclose(x.double() * bundle.test.std.double() + bundle.test.mean.double(), raw, atol=1e-5)
    train = torch.stack([bundle.train[i][0] for i in range(6)]).double()
    assert torch.allclose(train.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-5)


def test_imagefolder_split_here_and_grey(tmp_path):
    _write_images(tmp_path, ["a", "b", "c"], 5)
    bundle = imagefolder(root=str(tmp_path), size=8, channels=1, test_fraction=0.4)
    assert bundle.input_shapes == ((1, 8, 8),)
    assert (len(bundle.train), len(bundle.test)) == (9, 6)
    assert sorted(bundle.test.labels.tolist()) == [0, 0, 1, 1, 2, 2]


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DatasetError, match="give the data directory"):
        imagefolder()
    with pytest.raises(DatasetError, match="does not exist; expected one sub-folder per class"):
        imagefolder(root=str(tmp_path / "missing"))
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="no class sub-folders"):
        imagefolder(root=str(tmp_path / "flat"))
    (tmp_path / "emptyclass" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError, match="class folder .*cat holds no images"):
        imagefolder(root=str(tmp_path / "emptyclass"))
    _write_images(tmp_path / "few", ["a", "b"], 2)
    with pytest.raises(DatasetError, match="cannot split 4 images of 2 classes"):
        imagefolder(root=str(tmp_path / "few"), test_fraction=0.2)
    _write_images(tmp_path / "broken", ["a", "b"], 4)
    (tmp_path / "broken" / "a" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="cannot read image .*bad.png"):
        imagefolder(root=str(tmp_path / "broken"))


# -- textures ----------------------------------------------------------------------------------

def test_textures_crops_are_disjoint_halves():
    import skimage.data

    bundle = textures(size=16, train_per_class=4, test_per_class=2)
    assert bundle.info["class_names"] == ["brick", "grass", "gravel"]
    assert (len(bundle.train), len(bundle.test)) == (12, 6)
    brick = skimage.data.brick()
    crop = bundle.test.samples[0, 0].numpy()                 # a brick crop from the right half
    right = brick[:, 256:]
    found = any(np.array_equal(right[y:y + 16, x:x + 16], crop) for y in range(0, 512 - 15)
                for x in range(0, 256 - 15))
    assert found
