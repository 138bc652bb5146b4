"""Publishing to the Hugging Face Hub (and pulling whole repositories): JMLR models, their document indices, data sets.

Every push stages the complete set of files in a local folder first and then uploads it as ONE commit
(`HfApi.upload_folder`). A failure at any point — a network error while LFS files upload, a rejected token, a
missing repository — therefore leaves the repository exactly as it was, and running the same push again is safe.
A model push then makes a second commit that changes only README.md: its snippets pin `revision=` to the first
commit, whose sha did not exist before (a failure there leaves a published model whose card says `"main"`).
Pushing over an existing repository adds a commit; files that are not part of the upload stay unless
`delete_patterns` asks otherwise.

* a model repository holds the remote code (`configuration_jmlr.py`, `modeling_jmlr.py`, `auto_map` in the config),
  the generator (merged full weights, or a LoRA adapter in `generator_adapter/` plus the base model's id), the
  retriever, both tokenizers (the retriever's in `retriever_tokenizer/`) and a model card;
* an index is a data set repository (`index.faiss`, `documents.arrow`, `index_config.json`, a card); the model's
  config records its id and commit (`index_repo_id`, `index_revision`), so that one model id gives both;
* a data set repository holds `data/<split>-00000-of-00001.parquet` and a data set card (see
  `jmlr_hf.data.medqa_reason`).

Loading goes the other way and needs nothing of this module: a model by `JMLRForCausalLM.from_pretrained` (or
`jmlr_hf.models.load_jmlr_checkpoint` with its tokenizers), an index by `jmlr_hf.retrieval.load_index`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from httpx2 import HTTPError  # the HTTP client of huggingface_hub 2.x; network errors derive from it
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from ..models.retrieval_jmlr import index_file_names, is_local_path
from ..models.utils import (
    GeneratorWeights,
    adapter_base_model,
    has_generator_adapter,
    load_jmlr_checkpoint,
    save_model,
)
from ..retrieval.index import CONFIG_FILE, INDEX_REPO_TYPE, DocumentIndex
from ..utils.atomic import atomic_directory
from .model_card import eval_results_from_evaluation, render_index_card, render_model_card, weights_digest

logger = logging.getLogger(__name__)


class HubError(RuntimeError):
    """A push or pull failed; the message says why and what state it left (a push never half-publishes)."""


@dataclass
class PushResult:
    """Where a push went: the repository, the commit it made, and (for a model) the index it records."""

    repo_id: str
    repo_type: str
    commit: str
    url: str
    index_repo_id: str | None = None
    index_revision: str | None = None


_PUSH_CONSEQUENCE = "Nothing was published (a push is one commit); retrying is safe."


def _hub_failure(err: BaseException | None) -> BaseException | None:
    """The HTTP or network error behind `err`, if any (huggingface_hub wraps a failed LFS upload in a RuntimeError)."""
    while err is not None:
        if isinstance(err, (HTTPError, OSError)):
            return err
        err = err.__cause__
    return None


def _why(err: BaseException) -> str:
    if isinstance(err, RepositoryNotFoundError):
        return "the repository does not exist or your token cannot see it"
    if isinstance(err, RevisionNotFoundError):
        return "no such branch or revision"
    status = err.response.status_code if isinstance(err, HfHubHTTPError) and err.response is not None else None
    if status in (401, 403):
        return f"the Hub refused it (HTTP {status}): the token was rejected or has no write access (set HF_TOKEN)"
    return f"{type(err).__name__}: {err}".strip()


@contextmanager
def _explained(action: str, repo_id: str, consequence: str = _PUSH_CONSEQUENCE) -> Iterator[None]:
    """Turn Hub and network errors into one message that says what failed, why, and what state it left."""
    try:
        yield
    except Exception as err:
        cause = _hub_failure(err)
        if cause is None:
            raise
        raise HubError(f"{action} {repo_id} failed: {_why(cause)}. {consequence}") from err


def _upload(
    folder: Path,
    repo_id: str,
    repo_type: str,
    *,
    private: bool,
    revision: str | None,
    commit_message: str,
    delete_patterns: Sequence[str] | None,
    token: str | None,
) -> PushResult:
    api = HfApi(token=token)
    with _explained("Pushing to", repo_id):
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if revision not in (None, "main"):
            api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            repo_type=repo_type,
            folder_path=folder,
            revision=revision,
            commit_message=commit_message,
            delete_patterns=list(delete_patterns) if delete_patterns else None,
        )
    logger.info("Pushed %s to %s (commit %s)", folder, info.commit_url, info.oid)
    return PushResult(repo_id=repo_id, repo_type=repo_type, commit=info.oid, url=info.commit_url)


# --------------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------------


def push_model(
    model: str | os.PathLike[str] | Any,
    repo_id: str,
    *,
    tokenizer=None,
    retriever_tokenizer=None,
    generator_weights: GeneratorWeights = "merged",
    base_model: str | None = None,
    base_revision: str | None = None,
    index: str | os.PathLike[str] | None = None,
    index_repo_id: str | None = None,
    index_revision: str | None = None,
    push_index_from_config: bool = True,
    allow_stale_index: bool = False,
    eval_results: Sequence[Any] = (),
    datasets: Sequence[str] = (),
    license: str = "apache-2.0",
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    delete_patterns: Sequence[str] | None = None,
    token: str | None = None,
) -> PushResult:
    """Publish a JMLR model (a saved folder, or a model with its two tokenizers) to `repo_id` in one commit.

    Args:
        generator_weights: `"merged"` (full weights) or `"adapter"` (LoRA adapter + `base_model` reference).
        base_model: the Hub id of the base generator, for `"adapter"` (required when the adapter records a local
            folder, which nobody else could load).
        index: a local index folder to publish as its own repository (`index_repo_id`, default `<repo_id>-index`)
            before the model; or a Hub id of an index already published. The model's config records the index's
            repository and commit. By default the index the config already records is used: a local folder is
            published, a Hub id is kept (`push_index_from_config=False` drops a local one instead).
        allow_stale_index: publish a local index built by other retriever weights than the model's (its search
            would not match what the model's retriever ranks first). By default such a push is refused before
            anything is uploaded.
        eval_results: `jmlr evaluate` result files/dicts or `EvalResult`s for the card's `model-index`. A result
            of `jmlr evaluate` must be of this model: it records the evaluated model's weights digest (or, in older
            files, its path), which must match; a result that measured another model is refused.
        delete_patterns: files of the repository to delete in the same commit (default: none).
    """
    from huggingface_hub import EvalResult

    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
    if source is not None:
        model, tokenizer, retriever_tokenizer = load_jmlr_checkpoint(source)
    if tokenizer is None or retriever_tokenizer is None:
        raise ValueError("push_model needs the model's tokenizer and retriever_tokenizer (or a saved model folder)")
    config = model.config
    if generator_weights == "adapter":
        recorded = adapter_base_model(model, base_model) if has_generator_adapter(model) else base_model
        if recorded is not None and os.path.isdir(recorded):
            raise ValueError(
                f"The adapter's base model is the local folder {recorded}, which Hub users cannot load: pass the "
                "base model's Hub id (base_model=... / --base-model)"
            )
    flat_results: list[EvalResult] = []
    for item in eval_results:
        if not isinstance(item, EvalResult):
            _check_results_belong(item, source, repo_id)
        flat_results.extend([item] if isinstance(item, EvalResult) else eval_results_from_evaluation(item))
    # The training recipe's card names the base generator by its Hub id; the config may know it only by a folder.
    card_base_model = _saved_card_base_model(source)

    index_source = index if index is not None else (config.index_repo_id if push_index_from_config else None)
    pushed_index = None
    if index_source is not None and os.path.isdir(index_source) and not allow_stale_index:
        _check_index_is_current(index_source, model)
    if index_source is not None and os.path.isdir(index_source):
        pushed_index = push_index(
            index_source,
            index_repo_id or f"{repo_id}-index",
            model_repo_id=repo_id,
            private=private,
            token=token,
        )
        config.index_repo_id, config.index_revision = pushed_index.repo_id, pushed_index.commit
    elif index_source is not None:
        config.index_repo_id = str(index_source)
        config.index_revision = index_revision or _current_commit(str(index_source), INDEX_REPO_TYPE, token)
    else:
        config.index_repo_id = config.index_revision = None

    with tempfile.TemporaryDirectory(prefix="jmlr-push-") as staging:
        folder = Path(staging) / "model"
        save_model(
            model,
            tokenizer,
            retriever_tokenizer,
            folder,
            generator_weights=generator_weights,
            base_model=base_model,
            base_revision=base_revision,
        )
        saved_config = type(config).from_pretrained(folder)
        names = {"generator": card_base_model} if card_base_model else {}
        card = render_model_card(
            saved_config, repo_id, eval_results=flat_results, datasets=datasets, license=license, **names
        )
        card.save(folder / "README.md")
        result = _upload(
            folder,
            repo_id,
            "model",
            private=private,
            revision=revision,
            commit_message=commit_message or f"Upload JMLR model ({generator_weights} generator weights)",
            delete_patterns=delete_patterns,
            token=token,
        )
        pinned = render_model_card(
            saved_config,
            repo_id,
            eval_results=flat_results,
            datasets=datasets,
            license=license,
            revision=result.commit,
            **names,
        )
        _pin_card(pinned, repo_id, revision=revision, token=token)
    result.index_repo_id, result.index_revision = config.index_repo_id, config.index_revision
    return result


def _saved_card_base_model(source: str | None) -> str | None:
    """The first `base_model` of the card saved in the model folder `source` (the training recipe writes one with
    the generator's Hub id), if there is one and it is a Hub id."""
    card_path = Path(source) / "README.md" if source is not None else None
    if card_path is None or not card_path.is_file():
        return None
    from huggingface_hub import ModelCard

    try:
        base = ModelCard.load(card_path).data.base_model
    except Exception:  # noqa: BLE001 - a hand-edited card that does not parse: nothing to take from it
        return None
    base = base[0] if isinstance(base, list) and base else base
    return base if isinstance(base, str) and base and not is_local_path(base) else None


def _check_results_belong(result: Any, source: str | None, repo_id: str) -> None:
    """Refuse a `jmlr evaluate` result (a file or its dict) that measured another model than the one pushed.

    The result records the evaluated model's weights digest (`settings.model_sha256`): it must equal the pushed
    folder's. A result without one (older files) names the model (`settings.model`): a folder must be the pushed
    folder, a Hub id the repository pushed to. A result that names no model cannot be checked and is refused too.
    """
    where = os.fspath(result) if isinstance(result, (str, os.PathLike)) else "an evaluation result"
    if isinstance(result, (str, os.PathLike)):
        with open(result, encoding="utf-8") as f:
            result = json.load(f)
    settings = result.get("settings", {}) if isinstance(result, dict) else {}
    measured, digest = settings.get("model"), settings.get("model_sha256")
    if digest is not None and source is not None:
        if digest == weights_digest(source):
            return
        raise ValueError(
            f"--eval_results {where} measured another model ({measured}: its weights differ from {source}'s): "
            "evaluate this model (jmlr evaluate --model <this folder> --output ...) and attach that file"
        )
    if measured is None:
        raise ValueError(
            f"--eval_results {where} does not say which model it measured (settings.model): attach the --output "
            "of `jmlr evaluate --model <this folder>`"
        )
    same_folder = (
        source is not None and is_local_path(measured) and os.path.realpath(measured) == os.path.realpath(source)
    )
    if not (same_folder or measured == repo_id):
        raise ValueError(
            f"--eval_results {where} measured {measured}, not the model pushed ({source or repo_id}): attach the "
            "--output of `jmlr evaluate --model <this folder>`"
        )


def _check_index_is_current(index_dir: str, model: Any) -> None:
    """Refuse to publish a local index built by other retriever weights than the model's: users of the model would
    search it with a retriever whose vectors it does not hold (loading it warns, but only once it is published)."""
    from ..retrieval.index import StaleIndexError

    try:
        DocumentIndex.load(index_dir, expected_fingerprint=model.retriever.weights_fingerprint(), on_stale="raise")
    except StaleIndexError:
        raise ValueError(
            f"The index {index_dir} was built by other retriever weights than this model's: its vectors do not "
            "match what the model's retriever encodes. Rebuild it (jmlr index --retriever <this model> --output "
            "...) and pass --index <it>, or pass --allow_stale_index to publish it anyway. Nothing was published."
        ) from None


def _pin_card(card, repo_id: str, *, revision: str | None, token: str | None) -> None:
    """Replace the card of the commit just made with one whose snippets pin `revision=` to that commit.

    `trust_remote_code` runs the repository's code, so the card should load the commit it was published with; its
    sha exists only once the commit does, hence this second commit, which changes README.md alone (the pinned commit
    has the same code and weights). If it fails, the model is published all the same and its card says
    `revision="main"`.
    """
    try:
        with _explained("Pinning the card's revision in", repo_id, "The model itself was published."):
            HfApi(token=token).upload_file(
                path_or_fileobj=str(card).encode("utf-8"),
                path_in_repo="README.md",
                repo_id=repo_id,
                revision=revision,
                commit_message="Model card: pin revision= to the commit of the upload",
            )
    except HubError as err:
        logger.warning("%s", err)


def _current_commit(repo_id: str, repo_type: str, token: str | None) -> str:
    with _explained("Reading", repo_id, "Nothing was published."):
        return HfApi(token=token).repo_info(repo_id, repo_type=repo_type).sha


# --------------------------------------------------------------------------------------------------------------------
# Indices
# --------------------------------------------------------------------------------------------------------------------


def push_index(
    index_dir: str | os.PathLike[str],
    repo_id: str,
    *,
    model_repo_id: str | None = None,
    license: str | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    delete_patterns: Sequence[str] | None = None,
    token: str | None = None,
) -> PushResult:
    """Publish a saved `DocumentIndex` folder as a data set repository, in one commit, with its card.

    The folder is loaded first (checksums verified), so a corrupt index is never published. Its files are
    published as they are: a folder of index format 1 (`documents.parquet`) stays format 1 on the Hub; load and
    `save` it first to publish format 2 (`documents.arrow`, which opens without reading the text).
    """
    index = DocumentIndex.load(index_dir)
    format_version = json.loads((Path(index_dir) / CONFIG_FILE).read_text(encoding="utf-8"))["format_version"]
    names = index_file_names(format_version)  # checked by the load
    with tempfile.TemporaryDirectory(prefix="jmlr-push-") as staging:
        folder = Path(staging)
        for name in names:
            shutil.copy2(Path(index_dir) / name, folder / name)
        card = render_index_card(index, repo_id, model_repo_id=model_repo_id, license=license, documents_file=names[1])
        card.save(folder / "README.md")
        return _upload(
            folder,
            repo_id,
            INDEX_REPO_TYPE,
            private=private,
            revision=revision,
            commit_message=commit_message or f"Upload JMLR document index ({len(index)} documents)",
            delete_patterns=delete_patterns,
            token=token,
        )


# --------------------------------------------------------------------------------------------------------------------
# Data sets and downloads
# --------------------------------------------------------------------------------------------------------------------


def push_dataset_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    delete_patterns: Sequence[str] | None = None,
    token: str | None = None,
) -> PushResult:
    """Publish a data set folder in the Hub layout (`data/*.parquet` + `README.md`) as one commit."""
    folder = Path(folder)
    if not (folder / "README.md").exists() or not any((folder / "data").glob("*.parquet")):
        raise ValueError(f"{folder} is not a data set folder: it needs README.md and data/*.parquet")
    return _upload(
        folder,
        repo_id,
        "dataset",
        private=private,
        revision=revision,
        commit_message=commit_message or "Upload data set",
        delete_patterns=delete_patterns,
        token=token,
    )


def pull(
    repo_id: str,
    local_dir: str | os.PathLike[str],
    *,
    repo_type: Literal["model", "dataset"] = "model",
    revision: str | None = None,
    token: str | None = None,
) -> Path:
    """Download a repository into `local_dir`, crash-safely (an interrupted pull leaves no partial folder)."""
    consequence = f"{local_dir} was left as it was."
    with _explained("Pulling", repo_id, consequence), atomic_directory(local_dir) as tmp:
        snapshot_download(repo_id, repo_type=repo_type, revision=revision, local_dir=tmp, token=token)
        shutil.rmtree(Path(tmp) / ".cache", ignore_errors=True)  # download bookkeeping, not repository content
    return Path(local_dir)


__all__ = [
    "HubError",
    "PushResult",
    "pull",
    "push_dataset_folder",
    "push_index",
    "push_model",
]
