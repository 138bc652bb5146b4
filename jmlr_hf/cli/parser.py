"""`HfArgumentParser` for the `jmlr` subcommands, with positional arguments, at the cost of no `import transformers`.

`import transformers` takes about a second before anything is used (the package builds its lazy import table), which
alone would put `jmlr evaluate --help` over a second. `transformers/hf_argparser.py` itself needs only the standard
library and PyYAML, so when transformers is not loaded yet, [`hf_argument_parser_class`] loads that one file; when
it is loaded (every command that runs loads it anyway), or when a future transformers version makes the file depend
on its package, the regular `transformers.HfArgumentParser` is used. Both parse identically
(tests/test_cli_arguments.py compares them).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from argparse import ArgumentDefaultsHelpFormatter, ArgumentParser
from functools import cache
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args, get_origin

from ..scripts.preflight import did_you_mean
from .arguments import ConsoleArguments

INVALID_CHOICE = re.compile(r"invalid choice: '(?P<value>[^']*)' \(choose from (?P<choices>.*)\)")


def usage_error(message: str) -> NoReturn:
    """An argparse error as the `jmlr` console shows every error: one line and exit status 1 (a `SystemExit` whose
    code is the message, which [`jmlr_hf.cli.main`] prints as `jmlr <command>: error: ...`), not the usage block and
    status 2; an invalid choice names the closest one (`--task MedQA`: did you mean 'medqa'?)."""
    match = INVALID_CHOICE.search(message)
    if match:
        message += did_you_mean(match["value"], re.findall(r"'([^']*)'", match["choices"]))
    raise SystemExit(f"{message} (see --help)")


class OneLineErrorParser(ArgumentParser):
    """An `ArgumentParser` whose errors are [`usage_error`]s."""

    def error(self, message: str) -> NoReturn:
        usage_error(message)


def load_standalone_hf_argparser() -> type | None:
    """`HfArgumentParser` from `transformers/hf_argparser.py` loaded on its own (without running
    `transformers/__init__.py`), or `None` where that file cannot be loaded so (missing, or importing its package)."""
    spec = importlib.util.find_spec("transformers")
    source = Path(spec.origin).parent / "hf_argparser.py" if spec is not None and spec.origin else None
    if source is None or not source.is_file():
        return None
    module_spec = importlib.util.spec_from_file_location("jmlr_hf.cli.transformers_hf_argparser", source)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except ImportError:  # the file now imports from its package
        return None
    return getattr(module, "HfArgumentParser", None)


@cache
def hf_argument_parser_class(standalone: bool = True) -> type:
    """transformers' `HfArgumentParser` class: the loaded package's, else its module file loaded on its own.

    `standalone=False` always imports `transformers` (what the standalone load falls back to).
    """
    if standalone and "transformers" not in sys.modules:
        parser_class = load_standalone_hf_argparser()
        if parser_class is not None:
            return parser_class
    from transformers import HfArgumentParser

    return HfArgumentParser


class DefaultsHelpFormatter(ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where its help already says what the default is (no "(default: None)"
    after "default: the model's config")."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        return help_text if "default" in help_text.lower() else super()._get_help_string(action)


@cache
def with_positionals(base: type) -> type:
    """`base` (an `HfArgumentParser` class) that also reads fields marked `positional`
    ([`jmlr_hf.cli.arguments.positional`]).

    `HfArgumentParser` turns every field into a flag; `jmlr answer "question"` and `jmlr pull model org/id` keep
    their positional form, so those fields become plain argparse positionals, and every other field keeps the
    underscore and dash spellings that `HfArgumentParser` gives it.
    """

    def parse_dataclass_field(parser: ArgumentParser, field: dataclasses.Field) -> None:
        if not field.metadata.get("positional"):
            base._parse_dataclass_field(parser, field)
            return
        # Optional to argparse, required by `parse_subcommand`: a list flag given last (`--options A B C "question"`)
        # takes every word after it, so the positional may only be found among its values ([`fill_positionals`]).
        kwargs: dict[str, Any] = {"help": field.metadata.get("help"), "nargs": "?", "default": None}
        if get_origin(field.type) is Literal:
            kwargs["choices"] = get_args(field.type)
        parser.add_argument(field.name, **kwargs)

    def error(self, message: str) -> NoReturn:
        usage_error(message)

    namespace = {"_parse_dataclass_field": staticmethod(parse_dataclass_field), "error": error}
    return type("JMLRArgumentParser", (base,), namespace)


def build_subcommand_parser(
    prog: str, description: str, arguments: type, *, standalone: bool = True
) -> ArgumentParser:
    """The parser of one subcommand: its `arguments` dataclass and the [`ConsoleArguments`]."""
    parser_class = with_positionals(hf_argument_parser_class(standalone))
    return parser_class(
        [arguments, ConsoleArguments],
        prog=prog,
        description=description,
        formatter_class=DefaultsHelpFormatter,
    )


def parse_subcommand(
    prog: str, description: str, arguments: type, argv: list[str], *, standalone: bool = True
) -> tuple[Any, ConsoleArguments]:
    """Parse `argv` into an `arguments` instance and the [`ConsoleArguments`] (`--debug`, `--verbose`).

    An unknown flag is an argparse error (one line, exit status 1 on the console: [`usage_error`]), rather than the
    `ValueError` that `HfArgumentParser.parse_args_into_dataclasses` raises.
    """
    parser = build_subcommand_parser(prog, description, arguments, standalone=standalone)
    parsed, console, remaining = parser.parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True, look_for_args_file=False
    )
    if remaining:
        parser.error(f"unrecognized arguments: {' '.join(remaining)}")
    fill_positionals(parsed, argv)
    return parsed, console


def fill_positionals(parsed: Any, argv: list[str]) -> None:
    """Give `parsed` its missing positionals from the list flag that ends `argv`, or raise a [`usage_error`].

    argparse lets a list flag (`nargs="+"`) take every word after it, so in `jmlr answer --options Liver Pancreas
    Kidney "Which organ makes insulin?"` the question would be the fourth option and the command would fail with
    "the following arguments are required: question". A positional can only come after the last flag's values, so
    the missing positionals are the last words of that flag's list (which must keep at least one value).
    """
    positional = [field for field in dataclasses.fields(parsed) if field.metadata.get("positional")]
    missing = [field for field in positional if getattr(parsed, field.name) is None]
    if not missing:
        return
    flags = [word for word in argv if word.startswith("--")]
    last = flags[-1][2:].split("=", 1)[0].replace("-", "_") if flags else None
    values = getattr(parsed, last, None) if last else None
    if isinstance(values, list) and "=" not in flags[-1] and len(values) > len(missing):
        taken = values[len(values) - len(missing) :]
        for field, value in zip(missing, taken, strict=True):
            choices = get_args(field.type) if get_origin(field.type) is Literal else None
            if choices and value not in choices:
                break
        else:
            del values[len(values) - len(missing) :]
            for field, value in zip(missing, taken, strict=True):
                setattr(parsed, field.name, value)
            return
    usage_error(f"the following arguments are required: {', '.join(field.name for field in missing)}")
