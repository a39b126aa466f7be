"""The small things a user of the zoo met on every command: no library noise on stderr (torch's
pytree deprecation, transformers' loading bars, torch.export's archive-name warnings), ``--set``
mistakes in one line naming the assignment, a right hint for a mistyped operator, the method list
in ``hkt train --help`` from the one list of methods, the cost of ``--compile`` stated, a README
tour that writes nothing into the repository, and the parent's row in ``compare.md`` when the
parent came with its own weights."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

import hkt_core
from hkt_core.cli.main import main
from hkt_core.config import HKTConfig, TrainConfig, apply_overrides, structure, unstructure

from test_train_support import hkt_command, install_user_card, manager_with, subprocess_env, tiny_card

ROOT = Path(__file__).resolve().parents[1]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# -- 1. no library noise -----------------------------------------------------------------------

def _transformers_card(folder: Path) -> Path:
    """A tiny transformers pair whose parent loads its own weights from a local folder."""
    import transformers

    config = {"vocab_size": 9, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 32, "max_position_embeddings": 16, "num_labels": 4}
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(transformers.BertConfig(**config)).save_pretrained(
        folder / "parent")
    inline = "{ " + ", ".join(f"{k} = {v}" for k, v in config.items()) + " }"
    card = folder / "quiet-bert.toml"
    card.write_text(f'''name = "quiet-bert"
task = "classification"
parent = "transformers"
child = "transformers"
dataset = "token-recall"
input_shapes = [[1, 6], [1, 6]]
input_dtypes = ["int64", "int64"]
stages = 2

[parent_options]
architecture = "BertForSequenceClassification"
pretrained = "{folder / 'parent'}"

[child_options]
architecture = "BertForSequenceClassification"
config = {inline}

[dataset_options]
n_train = 64
n_test = 16
num_keys = 4
min_pairs = 1
max_pairs = 2

[train]
epochs = 1
batch_size = 8
''', encoding="utf-8")
    return card


def test_commands_print_no_library_warnings_or_loading_bars(isolated_home, tmp_path):
    """`hkt pairs check` on a transformers pair (traced with torch.export: its graphs are copied
    for the lockstep) and `hkt list pairs`, in a fresh process: stderr holds no FutureWarning
    (torch's `isinstance(treespec, LeafSpec)` deprecation) and no transformers loading bar."""
    pytest.importorskip("transformers")
    if "transformers" not in hkt_core.default_manager().registry("models"):
        pytest.skip("the zoo plugin's transformers source is not installed")
    card = _transformers_card(tmp_path)
    env = subprocess_env(isolated_home)
    for args in (["list", "pairs"], ["pairs", "check", str(card), "--methods", "hkt"]):
        done = subprocess.run(hkt_command(*args), env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        assert "Warning" not in done.stderr and "Loading weights" not in done.stderr, (args, done.stderr)


def test_a_pretrained_transformers_model_loads_without_a_progress_bar(tmp_path, capfd):
    pytest.importorskip("transformers")
    transformers_source = pytest.importorskip("hkt_zoo.transformers_source")
    from transformers.utils import logging as hf_logging

    _transformers_card(tmp_path)
    capfd.readouterr()
    model = transformers_source.transformers_model("BertForSequenceClassification", pretrained=str(tmp_path / "parent"))
    assert model.hkt_pretrained and "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()   # the user's own setting is left as it was


def test_pt2_export_prints_no_torch_warning(isolated_home, tmp_path):
    """`hkt export --format pt2` writes to a temporary name first (not ending in .pt2): torch's
    archive writer and reader must not warn about that name."""
    install_user_card(isolated_home)
    env = subprocess_env(isolated_home)
    run = tmp_path / "run"
    done = subprocess.run(hkt_command("train", "tiny-pair", "--method", "baseline", "--epochs", "1", "--no-progress",
                                      "--out", str(run)), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(hkt_command("export", str(run), "--format", "pt2"), env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


# -- 2. --set values of the wrong type ---------------------------------------------------------

@pytest.mark.parametrize("assignment, expected", [
    ("hkt.lam=abc", "--set hkt.lam=abc: HKTConfig.lam = 'abc' is invalid: must be a number"),
    ("train.lr=abc", "--set train.lr=abc: TrainConfig.lr = 'abc' is invalid: must be a number"),
    ('train.lr="0.1"', "TrainConfig.lr = '0.1' is invalid: must be a number"),
    ("train.epochs=1.5", "--set train.epochs=1.5: TrainConfig.epochs = 1.5 is invalid: must be an integer"),
    ("train.nesterov=abc", "--set train.nesterov=abc: TrainConfig.nesterov = 'abc' is invalid: must be true or false"),
    ("train.compile=1", "TrainConfig.compile = 1 is invalid: must be true or false"),
    ("train.optimizer=3", "--set train.optimizer=3: TrainConfig.optimizer = 3 is invalid: must be a string"),
    ("train.milestones=0.5", "TrainConfig.milestones = 0.5 is invalid: must be a list of numbers"),
    ("hkt.alphas=abc", "HKTConfig.alphas = 'abc' is invalid: must be a list of 3 numbers"),
    ("hkt.directions=3", "HKTConfig.directions = 3 is invalid: must be a string or a list of strings"),
    ("hkt.mixture_options=abc", "HKTConfig.mixture_options = 'abc' is invalid: must be a table"),
    ("parent_train.lr=fast", "--set parent_train.lr=fast: TrainConfig.lr = 'fast' is invalid: must be a number"),
])
def test_a_set_value_of_the_wrong_type_is_one_line_naming_the_assignment(assignment, expected):
    data = {"train": unstructure(TrainConfig()), "hkt": unstructure(HKTConfig()), "parent_train": {}}
    with pytest.raises(hkt_core.ConfigError) as info:
        apply_overrides(data, [assignment], open_sections=("parent_train",))
    message = str(info.value)
    assert expected in message and "\n" not in message and "@ $" not in message


@pytest.mark.parametrize("field, value", [("lam", "abc"), ("epochs", "x"), ("compile", "yes")])
def test_a_toml_value_of_the_wrong_type_is_one_line_naming_the_field(field, value):
    cls = HKTConfig if field == "lam" else TrainConfig
    with pytest.raises(hkt_core.ConfigError, match=rf"^{cls.__name__}.{field} = '{value}' is invalid: must be "):
        structure({field: value}, cls)


def test_values_of_the_right_type_still_convert():
    data = {"train": unstructure(TrainConfig()), "hkt": unstructure(HKTConfig())}
    data = apply_overrides(data, ["train.lr=1", "train.epochs=3.0", "train.milestones=[1, 0.5]",
                                  'hkt.directions=["both", "head"]', "hkt.alphas=[0.2, 0.6, 0.2]"])
    train = structure({**data["train"], "milestones": [0.25, 0.5]}, TrainConfig)
    assert train.lr == 1.0 and train.epochs == 3 and type(train.epochs) is int
    assert structure(data["hkt"], HKTConfig).directions == ("both", "to_parent")


def test_the_command_line_says_it_in_one_line(isolated_home, tmp_path, capsys):
    install_user_card(isolated_home)
    hkt_core.reset_default_manager()
    assert main(["train", "tiny-pair", "--method", "baseline", "--set", "hkt.lam=abc",
                 "--out", str(tmp_path / "r")]) == 2
    assert _one_line(capsys) == ("hkt train: error: --set hkt.lam=abc: HKTConfig.lam = 'abc' is invalid: "
                                 "must be a number")
    assert not (tmp_path / "r").exists()


# -- 3. a mistyped operator name -----------------------------------------------------------------

def test_a_mistyped_mixture_suggests_the_registered_name(isolated_home, tmp_path, capsys):
    install_user_card(isolated_home)
    hkt_core.reset_default_manager()
    assert main(["train", "tiny-pair", "--method", "hkt", "--set", "hkt.mixture=gaa",
                 "--out", str(tmp_path / "r")]) == 2
    err = _one_line(capsys)
    assert "hkt.mixture = 'gaa' is not a registered mixture; did you mean 'ga'?" in err
    assert "registered mixtures: " in err and "ga-learned" in err and "`hkt list mixtures`" in err
    assert "pick another method" not in err and "correct the models" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("setting, kind", [("transfer", "transfers"), ("extractor", "extractors")])
def test_every_operator_setting_is_checked_before_anything_runs(setting, kind):
    from hkt_core.train.api import resolve

    manager = manager_with(tiny_card())
    with pytest.raises(hkt_core.ConfigError, match=rf"hkt.{setting} = 'nosuch' is not a registered "
                                                   rf"{kind[:-1]} \(registered {kind}: "):
        resolve("tiny-pair", "hkt", manager=manager, settings=[f"hkt.{setting}=nosuch"])
    resolve("tiny-pair", "baseline", manager=manager)   # the card's own names are not in question


def test_a_close_spelling_of_a_choice_is_suggested():
    with pytest.raises(hkt_core.ConfigError, match=r"must be one of none, multistep, cosine, linear; "
                                                   r"did you mean 'linear'\?"):
        TrainConfig(schedule="linar")


# -- 4. the methods in `hkt train --help` ----------------------------------------------------------

def test_train_help_names_every_builtin_method(capsys):
    from hkt_core.cli.reference import markdown
    from hkt_core.train.methods import BUILTIN_METHODS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    def bare(text: str) -> str:   # argparse wraps at spaces and after hyphens
        return "".join(text.split())

    help_text = bare(capsys.readouterr().out)
    assert bare(f"--method METHOD {', '.join(BUILTIN_METHODS)} or a plugin's") in help_text
    assert {"hkt-kd", "fitnet", "fitnet-kd"} <= set(BUILTIN_METHODS)
    assert bare(f"{', '.join(BUILTIN_METHODS)} or a plugin's") in bare(markdown())


# -- 6. and 7. the README tour -----------------------------------------------------------------------

def _tour() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = readme[readme.index("## A five-minute tour"):]
    tour = tour[tour.index("```console\n") + len("```console\n"):]
    return tour[:tour.index("```")].splitlines()


def test_the_readme_tour_writes_its_picture_outside_the_repository():
    lines = [line.split("  #")[0].split() for line in _tour()]
    for words in lines:
        for flag in ("--plot", "--out", "-o"):
            if flag in words:
                target = words[words.index(flag) + 1]
                assert target.startswith(("/tmp/", "runs/", "$")) or words[:3] == ["hkt", "pairs", "new"], words


def test_the_compile_cost_is_stated_where_compile_is_offered(capsys):
    compile_line = next(line for line in _tour() if "--compile" in line)
    assert "min" in compile_line.split("#", 1)[1]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "compiling" in readme[readme.index("## A five-minute tour"):readme.index("## Layout")]
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "compiling costs minutes on a CPU" in help_text


# -- 8. the parent's row in compare.md -------------------------------------------------------------

def pretrained_parent(weights: str = ""):
    """The tiny pair's parent with weights of its own (as a zoo model with ``weights`` is)."""
    from safetensors.torch import load_file

    from test_train_support import make_parent

    model = make_parent()
    if weights:
        model.load_state_dict(load_file(weights))
        model.hkt_pretrained = str(Path(weights).resolve())
    return model


def test_compare_md_has_the_pretrained_parents_row(isolated_home, tmp_path, capsys):
    from hkt_core.pairs.card import PairCard
    from hkt_core.train.compare import run_comparison, write_comparison
    from test_train_support import card_dict

    trained = hkt_core.train(tiny_card(), "parent", manager=manager_with(tiny_card()), out=tmp_path / "p",
                             progress=False)
    weights = trained.path / "child.safetensors"   # a parent run's network is the parent
    data = card_dict("tiny-pretrained")
    data["parent"] = f"{__name__}:pretrained_parent"
    data["parent_options"] = {"weights": str(weights)}
    card = PairCard.from_dict(data)
    manager = manager_with(card)
    out = tmp_path / "cmp"
    rows = run_comparison(card.name, ["baseline", "kd"], [0, 1], out, manager=manager, epochs=1, say=lambda m: None)
    written = write_comparison(out, card.name, rows, manager=manager)
    table = written["markdown"].read_text(encoding="utf-8").splitlines()
    body = [line for line in table if line.startswith("| ") and not line.startswith("| method")]
    assert [line.split("|")[1].strip() for line in body] == ["parent", "baseline", "kd"]
    record = json.loads(written["json"].read_text(encoding="utf-8"))
    assert [r["method"] for r in record["rows"]] == ["baseline", "kd"] and record["parent"]["method"] == "parent"
    summary = json.loads((out / "kd-seed0" / "summary.json").read_text(encoding="utf-8"))
    assert summary["parent"]["source"] == "pretrained"
    # the parent's test accuracy, evaluated once on the pair's test split, as its own run measured it
    assert record["parent"]["mean"] == pytest.approx(trained.summary["test"]["accuracy"])
    assert record["parent"]["parameters"] == trained.summary["parameters"]


def test_compare_md_has_the_cached_parents_row_too(isolated_home, tmp_path):
    from hkt_core.train.compare import run_comparison, write_comparison

    card = tiny_card()
    manager = manager_with(card)
    out = tmp_path / "cmp"
    rows = run_comparison(card.name, ["baseline", "kd"], [0, 1], out, manager=manager, epochs=1, say=lambda m: None)
    record = json.loads(write_comparison(out, card.name, rows, manager=manager)["json"].read_text(encoding="utf-8"))
    parent = json.loads((Path(json.loads((out / "kd-seed0" / "summary.json").read_text())["parent"]["path"])
                         / "summary.json").read_text())
    assert record["parent"]["mean"] == parent["test"]["accuracy"]
    assert "| parent |" in (out / "compare.md").read_text(encoding="utf-8")
    base_only = run_comparison(card.name, ["baseline"], [0, 1], out, manager=manager, epochs=1, say=lambda m: None)
    assert "parent" not in json.loads(write_comparison(out, card.name, base_only, manager=manager)["json"]
                                      .read_text(encoding="utf-8"))
