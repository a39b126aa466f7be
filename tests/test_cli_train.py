"""``hkt train | eval | compare | export | demo`` on the tiny test pair (a user card in $HKT_HOME)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

import hkt_core
from hkt_core.cli.main import main
from test_train_support import hkt_command, install_user_card, subprocess_env



@pytest.fixture
def tiny_pair(isolated_home):
    card = install_user_card(isolated_home, delay=0.002)
    hkt_core.reset_default_manager()
    return card


def _kill_and_resume(pair: str, home, tmp_path) -> None:
    """``hkt train PAIR --method hkt --epochs 3 --seed 7``: uninterrupted vs killed (SIGKILL) right
    after its first checkpoint and resumed with --resume; last.safetensors must be bit-identical."""
    args = ["train", pair, "--method", "hkt", "--epochs", "3", "--seed", "7", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "A")]) == 0  # also trains and caches the parent

    proc = subprocess.Popen(hkt_command(*args, "--out", str(tmp_path / "B")), env=subprocess_env(home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = tmp_path / "B" / "state.json"
    deadline = time.monotonic() + 300
    while not state.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    _, err = proc.communicate()
    assert state.is_file(), f"the run wrote no checkpoint before it was killed: {err.decode()[-2000:]}"
    killed_at = json.loads(state.read_text())["epoch"]
    assert killed_at < 3, "the run finished before it could be killed; the test proved nothing"
    assert not (tmp_path / "B" / "summary.json").exists()

    assert main([*args, "--out", str(tmp_path / "B"), "--resume"]) == 0
    a, b = load_file(tmp_path / "A" / "last.safetensors"), load_file(tmp_path / "B" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "B" / "summary.json").read_text())["test"] == \
        json.loads((tmp_path / "A" / "summary.json").read_text())["test"]


@pytest.mark.subprocess
def test_killed_run_resumes_to_identical_tensors(tiny_pair, isolated_home, tmp_path):
    _kill_and_resume(tiny_pair.name, isolated_home, tmp_path)


@pytest.mark.slow
@pytest.mark.subprocess
def test_killed_digits_demo_run_resumes_to_identical_tensors(isolated_home, tmp_path):
    """The same on the demo pair (trains its parent first: about half a minute)."""
    if "digits-demo" not in hkt_core.default_manager().registry("pairs"):
        pytest.skip("digits-demo comes with the hkt-vision plugin, not installed here")
    _kill_and_resume("digits-demo", isolated_home, tmp_path)


def test_train_eval_export(tiny_pair, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", tiny_pair.name, "--method", "baseline", "--epochs", "2", "--batch-size", "40",
                 "--lr", "0.1", "--seed", "1", "--device", "cpu", "--set", "train.grad_clip=1.0",
                 "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"run folder: {run}" in out and "test accuracy" in out and "parameters" in out
    for name in ("child.safetensors", "summary.json", "metrics.jsonl", "curves.png"):  # every place it wrote
        assert f"  {name} " in out and (run / name).is_file()
    config = hkt_core.config.read_toml(run / "config.toml")
    assert config["train"]["batch_size"] == 40 and config["train"]["grad_clip"] == 1.0

    summary = json.loads((run / "summary.json").read_text())
    assert main(["eval", str(run), "--split", "test"]) == 0
    printed = capsys.readouterr().out
    assert f"accuracy   {summary['test']['accuracy']:.6f}" in printed

    for fmt, suffix in (("safetensors", ".safetensors"), ("onnx", ".onnx"), ("pt2", ".pt2")):
        assert main(["export", str(run), "--format", fmt]) == 0, fmt
        assert (run / "export" / f"child{suffix}").is_file()
        assert "output checked against the child" in capsys.readouterr().out
    exported = load_file(run / "export" / "child.safetensors")
    assert exported.keys() == load_file(run / "child.safetensors").keys()


def test_cli_errors_are_one_clear_line(tiny_pair, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", tiny_pair.name, "--method", "baseline", "--epochs", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", tiny_pair.name, "--method", "baseline", "--epochs", "1", "--out", str(run)]) == 2
    assert "already exists; pass --resume to continue it or --force" in capsys.readouterr().err
    assert main(["train", tiny_pair.name, "--method", "hktt", "--out", str(tmp_path / "x")]) == 2
    assert "unknown methods 'hktt'; closest: hkt" in capsys.readouterr().err
    assert main(["train", "no-such-pair", "--method", "kd", "--out", str(tmp_path / "x")]) == 2
    assert "unknown pairs 'no-such-pair'" in capsys.readouterr().err
    assert main(["train", tiny_pair.name, "--method", "baseline", "--set", "train.optimizer=adam",
                 "--out", str(tmp_path / "x")]) == 2
    assert "must be one of sgd, adamw" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", tiny_pair.name, "--method", "baseline", "--resume", "--force"])
    assert main(["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "e.safetensors")]) == 0
    assert main(["eval", str(tmp_path / "nothing")]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_compare_table_markdown_and_chart(tiny_pair, tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", tiny_pair.name, "--methods", "baseline,kd", "--seeds", "0,1", "--epochs", "1",
            "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if line.startswith(("baseline", "kd"))]
    assert len(lines) == 2 and all("±" in line for line in lines)
    rows = json.loads((out / "compare.json").read_text())["rows"]
    for row in rows:
        values = [json.loads((out / f"{row['method']}-seed{s}" / "summary.json").read_text())["test"]["accuracy"]
                  for s in (0, 1)]
        assert row["mean"] == pytest.approx(sum(values) / 2)
    assert (out / "compare.md").read_text().count("|") > 10 and (out / "compare.png").is_file()
    assert main(args) == 0  # finished runs are reused, not retrained
    assert "reusing" in capsys.readouterr().err
    assert main(["compare", tiny_pair.name, "--methods", "baseline", "--seeds", "a"]) == 2


def test_demo_without_its_pair_says_where_it_comes_from(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HKT_DISABLE_PLUGINS", "vision")
    hkt_core.reset_default_manager()
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    assert "hkt-vision" in capsys.readouterr().err


def test_demo_flow_on_a_stand_in_pair(tiny_pair, tmp_path, capsys, monkeypatch):
    """The demo's own steps (parent, three children, one table, where the plots are) on the tiny pair."""
    import hkt_core.cli.train_cmd as train_cmd

    monkeypatch.setattr(train_cmd, "DEMO_PAIR", tiny_pair.name)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "1"]) == 0
    printed = capsys.readouterr()
    rows = [line.split() for line in printed.out.splitlines() if line.split()[:1] in
            (["parent"], ["baseline"], ["kd"], ["hkt"]) and line.split()[1:2] != ["-"]]  # table rows
    assert [r[0] for r in rows] == ["parent", "baseline", "kd", "hkt"]
    assert all(r[2] == "±" and r[4] == "3" for r in rows[1:]), "three seeds per method, mean ± std"
    assert "test accuracy (%)" in printed.out and "ms/sample" in printed.out and "parameters" in printed.out
    assert f"chart: {out / 'compare.png'}" in printed.out and (out / "compare.png").is_file()
    assert f"table: {out / 'compare.md'}" in printed.out
    for method in ("baseline", "kd", "hkt"):
        assert all((out / f"{method}-seed{s}" / "curves.png").is_file() for s in range(3))
    assert "training the parent first" in printed.err
    hkt = tiny_pair.hkt
    assert f"HKT settings (the card's [hkt]): mixture {hkt.mixture}, lam {hkt.lam:g}" in printed.out
    summaries = {m: [json.loads((out / f"{m}-seed{s}" / "summary.json").read_text())["test"]["accuracy"]
                     for s in range(3)] for m in ("baseline", "kd", "hkt")}
    for method in ("kd", "hkt"):
        diffs = [a - b for a, b in zip(summaries[method], summaries["baseline"])]
        line = next(x for x in printed.out.splitlines() if x.strip().startswith(f"{method} - baseline:"))
        assert f"{100 * sum(diffs) / 3:+.2f} points, ahead on {sum(d > 0 for d in diffs)} of 3 seeds" in line
        assert "within the noise" in line or "beyond the noise" in line
    assert "docs/RESULTS.md" in printed.out
    assert main(["demo", "--out", str(tmp_path / "two"), "--seeds", "2"]) == 2
    err = capsys.readouterr().err
    assert "--seeds 2 is invalid: at least 3 seeds" in err
    assert "--seeds 2 as a count is deprecated" in err and "--num-seeds 2" in err
    assert main(["demo", "--out", str(tmp_path / "two"), "--seeds", "0,1"]) == 2
    assert "--seeds 0,1 is invalid: at least 3 seeds" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "two"), "--num-seeds", "1"]) == 2
    assert "--num-seeds 1 is invalid" in capsys.readouterr().err
    assert not (tmp_path / "two").exists()
