"""`jmlr push model` publishes what it claims (issue 26): a card without the author's local paths that keeps the
generator's `base_model`, evaluation results of this model only (named after the data set as it was read), and no
index built by other retriever weights unless asked. Through the real entry point, against the stand-in Hub."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from jmlr_hf import JMLRConfig
from jmlr_hf.cli import main as jmlr
from jmlr_hf.hub import render_model_card
from jmlr_hf.models import save_model
from jmlr_hf.retrieval import DocumentIndex
from jmlr_hf.utils.demo_models import SMOLLM2_ALIAS, cache_dir, minilm_path
from tests.testing_utils.models import RECIPE_CORPUS

pytestmark = pytest.mark.usefixtures("single_thread")

MEDQA = str(Path(__file__).resolve().parents[1] / "fixtures" / "medqa_tiny.jsonl")
CORPUS = [{"id": f"d{i}", "text": text} for i, text in enumerate(RECIPE_CORPUS)]


def unique(name: str) -> str:
    return f"jmlr-test/{name}-{uuid.uuid4().hex[:8]}"


def saved(model, generator_tokenizer, retriever_tokenizer, folder: Path, index_dir: Path | None = None) -> Path:
    """`model` saved to `folder`, its config recording `index_dir` (if given), as the training recipe leaves it."""
    if index_dir is not None:
        model.config.index_repo_id = str(index_dir)
    return save_model(model, generator_tokenizer, retriever_tokenizer, folder)


def build_index(model, retriever_tokenizer, folder: Path) -> Path:
    DocumentIndex.from_retriever(CORPUS, model.retriever, retriever_tokenizer, max_length=32).save(folder)
    return folder


# ------------------------------------------------------------------------------ item 4: the pushed card


def test_the_pushed_card_names_hub_ids_not_local_folders_and_keeps_base_model(
    hub, tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """After training from the packaged models, the config knows the generator by its converted folder in the
    user's cache and the retriever by its folder in site-packages; the pushed card used to show both paths and to
    drop the training card's `base_model`. A generator known only by a local folder keeps the training card's
    `base_model`."""
    model = make_tiny_model()
    model.config.generator._name_or_path = str(cache_dir() / SMOLLM2_ALIAS)
    model.config.retriever._name_or_path = str(minilm_path())
    folder = saved(model, generator_tokenizer, retriever_tokenizer, tmp_path / "packaged")
    repo_id = unique("card-packaged")
    jmlr(["push", "model", str(folder), "--repo_id", repo_id, "--no_index"])
    card = ModelCard.load(repo_id)
    assert card.data.base_model == ["HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert "sentence-transformers/all-MiniLM-L6-v2" in card.text
    for leak in (str(cache_dir()), str(minilm_path()), "site-packages", str(Path.home())):
        assert leak not in card.text, leak

    model = make_tiny_model()
    model.config.generator._name_or_path = str(tmp_path / "my-llm")
    folder = saved(model, generator_tokenizer, retriever_tokenizer, tmp_path / "own")
    training_card = render_model_card(JMLRConfig.from_pretrained(folder), str(folder), generator="org/my-llm")
    training_card.save(folder / "README.md")
    repo_id = unique("card-own")
    jmlr(["push", "model", str(folder), "--repo_id", repo_id, "--no_index"])
    card = ModelCard.load(repo_id)
    assert card.data.base_model == ["org/my-llm"] and str(tmp_path) not in card.text


# ------------------------------------------------------------------------------ item 5: --eval_results


def test_eval_results_of_another_model_are_refused_and_the_data_set_is_named_as_given(
    hub, tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """Each result comes from the real `jmlr evaluate`: the pushed model's is attached, with the data set named as
    it was read (a local MedQA file, not `GBaker/MedQA-USMLE-4-options` split `all`); another model's is refused
    before anything is published."""
    this = saved(make_tiny_model(0), generator_tokenizer, retriever_tokenizer, tmp_path / "this")
    other = saved(make_tiny_model(1), generator_tokenizer, retriever_tokenizer, tmp_path / "other")
    for name, folder in (("this", this), ("other", other)):
        jmlr(
            ["evaluate", "--model", str(folder), "--task", "medqa", "--questions", MEDQA, "--closed_book"]
            + ["--mode", "likelihood", "--output", str(tmp_path / f"{name}.json")]
        )

    repo_id = unique("results-other")
    with pytest.raises(ValueError, match="measured another model"):
        jmlr(
            [
                "push",
                "model",
                str(this),
                "--repo_id",
                repo_id,
                "--no_index",
                "--eval_results",
                str(tmp_path / "other.json"),
            ]
        )
    assert not hub.repo_exists(repo_id)

    repo_id = unique("results-this")
    jmlr(
        ["push", "model", str(this), "--repo_id", repo_id, "--no_index", "--eval_results", str(tmp_path / "this.json")]
    )
    results = ModelCard.load(repo_id).data.eval_results
    assert results and {(r.dataset_type, r.dataset_name, r.dataset_split) for r in results} == {
        ("medqa_tiny.jsonl", "MedQA (USMLE) (medqa_tiny.jsonl)", None)
    }

    moved = json.loads((tmp_path / "this.json").read_text())
    del moved["settings"]["model_sha256"]  # a file without the digest is checked by the model it names
    moved["settings"]["model"] = str(other)
    (tmp_path / "named.json").write_text(json.dumps(moved))
    with pytest.raises(ValueError, match="not the model pushed"):
        jmlr(
            [
                "push",
                "model",
                str(this),
                "--repo_id",
                unique("named"),
                "--no_index",
                "--eval_results",
                str(tmp_path / "named.json"),
            ]
        )


# ------------------------------------------------------------------------------ item 6: a stale index


def test_an_index_of_other_retriever_weights_is_not_published_unless_asked(
    hub, tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """The model's config records an index built by another retriever: the push used to publish it without a word
    (loading it warned only afterwards). It is refused before anything is uploaded; `--allow_stale_index` publishes
    it."""
    stale = build_index(make_tiny_model(1), retriever_tokenizer, tmp_path / "index")
    folder = saved(make_tiny_model(0), generator_tokenizer, retriever_tokenizer, tmp_path / "model", stale)
    repo_id = unique("stale")
    with pytest.raises(ValueError, match="--allow_stale_index"):
        jmlr(["push", "model", str(folder), "--repo_id", repo_id])
    assert not hub.repo_exists(repo_id) and not hub.repo_exists(f"{repo_id}-index", repo_type="dataset")

    jmlr(["push", "model", str(folder), "--repo_id", repo_id, "--allow_stale_index"])
    assert hub.repo_exists(repo_id) and hub.repo_exists(f"{repo_id}-index", repo_type="dataset")

    current = build_index(make_tiny_model(0), retriever_tokenizer, tmp_path / "current")
    repo_id = unique("current")
    jmlr(["push", "model", str(folder), "--repo_id", repo_id, "--index", str(current)])  # its own index: no flag
    assert hub.repo_exists(f"{repo_id}-index", repo_type="dataset")
