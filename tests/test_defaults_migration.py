"""Runs written before the defaults changed (HKT's and KD's, and before the thread count was
recorded) keep resuming with what they recorded; a cached parent is keyed by the thread count."""

from __future__ import annotations

import tomllib

import hkt_core
from hkt_core.config import to_toml
from hkt_core.train.api import resolve
from hkt_core.train.identity import read_history


def _as_written_before(config_file):
    """config.toml as hkt wrote it under the old defaults: the paper's HKT settings and KD weight 0.9
    in the run and in its card, and no thread count."""
    data = tomllib.loads(config_file.read_text())
    for table in (data, data["card"]):
        table["hkt"].update({"inherit_loss": "mae", "alphas": [0.25, 0.5, 0.25]})
        table["train"]["kd_weight"] = 0.9
        del table["train"]["threads"]
    config_file.write_text(to_toml(data))


def test_a_run_written_under_the_old_defaults_resumes_with_what_it_recorded(tmp_path):
    from test_train_support import manager_with, tiny_card

    manager = manager_with(tiny_card())
    old = {"inherit_loss": "mae", "alphas": [0.25, 0.5, 0.25]}
    folder = tmp_path / "r"
    hkt_core.train("tiny-pair", "hkt", manager=manager, out=folder, epochs=1, hkt=old, kd_weight=0.9)
    _as_written_before(folder / "config.toml")
    spec = resolve("tiny-pair", "hkt", manager=manager, out=folder, epochs=1, resume=True)
    # hkt takes no KD weight (it moved to the distilling methods' options): the recorded one is left out
    assert (spec.hkt.inherit_loss, spec.hkt.alphas, spec.train.kd_weight) == ("mae", (0.25, 0.5, 0.25), None)
    assert "weight" not in spec.method_options
    fresh = resolve("tiny-pair", "hkt", manager=manager, out=tmp_path / "new", epochs=1)
    assert (fresh.hkt.inherit_loss, fresh.hkt.alphas) == ("task", (0.1, 0.8, 0.1))
    run = hkt_core.train("tiny-pair", "hkt", manager=manager, out=folder, epochs=1, resume=True)
    assert run.config["hkt"]["inherit_loss"] == "mae" and run.config["train"]["threads"] == 1
    assert read_history(folder)[-1]["changes"] == {"train.threads": {"from": None, "to": 1}}
    # a value given again wins over the recorded one: that is another run, refused on resume
    given = resolve("tiny-pair", "hkt", manager=manager, out=folder, epochs=1, resume=True,
                    settings=["hkt.inherit_loss=task"])
    assert given.hkt.inherit_loss == "task"


def test_a_run_without_a_recorded_thread_count_is_not_reused_as_the_same_run(tmp_path):
    from hkt_core.train.identity import differences

    from test_train_support import manager_with, tiny_card

    manager = manager_with(tiny_card())
    folder = tmp_path / "r"
    hkt_core.train("tiny-pair", "baseline", manager=manager, out=folder, epochs=1)
    stored = tomllib.loads((folder / "config.toml").read_text())
    wanted = resolve("tiny-pair", "baseline", manager=manager, out=folder, epochs=1).config()
    assert differences(stored, wanted) == {}
    assert differences(stored, resolve("tiny-pair", "baseline", manager=manager, out=folder, epochs=1,
                                       threads=2).config()) == {"train.threads": (1, 2)}
    del stored["train"]["threads"]
    assert differences(stored, wanted) == {"train.threads": (None, 1)}
