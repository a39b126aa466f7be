"""The commands a user runs (in-process through the CLI's ``main``): `hkt align` on the paper's
pair, `hkt vision confusion` on a trained run."""

import json

import numpy as np
import pytest

from hkt_core.cli.main import main


def test_align_paper_pair_mixes_at_the_pooled_feature_vector(capsys):
    assert main(["align", "cifar-resnet110-resnet20", "--stages", "2", "--json"]) == 0
    pairs = json.loads(capsys.readouterr().out)["pairs"]
    assert [(p["parent"], p["child"]) for p in pairs] == [("pool", "pool"), ("fc", "fc")]
    assert pairs[0]["parent_shape"] == [1, 64] and pairs[0]["child_shape"] == [1, 64]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    import hkt_core

    out = tmp_path_factory.mktemp("runs") / "baseline"
    hkt_core.train("digits-demo", "baseline", epochs=1, batch_size=256, out=out, progress=False)
    return out


def test_confusion_of_a_trained_run(digits_run):
    from hkt_vision.cli import run_confusion

    path, matrix, names = run_confusion(digits_run, normalize=False)
    assert path == digits_run / "confusion.png" and path.is_file()
    assert names == [str(i) for i in range(10)]
    assert matrix.shape == (10, 10) and matrix.sum() == 360      # the digits test split
    summary = json.loads((digits_run / "summary.json").read_text())
    accuracy = np.trace(matrix) / matrix.sum()
    reported = [v for k, v in _flatten(summary) if k.endswith("accuracy") and "test" in k]
    assert reported and any(abs(accuracy - r) < 1e-6 for r in reported)


def test_hkt_vision_confusion_command(digits_run, tmp_path, capsys):
    png = tmp_path / "cm.png"
    assert main(["vision", "confusion", str(digits_run), "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert png.is_file() and f"wrote {png}" in out and "recall per class" in out
    assert main(["vision", "confusion", str(tmp_path / "nope")]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def _flatten(data, prefix=""):
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value
