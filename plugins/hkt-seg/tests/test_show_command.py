import numpy as np
import pytest
import torch
from PIL import Image

from hkt_core.cli.main import main
from hkt_core.config import to_toml
from hkt_core.pairs import PairCard
from hkt_core.train.checkpoint import write_tensors
from hkt_seg.models import pocketnet_demo


@pytest.fixture
def run_dir(tmp_path):
    """A run folder as `hkt train` leaves it: the resolved config and the child's weights."""
    card = PairCard(name="seg-tiny", task="seg", parent="dense_unet_demo", child="pocketnet_demo",
                    input_shapes=[[1, 1, 16, 16]], dataset="seg-synthetic", stages=3,
                    parent_options={"width": 4}, child_options={"width": 4},
                    dataset_options={"size": 16, "n_train": 2, "n_test": 3})
    torch.manual_seed(0)
    child = pocketnet_demo(width=4)
    (tmp_path / "config.toml").write_text(to_toml({"pair": card.name, "method": "baseline",
                                                   "trains_parent": False, "card": card.to_dict()}))
    write_tensors(tmp_path / "child.safetensors", child.state_dict(), kind="child")
    return tmp_path


def test_seg_show_draws_the_runs_child(run_dir, capsys):
    assert main(["seg", "show", str(run_dir), "--count", "2", "--scale", "1"]) == 0
    printed = capsys.readouterr().out
    assert "seg-predictions.png" in printed and "dice_background" in printed and "dice_moon" in printed
    sheet = np.asarray(Image.open(run_dir / "seg-predictions.png"))
    assert sheet.shape == (2 * 16 + 4, 3 * 16 + 8, 3)


def test_seg_show_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["seg", "show", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
