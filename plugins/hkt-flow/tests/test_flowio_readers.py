"""File formats and benchmark readers on small files written here in the real formats."""

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from hkt_flow.datasets import chairs_bundle, kitti_bundle, sintel_bundle
from hkt_flow.flowio import (FlowFileError, read_flo, read_image, read_kitti_flow, read_png16, write_flo,
                             write_kitti_flow, write_png16)
from hkt_flow.readers import HD1K, KITTI, FlyingChairs, Sintel


def _frame(path, seed, size=(16, 24)):
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return array


def test_flo_bytes_by_hand(tmp_path):
    flow = np.array([[[1.5, -2.0], [0.25, 3.0], [0.0, 0.0]], [[4.0, 5.0], [-6.0, 7.5], [8.0, -9.0]]], np.float32)
    path = write_flo(tmp_path / "a.flo", flow)
    data = path.read_bytes()
    assert data[:4] == b"PIEH" and struct.unpack("<ii", data[4:12]) == (3, 2)
    assert struct.unpack("<4f", data[12:28]) == (1.5, -2.0, 0.25, 3.0)  # u, v interleaved, row-major
    assert np.array_equal(read_flo(path), flow)


def test_malformed_flo_names_the_file_and_the_fault(tmp_path):
    bad = tmp_path / "bad_tag.flo"
    bad.write_bytes(b"XXXX" + struct.pack("<ii", 1, 1) + b"\0" * 8)
    with pytest.raises(FlowFileError, match=r"bad_tag\.flo: not a \.flo file"):
        read_flo(bad)
    short = tmp_path / "short.flo"
    short.write_bytes(struct.pack("<f", 202021.25) + struct.pack("<ii", 4, 4) + b"\0" * 10)
    with pytest.raises(FlowFileError, match=r"short\.flo: a 4x4 \.flo file has 140 bytes; this one has 22"):
        read_flo(short)
    with pytest.raises(FlowFileError, match=r"missing\.flo: no such file"):
        read_flo(tmp_path / "missing.flo")


@pytest.mark.parametrize("filter_type", range(5))
def test_png16_filters_decode_and_pillow_agrees_on_grey(tmp_path, filter_type):
    rng = np.random.default_rng(filter_type)
    grey = rng.integers(0, 2 ** 16, (7, 9), dtype=np.uint16)
    path = write_png16(tmp_path / "g.png", grey, filter_type=filter_type)
    assert np.array_equal(read_png16(path), grey)
    with Image.open(path) as im:  # an independent decoder checks our encoder's filters
        assert np.array_equal(np.asarray(im).astype(np.uint16), grey)
    rgb = rng.integers(0, 2 ** 16, (5, 6, 3), dtype=np.uint16)
    assert np.array_equal(read_png16(write_png16(tmp_path / "c.png", rgb, filter_type=filter_type)), rgb)


def test_kitti_png_encoding_by_hand(tmp_path):
    flow = np.array([[[1.0, -0.5], [100.25, 3.0]]], np.float32)
    valid = np.array([[True, False]])
    path = write_kitti_flow(tmp_path / "000000_10.png", flow, valid)
    raw = read_png16(path)
    assert raw[0, 0].tolist() == [64 + 2 ** 15, 2 ** 15 - 32, 1]
    got, got_valid = read_kitti_flow(path)
    assert got_valid.tolist() == [[True, False]]
    assert got[0, 0].tolist() == [1.0, -0.5] and got[0, 1].tolist() == [0.0, 0.0]  # invalid reads 0


def test_malformed_png_names_the_file(tmp_path):
    (tmp_path / "nopng.png").write_bytes(b"hello")
    with pytest.raises(FlowFileError, match=r"nopng\.png: not a PNG"):
        read_png16(tmp_path / "nopng.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb8.png")
    with pytest.raises(FlowFileError, match=r"rgb8\.png: expected a non-interlaced 16-bit .* bit depth 8"):
        read_kitti_flow(tmp_path / "rgb8.png")
    good = write_png16(tmp_path / "cut.png", np.zeros((4, 4, 3), np.uint16)).read_bytes()
    (tmp_path / "cut.png").write_bytes(good[:40])
    with pytest.raises(FlowFileError, match=r"cut\.png: truncated PNG"):
        read_png16(tmp_path / "cut.png")
    grey = write_png16(tmp_path / "grey.png", np.zeros((4, 4), np.uint16))
    with pytest.raises(FlowFileError, match="grey.png: a KITTI flow PNG is 16-bit RGB"):
        read_kitti_flow(grey)
    # a bad filter byte inside valid zlib data
    rows = b"".join(bytes([7]) + b"\0" * 24 for _ in range(4))
    ihdr = struct.pack(">IIBBBBB", 4, 4, 16, 2, 0, 0, 0)
    chunk = lambda k, p: struct.pack(">I", len(p)) + k + p + struct.pack(">I", zlib.crc32(k + p))  # noqa: E731
    (tmp_path / "filter.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                                          + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    with pytest.raises(FlowFileError, match=r"filter\.png: row 0 has unknown PNG filter type 7"):
        read_png16(tmp_path / "filter.png")


def test_read_image_errors(tmp_path):
    (tmp_path / "x.ppm").write_text("not an image")
    with pytest.raises(FlowFileError, match=r"x\.ppm: not a readable image"):
        read_image(tmp_path / "x.ppm")


def test_flying_chairs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    flows = []
    for i in range(1, 4):
        first = _frame(data / f"{i:05d}_img1.ppm", i)
        _frame(data / f"{i:05d}_img2.ppm", 10 + i)
        flow = np.random.default_rng(i).normal(size=(16, 24, 2)).astype(np.float32)
        flow[0, 0] = 1e9  # unknown flow: invalid
        write_flo(data / f"{i:05d}_flow.flo", flow)
        flows.append((first, flow))
    (tmp_path / "FlyingChairs_train_val.txt").write_text("1\n2\n1\n")
    train = FlyingChairs(tmp_path, "train")
    assert len(train) == 2 and len(FlyingChairs(tmp_path, "validation")) == 1
    (image1, image2), (flow, valid) = train[1]  # pair 3
    assert image1.shape == (3, 16, 24) and image1.dtype == torch.float32
    assert torch.equal(image1, torch.from_numpy(flows[2][0].astype(np.float32)).permute(2, 0, 1))
    assert torch.equal(flow[:, 1, 1], torch.from_numpy(flows[2][1][1, 1]))
    assert not valid[0, 0] and bool(valid.sum() == 16 * 24 - 1)
    bundle = chairs_bundle(str(tmp_path), crop=(8, 16))
    assert len(bundle.train) == 2 and bundle.input_shapes == ((3, 8, 16), (3, 8, 16))
    (tmp_path / "FlyingChairs_train_val.txt").write_text("1\n2\n")
    with pytest.raises(FlowFileError, match="expected 3 lines"):
        FlyingChairs(tmp_path, "train")
    (data / "00002_img2.ppm").unlink()
    with pytest.raises(FlowFileError, match="00002_flow.flo: its frames"):
        FlyingChairs(tmp_path, "all")
    with pytest.raises(FlowFileError, match="no FlyingChairs pairs under"):
        FlyingChairs(tmp_path / "empty")


def test_sintel_with_invalid_mask_and_scene_split(tmp_path):
    base = tmp_path / "training"
    for scene in ("alley", "bamboo"):
        for n in (1, 2, 3):
            (base / "clean" / scene).mkdir(parents=True, exist_ok=True)
            _frame(base / "clean" / scene / f"frame_{n:04d}.png", n)
        (base / "flow" / scene).mkdir(parents=True)
        for n in (1, 2):
            write_flo(base / "flow" / scene / f"frame_{n:04d}.flo", np.full((16, 24, 2), n, np.float32))
    (base / "invalid" / "alley").mkdir(parents=True)
    mask = np.zeros((16, 24), np.uint8)
    mask[2, 3] = 255
    Image.fromarray(mask).save(base / "invalid" / "alley" / "frame_0001.png")
    data = Sintel(tmp_path, "clean")
    assert len(data) == 4
    (_, _), (flow, valid) = data[0]
    assert float(flow[0, 0, 0]) == 1.0 and not valid[2, 3] and int(valid.sum()) == 16 * 24 - 1
    bundle = sintel_bundle(str(tmp_path), crop=(8, 8), test_fraction=0.5)
    assert len(bundle.train) == 2 and len(bundle.test) == 2  # one scene each
    with pytest.raises(FlowFileError, match=r"frame_0001\.flo: its frames .*final.* are missing"):
        Sintel(tmp_path, "final")
    with pytest.raises(ValueError, match="dstype"):
        Sintel(tmp_path, "albedo")


def test_kitti_and_hd1k(tmp_path):
    base = tmp_path / "training"
    (base / "image_2").mkdir(parents=True)
    (base / "flow_occ").mkdir(parents=True)
    flow = np.zeros((16, 24, 2), np.float32)
    flow[..., 0] = 2.5
    valid = np.zeros((16, 24), bool)
    valid[::2] = True
    for i in range(3):
        _frame(base / "image_2" / f"{i:06d}_10.png", i)
        _frame(base / "image_2" / f"{i:06d}_11.png", 5 + i)
        write_kitti_flow(base / "flow_occ" / f"{i:06d}_10.png", flow, valid)
    data = KITTI(tmp_path)
    (_, _), (f, v) = data[2]
    assert torch.equal(v, torch.from_numpy(valid)) and float(f[0, 0, 0]) == 2.5 and float(f[0, 1, 0]) == 0.0
    bundle = kitti_bundle(str(tmp_path), crop=(8, 16), test_fraction=0.34)
    assert len(bundle.train) == 1 and len(bundle.test) == 2
    with pytest.raises(FlowFileError, match="smaller than crop"):
        KITTI(tmp_path, crop=(32, 32))[0]

    hd = tmp_path / "hd1k"
    (hd / "hd1k_input" / "image_2").mkdir(parents=True)
    (hd / "hd1k_flow_gt" / "flow_occ").mkdir(parents=True)
    for f_ in range(3):
        _frame(hd / "hd1k_input" / "image_2" / f"000000_{f_:04d}.png", f_)
        write_kitti_flow(hd / "hd1k_flow_gt" / "flow_occ" / f"000000_{f_:04d}.png", flow * (f_ + 1), valid)
    pairs = HD1K(hd)
    assert len(pairs) == 2  # the last flow has no next frame
    assert pairs.samples[1][0].name == "000000_0001.png" and pairs.samples[1][1].name == "000000_0002.png"
    (_, _), (f, _) = pairs[1]
    assert float(f[0, 0, 0]) == 5.0
    with pytest.raises(FlowFileError, match="no HD1K pairs"):
        HD1K(tmp_path)
