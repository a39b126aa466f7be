"""CLI help as git or pip give it: a description for every subcommand, help for every option with
its default, one placeholder style, ``hkt list`` descriptions whole and plain, a quiet exit into
a closed pipe."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from hkt_core.cli.main import _subcommands, build_parser, main


def _walk(parser, path="hkt"):
    yield path, parser
    for name, child, _ in _subcommands(parser):
        yield from _walk(child, f"{path} {name}")


def _options(parser):
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


COMMANDS = list(_walk(build_parser()))


def test_every_subcommand_has_a_description_and_every_option_help():
    missing = []
    for path, parser in COMMANDS[1:]:
        if not parser.description:
            missing.append(f"{path}: no description")
        for action in _options(parser):
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}: no help")
    assert not missing, "\n".join(missing)


def test_options_with_a_default_say_it_and_positionals_are_in_capitals():
    problems = []
    for path, parser in COMMANDS:
        for action in _options(parser):
            if not action.option_strings:
                name = action.metavar if isinstance(action.metavar, str) else action.dest
                if name != name.upper():
                    problems.append(f"{path} {name}: positional placeholder not in capitals")
            elif action.default not in (None, False, [], argparse.SUPPRESS) and action.nargs != 0:
                if "default" not in (action.help or ""):
                    problems.append(f"{path} {action.option_strings[0]}: default {action.default!r} not shown")
    assert not problems, "\n".join(problems)


def test_one_meaning_per_seeds_option():
    """``--seeds`` is a list of seeds in compare and demo alike (demo's count is ``--num-seeds``)."""
    by_path = dict(COMMANDS)
    for path in ("hkt compare", "hkt demo"):
        seeds = next(a for a in _options(by_path[path]) if "--seeds" in a.option_strings)
        assert seeds.metavar == "LIST" and "comma-separated" in seeds.help
    assert any("--num-seeds" in a.option_strings for a in _options(by_path["hkt demo"]))


def test_hkt_list_prints_whole_plain_descriptions(capsys):
    assert main(["list", "methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    hkt = next(line for line in lines if line.startswith("hkt "))
    assert ":class:" not in "\n".join(lines) and "``" not in "\n".join(lines)
    assert "hkt_core.Family with the frozen parent" in hkt and hkt.split("  [")[0].endswith(".")


def test_plain_text_and_whole_first_sentence():
    from hkt_core.plugins.registry import _first_line, plain_text

    def doc():
        """Uses :class:`~a.B` and ``c`` over
        two lines. A second sentence.

        A second paragraph."""

    assert plain_text(":func:`x.y` and ``z``") == "x.y and z"
    assert _first_line(doc) == "Uses a.B and c over two lines."


@pytest.mark.parametrize("argv", [["list", "models"], ["pairs", "show", "digits-demo"]])
def test_output_into_a_closed_pipe_exits_quietly(argv):
    code = ("import sys; from hkt_core.cli.main import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away after one line, as `| head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_bad_threads_and_workers_are_one_line_before_anything_trains(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "digits-demo", "--threads", "0", "--out", str(out)]) == 2
    assert "--threads 0 is invalid: an integer >= 1" in capsys.readouterr().err
    assert main(["compare", "digits-demo", "--workers", "0", "--out", str(out)]) == 2
    assert "--workers 0 is invalid: an integer >= 1" in capsys.readouterr().err
    assert main(["train", "digits-demo", "--method", "baseline", "--threads", "0", "--out", str(out)]) == 2
    assert "TrainConfig.threads = 0 is invalid: must be an integer >= 1" in capsys.readouterr().err
    assert not out.exists()
