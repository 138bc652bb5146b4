"""The `jmlr` command line: one argument style for every subcommand (dataclasses parsed by `HfArgumentParser`, each
flag spelled with underscores or dashes), `--version`, and a `--help` that imports no ML library."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Literal, get_args, get_origin, get_type_hints

import pytest

from jmlr_hf.cli import main, parse_command
from jmlr_hf.cli.arguments import COMMANDS, PUSH_TARGETS, ConsoleArguments, TaskName
from jmlr_hf.cli.parser import hf_argument_parser_class, load_standalone_hf_argparser, with_positionals
from jmlr_hf.data import TASKS

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "jmlr_hf"

# Every subcommand parsed by a dataclass, with the smallest valid command line (its positionals and required flags).
MINIMAL = {
    "index": ["index", "--output", "out"],
    "retrieve": ["retrieve", "--index", "idx", "--output", "out"],
    "answer": ["answer", "What?", "--model", "m"],
    "evaluate": ["evaluate", "--model", "m", "--task", "mmlu"],
    "push model": ["push", "model", "src", "--repo_id", "me/x"],
    "push index": ["push", "index", "src", "--repo_id", "me/x"],
    "push dataset": ["push", "dataset", "--source", "medmcqa", "--repo_id", "me/x"],
    "pull": ["pull", "model", "me/x", "--output", "out"],
}


def arguments_class(name: str) -> type:
    parts = name.split()
    return PUSH_TARGETS[parts[1]].arguments if parts[0] == "push" else COMMANDS[parts[0]].arguments


def sample_value(kind: type, default: object) -> tuple[list[str], object]:
    """Command-line words for a flag of type `kind` (other than its default) and the value they must parse to."""
    if kind is bool or kind == bool | None:
        return [], not default
    if get_origin(kind) is Literal or any(get_origin(a) is Literal for a in get_args(kind)):
        choices = get_args(kind) if get_origin(kind) is Literal else get_args(next(a for a in get_args(kind) if a))
        choice = next(c for c in choices if c != default)
        return [choice], choice
    base = kind if get_origin(kind) is list else next(a for a in (*get_args(kind), kind) if a is not type(None))
    if get_origin(base) is list:
        return ["a", "b"], ["a", "b"]
    if base is int:
        return ["7"], 7
    return ["some-value"], "some-value"


def flag_cases() -> list[tuple[str, str]]:
    cases = []
    for name in MINIMAL:
        for field in dataclasses.fields(arguments_class(name)):
            if not field.metadata.get("positional"):
                cases.append((name, field.name))
    for field in dataclasses.fields(ConsoleArguments):
        cases.append(("evaluate", field.name))
    return cases


@pytest.mark.parametrize(("command", "field_name"), flag_cases(), ids=lambda value: value)
def test_every_flag_of_every_subcommand_takes_underscores_and_dashes(command, field_name):
    cls = arguments_class(command)
    if field_name in {f.name for f in dataclasses.fields(ConsoleArguments)}:
        cls = ConsoleArguments
    field = {f.name: f for f in dataclasses.fields(cls)}[field_name]
    kind = get_type_hints(cls)[field_name]
    default = None if field.default is dataclasses.MISSING else field.default
    words, expected = sample_value(kind, default)
    negate = kind in (bool, bool | None) and default is True  # `--no_skip_invalid` / `--no-skip-invalid`
    name = f"no_{field_name}" if negate else field_name
    for flag in (f"--{name}", f"--{name.replace('_', '-')}"):
        # A required flag is in the minimal line already: take it out rather than give it twice.
        argv = list(MINIMAL[command])
        for i, word in enumerate(argv):
            if word.replace("-", "_") == f"--{field_name}":
                del argv[i : i + 2]
                break
        _, _, arguments, console = parse_command([*argv, flag, *words])
        parsed = console if cls is ConsoleArguments else arguments
        assert getattr(parsed, field_name) == expected, (argv, flag, words)


def test_positionals_keep_their_place():
    _, _, arguments, _ = parse_command(["answer", "Does aspirin help?", "--model", "m", "--options", "yes", "no"])
    assert (arguments.question, arguments.model, arguments.options) == ("Does aspirin help?", "m", ["yes", "no"])
    _, _, arguments, _ = parse_command(["pull", "index", "me/idx", "--output", "o"])
    assert (arguments.what, arguments.repo_id) == ("index", "me/idx")
    _, command, arguments, _ = parse_command(["push", "model", "outputs/final", "--repo-id", "me/m", "--no-index"])
    assert command.runner == "run_push_model" and (arguments.source, arguments.no_index) == ("outputs/final", True)


def test_debug_and_verbose_go_before_or_after_the_subcommand():
    assert parse_command(["--debug", "evaluate", "--model", "m", "--task", "mmlu"])[3] == ConsoleArguments(debug=True)
    assert parse_command(["evaluate", "--model", "m", "--task", "mmlu", "--verbose"])[3].verbose


def test_train_gets_its_flags_untouched():
    _, command, arguments, _ = parse_command(["train", "--config", "recipes/demo.yaml", "--max_steps", "3"])
    assert command is COMMANDS["train"] and arguments == ["--config", "recipes/demo.yaml", "--max_steps", "3"]


def test_an_unknown_flag_is_a_usage_error():
    """A usage error is a `SystemExit` carrying its one line (the console prints it and exits with status 1)."""
    with pytest.raises(SystemExit) as exit:
        parse_command(["evaluate", "--model", "m", "--task", "mmlu", "--bogus"])
    assert "unrecognized arguments: --bogus" in exit.value.code


def test_contradicting_flags_are_rejected():
    with pytest.raises(ValueError, match="--closed_book and --index"):
        parse_command(["evaluate", "--model", "m", "--task", "mmlu", "--index", "i", "--closed_book"])


def test_the_task_names_are_those_of_the_data_package():
    assert get_args(TaskName) == TASKS


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.strip() == "jmlr 0.1.0"


HELP_PROBE = """
import json, sys
# The real entry point: `jmlr` imports the package (jmlr_hf/__init__.py) and then its command line.
from jmlr_hf.cli import main
try:
    main({argv!r})
except SystemExit as exit:
    assert exit.code == 0, exit.code
heavy = ["torch", "transformers", "datasets", "faiss", "trl", "evaluate", "numpy"]
print(json.dumps([name for name in heavy if name in sys.modules]))
"""


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (["--help"], []),
        (["--version"], []),
        (["push", "--help"], []),
        # A subcommand's help builds its HfArgumentParser, from transformers' hf_argparser.py alone.
        (["evaluate", "--help"], []),
        (["index", "--help"], []),
        (["answer", "--help"], []),
        (["push", "model", "--help"], []),
        (["pull", "--help"], []),
    ],
    ids=" ".join,
)
def test_help_imports_no_ml_library(argv, allowed):
    """Measured by what is imported, never by the clock: `--help` must not load torch, transformers, datasets..."""
    probe = HELP_PROBE.format(package=str(PACKAGE_DIR), argv=argv)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(imported) <= set(allowed), imported


def test_the_standalone_hf_argparser_parses_as_the_transformers_one():
    """`--help` loads `transformers/hf_argparser.py` on its own (no `import transformers`); a command that runs
    has transformers loaded and uses `transformers.HfArgumentParser`: both must give the same help and values."""
    from transformers import HfArgumentParser

    standalone = load_standalone_hf_argparser()
    assert standalone is not None and standalone is not HfArgumentParser
    assert hf_argument_parser_class() is HfArgumentParser  # transformers is loaded in this process
    for name, argv in MINIMAL.items():
        words = argv[2:] if argv[0] == "push" else argv[1:]
        parsers = [
            with_positionals(base)([arguments_class(name), ConsoleArguments], prog=f"jmlr {name}")
            for base in (standalone, HfArgumentParser)
        ]
        results = [parser.parse_args_into_dataclasses(args=words, look_for_args_file=False) for parser in parsers]
        assert results[0] == results[1], name
        assert parsers[0].format_help() == parsers[1].format_help(), name
