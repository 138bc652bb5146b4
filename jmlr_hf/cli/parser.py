"""`HfArgumentParser` for the `jmlr` subcommands, with positional arguments.

Imported only when a subcommand is parsed: `transformers.hf_argparser` loads the (lazy) `transformers` package but not
torch, so `jmlr evaluate --help` stays fast while `jmlr --help` imports neither.
"""

from __future__ import annotations

import dataclasses
from argparse import ArgumentDefaultsHelpFormatter, ArgumentParser
from typing import Any, Literal, get_args, get_origin

from transformers import HfArgumentParser

from .arguments import ConsoleArguments


class DefaultsHelpFormatter(ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where its help already says what the default is (no "(default: None)"
    after "default: the model's config")."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        return help_text if "default" in help_text.lower() else super()._get_help_string(action)


class JMLRArgumentParser(HfArgumentParser):
    """`HfArgumentParser` that also reads fields marked `positional` ([`jmlr_hf.cli.arguments.positional`]).

    `HfArgumentParser` turns every field into a flag; `jmlr answer "question"` and `jmlr pull model org/id` keep
    their positional form, so those fields become plain argparse positionals, and every other field keeps the
    underscore and dash spellings that `HfArgumentParser` gives it.
    """

    @staticmethod
    def _parse_dataclass_field(parser: ArgumentParser, field: dataclasses.Field) -> None:
        if not field.metadata.get("positional"):
            HfArgumentParser._parse_dataclass_field(parser, field)
            return
        kwargs: dict[str, Any] = {"help": field.metadata.get("help")}
        if get_origin(field.type) is Literal:
            kwargs["choices"] = get_args(field.type)
        parser.add_argument(field.name, **kwargs)


def parse_subcommand(prog: str, description: str, arguments: type, argv: list[str]) -> tuple[Any, ConsoleArguments]:
    """Parse `argv` into an `arguments` instance and the [`ConsoleArguments`] (`--debug`, `--verbose`).

    An unknown flag is an argparse error (usage and exit status 2), as in any argparse program, rather than the
    `ValueError` that `HfArgumentParser.parse_args_into_dataclasses` raises.
    """
    parser = JMLRArgumentParser(
        [arguments, ConsoleArguments], prog=prog, description=description, formatter_class=DefaultsHelpFormatter
    )
    parsed, console, remaining = parser.parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True, look_for_args_file=False
    )
    if remaining:
        parser.error(f"unrecognized arguments: {' '.join(remaining)}")
    return parsed, console
