"""The `jmlr` command: `index`, `retrieve`, `train`, `answer`, `evaluate`, `push` and `pull`.

    jmlr index    --corpus pubmedqa --retriever all-minilm-l6-v2 --output outputs/index
    jmlr retrieve --index outputs/index --task pubmedqa --split test --output q.jsonl
    jmlr train    --config recipes/demo.yaml
    jmlr answer   --model outputs/demo/final "Does aspirin prevent heart attacks?"
    jmlr evaluate --model outputs/demo/final --task mmlu --limit 100 --sample_seed 0 --output outputs/eval/mmlu.json
    jmlr push model outputs/demo/final --repo_id me/jmlr-demo --eval_results outputs/eval/mmlu.json
    jmlr pull model me/jmlr-demo --output models/jmlr-demo

Every subcommand's flags are dataclass fields ([`jmlr_hf.cli.arguments`]) parsed by transformers'
`HfArgumentParser`, as `jmlr train` parses its own with TRL's `TrlParser`: `--num_candidates` and
`--num-candidates` both work. `jmlr --help`, `jmlr <command> --help` and `jmlr --version` import no ML library
(torch, transformers, datasets, faiss); a subcommand imports what it needs when it runs.

On the console an error is one line on stderr (`jmlr evaluate: error: ...`) and exit status 1; `--debug` (before or
after the subcommand) or `JMLR_DEBUG=1` shows the traceback instead. Library log lines (faiss's INFO lines,
transformers' warnings) are hidden unless `--verbose`. Called from Python with an argument list, [`main`] raises the
error itself, so that a caller (or a test) can catch it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .arguments import COMMANDS, PUSH_TARGETS, Command, ConsoleArguments
from .commands import limit_questions, load_questions, resolve_evaluation_split  # light: imports nothing heavy
from .parser import OneLineErrorParser

DEBUG_ENV = "JMLR_DEBUG"
EXIT_ERROR, EXIT_INTERRUPTED = 1, 130


def package_version() -> str:
    """The installed version of `jmlr_hf`, from its metadata (importing the package's models would load torch)."""
    try:
        return version("jmlr_hf")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_top_parser() -> argparse.ArgumentParser:
    """`jmlr [--version] [--debug] [--verbose] <command> ...`: the command list, without importing any command."""
    listing = "\n".join(f"  {name:<10}{command.help}" for name, command in COMMANDS.items())
    parser = OneLineErrorParser(
        prog="jmlr",
        description="Joint Medical LLM and Retrieval Training (JMLR): train a retriever and an LLM together.",
        epilog=f"commands:\n{listing}\n\n`jmlr <command> --help` lists a command's flags; each is spelled with "
        "underscores or dashes (--num_candidates, --num-candidates).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jmlr {package_version()}")
    parser.add_argument("--debug", action="store_true", help=f"Print tracebacks (or set {DEBUG_ENV}=1)")
    parser.add_argument("--verbose", action="store_true", help="Show library log lines hidden by default")
    parser.add_argument("command", choices=list(COMMANDS), metavar="command", help=", ".join(COMMANDS))
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="The command's own flags")
    return parser


def parse_command(argv: Sequence[str]) -> tuple[str, Command, Any, ConsoleArguments]:
    """Parse a full `jmlr` command line (without the program name) into `(prog, command, arguments, console)`.

    `arguments` is the subcommand's dataclass ([`jmlr_hf.cli.arguments`]); for `train` it is the raw argument list,
    which TRL's parser reads. Parsing imports no ML library: a subcommand's parser is transformers' `HfArgumentParser`
    loaded from its own file when transformers is not loaded yet ([`jmlr_hf.cli.parser`]).
    """
    top = build_top_parser().parse_args(list(argv))
    console = ConsoleArguments(debug=top.debug, verbose=top.verbose)
    name, rest, prog = top.command, top.arguments, f"jmlr {top.command}"
    command = COMMANDS[name]
    if name == "train":
        return prog, command, train_arguments(prog, rest), console
    if name == "push":
        chooser = OneLineErrorParser(prog=prog, description=command.help)
        chooser.add_argument(
            "target", choices=list(PUSH_TARGETS), help="; ".join(f"{k}: {c.help}" for k, c in PUSH_TARGETS.items())
        )
        chooser.add_argument("arguments", nargs=argparse.REMAINDER, help="The target's own flags")
        chosen = chooser.parse_args(rest)
        command, rest, prog = PUSH_TARGETS[chosen.target], chosen.arguments, f"{prog} {chosen.target}"
    from .parser import parse_subcommand

    arguments, own = parse_subcommand(prog, command.help, command.arguments, rest)
    console = ConsoleArguments(debug=console.debug or own.debug, verbose=console.verbose or own.verbose)
    return prog, command, arguments, console


def train_arguments(prog: str, rest: list[str]) -> list[str]:
    """`jmlr train`'s flags, for TRL's parser. `--help` prints the recipe's own flags and the common trainer flags
    without loading transformers or TRL (a fraction of a second, against ~10 s for the full list of
    `TrainingArguments`); `--help-all` asks TRL's parser for every flag."""
    every = {"--help-all", "--help_all"}
    if {"-h", "--help"} & set(rest) and not every & set(rest):
        from ..scripts.arguments import short_help

        print(short_help(prog))
        raise SystemExit(0)
    return ["--help" if argument in every else argument for argument in rest]


def configure_console(verbose: bool) -> None:
    """Keep library log lines off the console unless `verbose`.

    Hidden by default: faiss's INFO lines ("Loading faiss with AVX2 support", which any `logging.basicConfig(INFO)`,
    such as the training script's, lets through) and transformers' warnings (the attention-implementation notices of
    every model load). Set on the loggers themselves, so that a later `basicConfig` does not bring them back, and
    without a root handler, so that the training script keeps its own INFO lines. `--verbose` shows both, and INFO
    lines of every library.

    The libraries' progress bars are hidden too unless `--verbose` ("Loading weights" at every model load, datasets'
    "Creating json from Arrow format" and "Saving the dataset", downloads): the commands' own bars (encoding
    documents, ranking candidates, answering, training steps) stay. An explicit `HF_HUB_DISABLE_PROGRESS_BARS` or
    `HF_DATASETS_DISABLE_PROGRESS_BARS` in the environment wins.
    """
    level = logging.INFO if verbose else logging.WARNING
    logging.getLogger("faiss").setLevel(level)
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # transformers reads the variable when it configures its logger; if it is already imported, set it directly.
    os.environ["TRANSFORMERS_VERBOSITY"] = "warning" if verbose else "error"
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity(logging.WARNING if verbose else logging.ERROR)
    if not verbose:
        # Read when huggingface_hub (whose setting transformers' bars follow) and datasets are imported.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        if "transformers" in sys.modules:
            transformers_logging.disable_progress_bar()
        if "datasets" in sys.modules:
            from datasets.utils.logging import disable_progress_bar

            disable_progress_bar()


def error_line(prog: str, error: BaseException) -> str:
    """One line for the console: `jmlr evaluate: error: <what went wrong>`, a message of several lines joined.

    A `SystemExit` with a message is the commands' own wording for a usage mistake; any other exception is named by
    its type, which (e.g. `FileNotFoundError`, `DataFormatError`, `HubError`) says where to look.
    """
    message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    if not isinstance(error, SystemExit):
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return f"{prog}: error: {message} (--debug or {DEBUG_ENV}=1 for the traceback)"


def run(prog: str, command: Command, arguments: Any) -> None:
    """Run one parsed command (its runner in [`jmlr_hf.cli.commands`], imported now)."""
    commands = import_module(".commands", __name__)
    if command is COMMANDS["train"]:
        commands.run_train(arguments)
    else:
        getattr(commands, command.runner)(arguments)


def main(argv: Sequence[str] | None = None) -> None:
    """The `jmlr` entry point.

    With `argv=None` (the console script) it reads `sys.argv`, keeps library log lines off the console
    ([`configure_console`]), and an error becomes one line on stderr and exit status 1 (`--debug` / `JMLR_DEBUG=1`:
    the traceback). With an explicit `argv` (from Python) errors propagate as exceptions, since a caller can do more
    with the exception than with an exit status, and the process's logging is left as the caller set it.
    """
    on_console = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    if not on_console:
        # A Python caller owns its process's logging: the console's quiet defaults are not imposed on it.
        prog, command, arguments, _ = parse_command(argv)
        run(prog, command, arguments)
        return
    prog = f"jmlr {argv[0]}" if argv and argv[0] in COMMANDS else "jmlr"
    console: ConsoleArguments | None = None
    try:
        prog, command, arguments, console = parse_command(argv)
        configure_console(console.verbose)
        run(prog, command, arguments)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit as exit:
        if exit.code is None or isinstance(exit.code, int) or wants_traceback(console, argv):
            raise  # argparse (status 2 after its usage line), an explicit status, or --debug
        print(error_line(prog, exit), file=sys.stderr)
        sys.exit(EXIT_ERROR)
    except Exception as error:
        if wants_traceback(console, argv):
            raise
        print(error_line(prog, error), file=sys.stderr)
        sys.exit(EXIT_ERROR)


def wants_traceback(console: ConsoleArguments | None, argv: Sequence[str]) -> bool:
    """`--debug` (parsed; or, for an error while parsing, present on the line) or `JMLR_DEBUG=1`."""
    debug = console.debug if console is not None else "--debug" in argv
    return debug or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")


__all__ = [
    "configure_console",
    "limit_questions",
    "load_questions",
    "main",
    "parse_command",
    "resolve_evaluation_split",
]
