"""Checks that need no model: run by `jmlr index` and the training recipe before anything loads, so that a typo in a
task name, a missing corpus file or a `--report_to` whose package is not installed costs a second, not minutes of
loading and encoding (and leaves no half-built index behind).

Each check raises an error whose message is the whole story (the `jmlr` console prints it as one line); none of
them imports torch, transformers or a model. The data package (which imports `datasets`) is imported only by the
checks that need its file names.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

#: File endings that make a name a local file rather than a Hub data set id (as the data loaders decide).
FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".gz", ".parquet", ".txt")

#: `--report_to` integrations and the package each needs (the names transformers accepts).
REPORTING_PACKAGES: dict[str, str] = {
    "azure_ml": "azureml-core",
    "clearml": "clearml",
    "codecarbon": "codecarbon",
    "comet_ml": "comet_ml",
    "dagshub": "dagshub",
    "dvclive": "dvclive",
    "flyte": "flytekit",
    "kubeflow": "kubeflow",
    "mlflow": "mlflow",
    "neptune": "neptune",
    "swanlab": "swanlab",
    "tensorboard": "tensorboard",
    "trackio": "trackio",
    "wandb": "wandb",
}

#: The file, beside an index, that lists the saved models whose config records that index ([`record_index_user`]).
INDEX_USERS_FILE = "saved_models.json"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`" (did you mean 'x'?)"` for the closest of `choices` to `word` (case and `-`/`_` ignored), else `""`."""

    def key(text: str) -> str:
        return text.lower().replace("-", "_")

    by_key = {key(choice): choice for choice in choices}
    close = difflib.get_close_matches(key(word), list(by_key), n=1, cutoff=0.6)
    return f" (did you mean {by_key[close[0]]!r}?)" if close else ""


def check_choice(flag: str, value: str, choices: Sequence[str]) -> None:
    """`ValueError` naming the choices (and the closest one) when `value` is not one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"{flag}: invalid choice {value!r}{did_you_mean(value, choices)}; choose from {', '.join(choices)}"
        )


def looks_local(name: str) -> bool:
    """Whether `name` names a local file or folder, not a Hub id: it exists, or is spelled as a path (absolute, `.`,
    `~`, more than one `/`, a backslash), or ends like a data file (`.jsonl`, `.json.gz`, ...), which no Hub data set
    id does."""
    if os.path.exists(name) or name.startswith((".", "~")) or os.path.isabs(name):
        return True
    return name.count("/") > 1 or "\\" in name or name.lower().endswith(FILE_SUFFIXES)


def check_input_file(flag: str, name: str | None) -> None:
    """`FileNotFoundError` when `name` (a file or a Hub id) is a local file that does not exist."""
    if name is not None and looks_local(name) and not os.path.exists(os.path.expanduser(name)):
        raise FileNotFoundError(f"{flag}: {name} does not exist (it is not a Hub data set id either)")


def data_dir_or_default(data_dir: str | None) -> str:
    """`data_dir`, or the shared data folder the loaders default to."""
    if data_dir is not None:
        return data_dir
    from ..data import default_data_dir

    return str(default_data_dir())


def check_corpus(corpus: str, data_dir: str | None, distractor_passages: int = 0) -> None:
    """The corpus is there: the bundled file of a named corpus (`pubmedqa`, `medquad`) in `data_dir`, the MedQuAD file
    when distractors are asked for, or the local corpus file named. A Hub id is left to the loader."""
    from ..data.corpus import MEDQUAD_FILE
    from ..data.qa import PUBMEDQA_FILE

    named = {"pubmedqa": PUBMEDQA_FILE, "medquad": MEDQUAD_FILE}
    needed = [named[corpus]] if corpus in named else []
    if distractor_passages:
        needed.append(MEDQUAD_FILE)
    if needed:
        folder = data_dir_or_default(data_dir)
        for relative in needed:
            path = os.path.join(folder, relative)
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"--corpus {corpus}: {path} does not exist (set --data_dir or $JMLR_DATA_DIR to the shared data "
                    "folder)"
                )
    if corpus not in named:
        check_input_file("--corpus", corpus)


def check_task_files(task: str, data_dir: str | None, files: Mapping[str, str | None]) -> None:
    """The task is known and its questions are there: each local file of `files` (flag → file or Hub id) exists, and
    where one is not given the task's bundled file in `data_dir` does (MedQA and MedQA-Reason bundle none)."""
    from ..data import TASK_FILES, TASKS

    check_choice("--task", task, TASKS)
    for flag, name in files.items():
        check_input_file(flag, name)
    missing = [flag for flag, name in files.items() if name is None]
    if not missing:
        return
    if task not in TASK_FILES:
        raise ValueError(f"--task {task} has no bundled questions: give {' and '.join(missing)}")
    path = os.path.join(data_dir_or_default(data_dir), TASK_FILES[task])
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"--task {task}: {path} does not exist (set --data_dir or $JMLR_DATA_DIR to the shared data folder, or "
            f"give {' and '.join(missing)})"
        )


def check_report_to(report_to: Iterable[str] | str | None) -> None:
    """Every `--report_to` integration is known and its package installed (the Trainer would fail on it only when it
    builds its callbacks, after the models loaded and the corpus was encoded)."""
    if report_to is None or report_to in ("none", "all"):
        return
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    import importlib.util

    for name in names:
        if name in ("none", "all"):
            continue
        check_choice("--report_to", name, sorted(REPORTING_PACKAGES))
        package = REPORTING_PACKAGES[name]
        module = {"azureml-core": "azureml", "flytekit": "flytekit"}.get(package, package)
        if importlib.util.find_spec(module) is None:
            raise ValueError(
                f"--report_to {name} needs the {package} package, which is not installed: pip install {package} "
                "(or drop the flag)"
            )


def check_accelerate_device(use_cpu: bool, cuda_available: bool, environ: dict[str, str] | None = None) -> None:
    """Under `accelerate launch` with a GPU configuration (its `use_cpu: false` with `gpu_ids` or bf16/fp16 mixed
    precision, as `recipes/accelerate_configs/single_gpu.yaml`), refuse to run on CPU: without a GPU, or with
    `--use_cpu true` (demo.yaml sets it), the run would otherwise go on silently on CPU, hours slower.

    `accelerate launch` passes its configuration on in the environment: `ACCELERATE_USE_CPU` (`False` unless the
    config or `--cpu` says CPU), `CUDA_VISIBLE_DEVICES` (from `gpu_ids`) and `ACCELERATE_MIXED_PRECISION`.
    """
    env = os.environ if environ is None else environ
    if env.get("ACCELERATE_USE_CPU", "").lower() != "false":
        return  # not under `accelerate launch`, or launched for CPU
    gpu_ids = env.get("CUDA_VISIBLE_DEVICES", "")
    precision = env.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if not (gpu_ids or precision in ("bf16", "fp16")):
        return  # `accelerate launch --multi_gpu` on CPU (gloo), as the test suite runs it
    asked = f"gpu_ids {gpu_ids!r}" if gpu_ids else f"mixed_precision {precision}"
    if not cuda_available:
        raise RuntimeError(
            f"accelerate launch was given a GPU configuration (use_cpu: false, {asked}) but no GPU is visible: on "
            "this machine use --config_file recipes/accelerate_configs/cpu.yaml (or plain python recipes/train.py)"
        )
    if use_cpu:
        raise RuntimeError(
            f"accelerate launch was given a GPU configuration (use_cpu: false, {asked}) but the recipe says --use_cpu "
            "true (recipes/demo.yaml sets it): pass --use_cpu false to train on the GPU, or launch with "
            "recipes/accelerate_configs/cpu.yaml"
        )


def index_users(index_dir: str | os.PathLike[str]) -> list[str]:
    """The saved model folders that record `index_dir` as their index and still exist (from its
    [`INDEX_USERS_FILE`], written by [`record_index_user`]); an index without one has no recorded user."""
    path = Path(index_dir) / INDEX_USERS_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    target = os.path.realpath(index_dir)
    users = []
    for folder in recorded if isinstance(recorded, list) else []:
        try:
            config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # the model was deleted (or is not readable): it no longer holds on to the index
        index = config.get("index_repo_id")
        if isinstance(index, str) and os.path.realpath(os.path.join(folder, index)) == target:
            users.append(os.path.realpath(folder))
    return users


def record_index_user(index_dir: str | os.PathLike[str], model_dir: str | os.PathLike[str]) -> None:
    """Note in `index_dir` that the saved model in `model_dir` records it, so that a later run does not overwrite it
    without saying so ([`check_index_overwrite`])."""
    users = set(index_users(index_dir)) | {os.path.realpath(model_dir)}
    path = Path(index_dir) / INDEX_USERS_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(sorted(users), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def check_index_overwrite(index_dir: str, own_model_dir: str, overwrite: bool) -> list[str]:
    """Refuse to run where the run would rebuild the index in `index_dir` while another saved model records it as
    its own (that model's index would silently become stale); `overwrite=True` allows it and returns those models,
    for a warning. The run's own final folder (`own_model_dir`), which it replaces anyway, does not count."""
    own = os.path.realpath(own_model_dir)
    others = [folder for folder in index_users(index_dir) if folder != own]
    if others and not overwrite:
        raise FileExistsError(
            f"--index_dir {index_dir} holds the index of the saved model {others[0]}"
            + (f" (and {len(others) - 1} more)" if len(others) > 1 else "")
            + ", whose config records it: this run would rebuild it with other retriever weights. Give this run its "
            "own --index_dir (the default is <output_dir>/index), or pass --overwrite_index true to rebuild it anyway"
        )
    return others


__all__ = [
    "INDEX_USERS_FILE",
    "check_accelerate_device",
    "check_choice",
    "check_corpus",
    "check_index_overwrite",
    "check_input_file",
    "check_report_to",
    "check_task_files",
    "did_you_mean",
    "index_users",
    "record_index_user",
]
