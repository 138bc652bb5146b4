"""Round trips through the (stand-in) Hub: models with remote code, indices, data sets, cards, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, load_dataset
from huggingface_hub import DatasetCard, HfApi, ModelCard
from peft import LoraConfig
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from jmlr_hf import JMLRForCausalLM
from jmlr_hf.cli import main as jmlr
from jmlr_hf.data import DataFormatError, load_corpus, load_medmcqa, load_task
from jmlr_hf.hub import HubError, push_index, push_model
from jmlr_hf.models import apply_peft_to_generator, save_model
from jmlr_hf.models.retrieval_jmlr import DOCUMENTS_FILE, INDEX_FILE, PARQUET_DOCUMENTS_FILE
from jmlr_hf.retrieval import DocumentIndex, StaleIndexWarning, encode_queries_with, load_index
from tests.testing_utils.index_formats import as_format_1
from tests.testing_utils.models import TOY_ROWS
from tests.testing_utils.training import make_args, make_trainer

pytestmark = pytest.mark.usefixtures("single_thread")

DOCUMENTS = [
    {"id": f"d{i}", "title": "", "text": text}
    for i, text in enumerate(dict.fromkeys(c for row in TOY_ROWS for c in row["candidates"]))
]
QUERIES = ["Which organ makes insulin?", "Does aspirin prevent heart attacks?"]
IDS = torch.tensor([[1, 5, 9, 13, 17, 2]])


def run_python(body: str) -> dict:
    """Run `body` in a fresh interpreter (same Hub environment) that sets `result`; return `result`."""
    script = "import json, sys, torch\n" + body + "\nprint('RESULT=' + json.dumps(result))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.rsplit("RESULT=", 1)[1])


def unique(name: str) -> str:
    return f"jmlr-test/{name}-{uuid.uuid4().hex[:8]}"


def build_index(model, retriever_tokenizer, directory: Path) -> DocumentIndex:
    index = DocumentIndex.from_retriever(
        Dataset.from_list(DOCUMENTS), model.retriever, retriever_tokenizer, max_length=32, show_progress=False
    )
    index.save(directory)
    return index


def search(index: DocumentIndex, model, retriever_tokenizer) -> list[list[tuple[str, float]]]:
    hits = index.retrieve(
        QUERIES, encode_queries_with(model.retriever, retriever_tokenizer, 32), 3, show_progress=False
    )
    return [[(hit["id"], round(hit["score"], 5)) for hit in row] for row in hits]


def scores(model, retriever_tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return model.score_documents(QUERIES, [[d["text"] for d in DOCUMENTS]] * 2, retriever_tokenizer)


@pytest.fixture
def trained_dir(tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer) -> Path:
    """A saved tiny JMLR model whose config records a local index, as the training recipe leaves it."""
    model = make_tiny_model(seed=3).eval()
    build_index(model, retriever_tokenizer, tmp_path / "index")
    model.config.index_repo_id = str(tmp_path / "index")
    return save_model(model, generator_tokenizer, retriever_tokenizer, tmp_path / "final")


# ---------------------------------------------------------------------------------------------------------- models


def test_push_model_then_auto_model_with_remote_code_gives_identical_logits_scores_and_index(
    hub, fresh_hf_cache, trained_dir, retriever_tokenizer
):
    repo_id = unique("jmlr-tiny")
    local = JMLRForCausalLM.from_pretrained(trained_dir).eval()
    local_index = DocumentIndex.load(trained_dir.parent / "index")

    result = push_model(trained_dir, repo_id)

    assert result.index_repo_id == f"{repo_id}-index"
    assert result.index_revision == hub.commits(result.index_repo_id, "dataset")[0][0]
    files = hub.files(repo_id)
    assert {"configuration_jmlr.py", "modeling_jmlr.py", "retrieval_jmlr.py", "model.safetensors", "README.md"} <= set(
        files
    )
    assert "retriever_tokenizer/tokenizer.json" in files and "tokenizer.json" in files
    assert "model.safetensors" in hub.lfs_files(repo_id)
    config = json.loads(files["config.json"])
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_jmlr.JMLRForCausalLM"
    assert (config["index_repo_id"], config["index_revision"]) == (result.index_repo_id, result.index_revision)
    # The repository's initial commit, ONE commit with everything, and the card pinning `revision=` to that one.
    commits = hub.commits(repo_id)
    assert len(commits) == 3 and commits[1][0] == result.commit
    assert f'revision = "{repo_id}", "{result.commit}"' in files["README.md"].decode()

    # Where jmlr_hf is not installed, the pushed remote code is what loads: check that in a clean interpreter.
    remote = run_python(
        f"""
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained({repo_id!r}, trust_remote_code=True).eval()
module = type(model).__module__
assert "jmlr_hf" not in sys.modules, "the remote code must not need jmlr_hf"
tokenizer = AutoTokenizer.from_pretrained({repo_id!r}, subfolder="retriever_tokenizer")
with torch.no_grad():
    logits = model(input_ids=torch.tensor({IDS.tolist()})).logits
    scores = model.score_documents({QUERIES!r}, [{[d["text"] for d in DOCUMENTS]!r}] * 2, tokenizer)
auto_model = type(AutoModel.from_pretrained({repo_id!r}, trust_remote_code=True)).__name__
from jmlr_hf.retrieval.index import encode_queries_with  # the index (only) needs jmlr_hf and faiss
index = model.load_index()  # one id gives model + index
hits = index.retrieve({QUERIES!r}, encode_queries_with(model.retriever, tokenizer, 32), 3, show_progress=False)
result = dict(module=module, auto_model=auto_model, logits=logits.tolist(), scores=scores.tolist(),
              search=[[(h["id"], round(h["score"], 5)) for h in row] for row in hits])
"""
    )
    assert remote["module"].startswith("transformers_modules")
    assert remote["auto_model"] == "JMLRForCausalLM"
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(remote["logits"]), local(input_ids=IDS).logits)
    torch.testing.assert_close(torch.tensor(remote["scores"]), scores(local, retriever_tokenizer))
    expected = search(local_index, local, retriever_tokenizer)
    assert [[tuple(hit) for hit in row] for row in remote["search"]] == expected

    # In this process jmlr_hf's registered class wins (transformers prefers explicitly registered local code).
    in_process = AutoModelForCausalLM.from_pretrained(repo_id, trust_remote_code=True).eval()
    assert search(in_process.load_index(), in_process, retriever_tokenizer) == expected


def test_push_model_as_base_plus_adapter(
    hub, fresh_hf_cache, tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    base_id = unique("tiny-base")
    model = make_tiny_model(seed=4)
    model.generator.save_pretrained(tmp_path / "base")
    HfApi().create_repo(base_id)
    HfApi().upload_folder(repo_id=base_id, folder_path=tmp_path / "base")
    torch.manual_seed(0)
    apply_peft_to_generator(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=IDS).logits

    with pytest.raises(ValueError, match="local folder"):  # nobody else could load a base that lives on this disk
        push_model(
            model,
            unique("x"),
            tokenizer=generator_tokenizer,
            retriever_tokenizer=retriever_tokenizer,
            generator_weights="adapter",
            base_model=str(tmp_path / "base"),
        )
    repo_id = unique("jmlr-adapter")
    push_model(
        model,
        repo_id,
        tokenizer=generator_tokenizer,
        retriever_tokenizer=retriever_tokenizer,
        generator_weights="adapter",
        base_model=base_id,
    )

    files = hub.files(repo_id)
    assert {"generator_adapter/adapter_config.json", "generator_adapter/adapter_model.safetensors"} <= set(files)
    weights = fresh_hf_cache / "model.safetensors"
    weights.write_bytes(files["model.safetensors"])
    assert all(key.startswith("retriever.") for key in load_file(weights))  # the generator: base + adapter only
    config = json.loads(files["config.json"])
    assert (config["generator_base_model"], config["generator_adapter"]) == (base_id, "generator_adapter")

    remote = AutoModelForCausalLM.from_pretrained(repo_id, trust_remote_code=True)
    with torch.no_grad():
        torch.testing.assert_close(remote(input_ids=IDS).logits, expected)
    assert remote.retriever.weights_fingerprint() == model.retriever.weights_fingerprint()


def test_pushing_again_adds_a_commit_and_keeps_unrelated_files_unless_asked(hub, trained_dir):
    repo_id = unique("jmlr-again")
    HfApi().create_repo(repo_id)
    HfApi().upload_file(path_or_fileobj=b"keep me", path_in_repo="notes.txt", repo_id=repo_id)
    push_model(trained_dir, repo_id, push_index_from_config=False)
    assert hub.files(repo_id)["notes.txt"] == b"keep me"
    assert (
        "index_repo_id" not in json.loads(hub.files(repo_id)["config.json"])
        or json.loads(hub.files(repo_id)["config.json"]).get("index_repo_id") is None
    )
    before = len(hub.commits(repo_id))
    push_model(trained_dir, repo_id, push_index_from_config=False, delete_patterns=["notes.txt"])
    assert len(hub.commits(repo_id)) == before + 2  # the upload, and the card pinned to it
    assert "notes.txt" not in hub.files(repo_id)


@pytest.mark.parametrize(
    ("route", "method", "status"),
    [("/commit/", "POST", 500), ("/commit/", "POST", 0), ("/info/lfs/objects/", "PUT", 403)],
    ids=["commit-500", "commit-connection-dropped", "lfs-upload-403"],
)
def test_a_failed_push_publishes_nothing_and_a_retry_works(hub, trained_dir, route, method, status):
    repo_id = unique("jmlr-fail")
    HfApi().create_repo(repo_id)
    before = hub.commits(repo_id)
    hub.fail_next(route, status=status, times=10, method=method)  # 4xx and the commit route are not retried
    try:
        with pytest.raises(HubError, match="Nothing was published"):
            push_model(trained_dir, repo_id, push_index_from_config=False)
    finally:
        hub.clear_failures()
    assert hub.commits(repo_id) == before
    push_model(trained_dir, repo_id, push_index_from_config=False)
    assert len(hub.commits(repo_id)) == len(before) + 2  # the upload, and the card pinned to it


def test_a_rejected_token_and_a_missing_repo_give_clear_errors(hub, trained_dir, tmp_path):
    with pytest.raises(HubError, match="token was rejected"):
        push_model(trained_dir, unique("jmlr-auth"), push_index_from_config=False, token="hf_not_a_valid_token")
    with pytest.raises(HubError, match="does not exist"):
        jmlr(["pull", "model", unique("missing"), "--output", str(tmp_path / "pulled")])
    assert not (tmp_path / "pulled").exists()
    repo_id = unique("jmlr-no-index")
    with pytest.raises(HubError, match="does not exist"):  # an index id that was never published
        push_model(trained_dir, repo_id, index=unique("no-such-index"))
    assert not hub.repo_exists(repo_id)


def test_cli_push_pull_and_answer_from_one_id(hub, fresh_hf_cache, trained_dir, tmp_path, capsys):
    repo_id = unique("jmlr-cli")
    jmlr(["push", "model", str(trained_dir), "--repo-id", repo_id])
    assert f"Index: {repo_id}-index @ " in capsys.readouterr().out

    jmlr(["answer", "--model", repo_id, "Which organ makes insulin?", "--max-new-tokens", "3"])
    out = capsys.readouterr().out
    assert out.startswith("Answer:") and "Documents used:" in out

    jmlr(["pull", "model", repo_id, "--output", str(tmp_path / "pulled")])
    jmlr(["pull", "index", f"{repo_id}-index", "--output", str(tmp_path / "pulled-index")])
    pulled = JMLRForCausalLM.from_pretrained(tmp_path / "pulled")
    assert pulled.retriever.weights_fingerprint() == DocumentIndex.load(tmp_path / "pulled-index").fingerprint


def test_answer_checks_the_index_fingerprint(tmp_path, trained_dir, make_tiny_model, retriever_tokenizer, capsys):
    """`jmlr answer --index` compares the index's encoder with the model's retriever, as `jmlr evaluate` does."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleIndexWarning)  # its own index: a warning would fail here
        jmlr(["answer", "--model", str(trained_dir), "--index", str(tmp_path / "index"), "Which organ makes insulin?"])
    # The command answers through JMLRForCausalLM.answer: the prompt as in training, the same as the remote code's.
    model = JMLRForCausalLM.from_pretrained(trained_dir).eval()
    reply = model.answer("Which organ makes insulin?", index=str(tmp_path / "index"))
    out = capsys.readouterr().out
    assert out.startswith(f"Answer: {reply.answer}\n") and f"[1] {reply.documents[0]['id']} " in out
    build_index(make_tiny_model(seed=4), retriever_tokenizer, tmp_path / "other-index")
    with pytest.warns(StaleIndexWarning, match="Rebuild the index"):
        jmlr(["answer", "--model", str(trained_dir), "--index", str(tmp_path / "other-index"), "Which organ?"])


# ---------------------------------------------------------------------------------------------------------- indices


def test_push_index_then_load_index_gives_identical_search_results(
    hub, fresh_hf_cache, tmp_path, make_tiny_model, retriever_tokenizer
):
    model = make_tiny_model(seed=5).eval()
    local = build_index(model, retriever_tokenizer, tmp_path / "index")
    repo_id = unique("index")
    result = push_index(tmp_path / "index", repo_id)
    assert {INDEX_FILE, DOCUMENTS_FILE} <= hub.lfs_files(repo_id, "dataset")

    pulled = load_index(repo_id, revision=result.commit, expected_fingerprint=model.retriever.weights_fingerprint())
    assert search(pulled, model, retriever_tokenizer) == search(local, model, retriever_tokenizer)
    assert pulled.documents.to_list() == local.documents.to_list()
    card = DatasetCard.load(repo_id, repo_type="dataset")
    card.validate(repo_type="dataset")
    assert f"{len(DOCUMENTS)} documents" in card.text


def test_an_index_published_in_format_1_still_downloads_and_retrieves(hub, fresh_hf_cache, tmp_path):
    """Indexes published before the memory-mapped store (format 2) hold documents.parquet: they download and load."""

    def encode(texts: list[str]) -> np.ndarray:
        words = ["insulin", "pancreas", "aspirin", "heart", "kidney", "blood"]
        return np.array([[text.lower().count(word) + 1e-3 for word in words] for text in texts], "float32")

    index = DocumentIndex.build(DOCUMENTS, encode, "bow", show_progress=False)
    as_format_1(index.save(tmp_path / "index"))
    repo_id = unique("index-format-1")
    result = push_index(tmp_path / "index", repo_id)
    assert {INDEX_FILE, PARQUET_DOCUMENTS_FILE} <= hub.lfs_files(repo_id, "dataset")
    assert DOCUMENTS_FILE not in hub.files(repo_id, "dataset")

    pulled = load_index(repo_id, revision=result.commit, expected_fingerprint="bow")
    expected = index.retrieve(QUERIES, encode, k=3, show_progress=False)
    assert pulled.retrieve(QUERIES, encode, k=3, show_progress=False) == expected


def test_a_corrupt_index_is_never_published(hub, tmp_path, make_tiny_model, retriever_tokenizer):
    build_index(make_tiny_model(seed=5), retriever_tokenizer, tmp_path / "index")
    with open(tmp_path / "index" / DOCUMENTS_FILE, "ab") as f:
        f.write(b"garbage")
    repo_id = unique("index-corrupt")
    with pytest.raises(Exception, match="sha256|checksum"):
        push_index(tmp_path / "index", repo_id)
    assert not hub.repo_exists(repo_id, "dataset")


# ---------------------------------------------------------------------------------------------------------- data


def write_medmcqa(path: Path, n: int = 30) -> Path:
    rows = [
        {
            "id": f"m{i}",
            "question": f"Question {i}: which vitamin?",
            "opa": "A vitamin",
            "opb": "B vitamin",
            "opc": "C vitamin",
            "opd": "D vitamin",
            "cop": 1 + i % 4,
            "exp": f"Explanation {i}." if i % 5 else None,
            "subject_name": "Biochemistry",
            "topic_name": "Vitamins",
            "choice_type": "single",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_push_dataset_then_load_dataset_and_streaming_give_identical_rows(hub, fresh_hf_cache, tmp_path):
    source = write_medmcqa(tmp_path / "dev.json")
    repo_id = unique("medmcqa-reason")
    jmlr(["push", "dataset", "--source", "medmcqa", "--input", str(source), "--repo-id", repo_id])
    assert len(hub.commits(repo_id, "dataset")) == 2  # initial + one

    from jmlr_hf.data.medqa_reason import build_from_medmcqa

    expected, _ = build_from_medmcqa(str(source))
    loaded = load_dataset(repo_id)
    assert sorted(loaded) == sorted(expected)
    for split in expected:
        assert loaded[split].to_list() == expected[split].to_list()
        streamed = load_dataset(repo_id, split=split, streaming=True)
        assert list(streamed) == expected[split].to_list()
    card = DatasetCard.load(repo_id, repo_type="dataset")
    card.validate(repo_type="dataset")
    assert card.data.license == "mit"
    # ... and the published data set is a task the recipe and `jmlr evaluate` can use directly.
    assert load_task("medqa-reason", "train", path=repo_id).to_list() == expected["train"].to_list()
    with pytest.raises(DataFormatError, match="missing column"):
        load_task("medqa-reason", "train", path=unique_corpus(tmp_path))


MEDRAG = [
    {"id": f"t{i}", "title": f"Title {i}", "content": f"Content {i}.", "contents": f"Title {i}. Content {i}."}
    for i in range(12)
]


def unique_corpus(tmp_path: Path) -> str:
    """A new Hub data set repository holding a corpus in the MedRAG layout (as `MedRAG/textbooks` has it)."""
    corpus_id = unique("medrag-corpus")
    HfApi().create_repo(corpus_id, repo_type="dataset")
    folder = tmp_path / corpus_id.split("/")[1]
    folder.mkdir()
    Dataset.from_list(MEDRAG).to_parquet(folder / "train-00000-of-00001.parquet")
    HfApi().upload_folder(repo_id=corpus_id, repo_type="dataset", folder_path=folder, path_in_repo="data")
    return corpus_id


def test_corpora_and_questions_load_from_hub_ids_including_medrag_layout_streaming(hub, fresh_hf_cache, tmp_path):
    medrag = MEDRAG
    corpus_id = unique_corpus(tmp_path)

    for kwargs in ({}, {"streaming": True}):
        corpus = load_corpus(corpus_id, **kwargs)
        assert corpus["text"] == [row["content"] for row in medrag]  # `content`, not the title-prefixed `contents`
        assert corpus["title"] == [row["title"] for row in medrag]
    assert len(load_corpus(corpus_id, streaming=True, limit=5)) == 5

    questions_id = unique("medmcqa")
    HfApi().create_repo(questions_id, repo_type="dataset")
    HfApi().upload_file(
        path_or_fileobj=write_medmcqa(tmp_path / "dev.json").read_bytes(),
        path_in_repo="questions.jsonl",
        repo_id=questions_id,
        repo_type="dataset",
    )
    assert load_medmcqa(questions_id, streaming=True).to_list() == load_medmcqa(str(tmp_path / "dev.json")).to_list()


# ---------------------------------------------------------------------------------------------------------- cards


def test_model_card_carries_the_evaluation_results_and_validates(hub, trained_dir, tmp_path):
    evaluation = {
        "settings": {"task": "mmlu", "split": "test", "num_questions": 20, "model": str(trained_dir)},
        "metrics": {
            "likelihood": {"accuracy": 0.35, "num_correct": 7, "num_questions": 20},
            "generative": {"accuracy": 0.3, "num_correct": 6, "num_questions": 20, "num_unparseable": 2},
        },
    }
    (tmp_path / "mmlu.json").write_text(json.dumps(evaluation), encoding="utf-8")
    repo_id = unique("jmlr-card")
    jmlr(
        [
            "push",
            "model",
            str(trained_dir),
            "--repo-id",
            repo_id,
            "--no-index",
            "--eval-results",
            str(tmp_path / "mmlu.json"),
        ]
    )

    card = ModelCard.load(repo_id)
    card.validate()
    results = {(r.dataset_name, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert results == {("MMLU-Med", "accuracy (likelihood)"): 0.35, ("MMLU-Med", "accuracy (generative)"): 0.3}
    assert "custom_code" in card.data.tags and card.data.pipeline_tag == "text-generation"
    pinned = hub.commits(repo_id)[1][0]  # the upload's commit; the card's own commit follows it
    assert f'repo_id, revision = "{repo_id}", "{pinned}"' in card.text
    assert "from_pretrained(repo_id, revision=revision, trust_remote_code=True)" in card.text
    assert "No document index is recorded" in card.text and "result = model.answer(" not in card.text  # --no-index
    assert "| MMLU-Med | test | accuracy (likelihood) | 0.35 |" in card.text


# ---------------------------------------------------------------------------------------------------------- trainer


def test_trainer_push_to_hub_every_save(hub, tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer):
    repo_id = unique("jmlr-trainer")
    args = make_args(
        tmp_path,
        max_steps=2,
        save_strategy="steps",
        save_steps=1,
        push_to_hub=True,
        hub_model_id=repo_id,
        hub_strategy="every_save",
    )
    trainer = make_trainer(make_tiny_model(), args, generator_tokenizer, retriever_tokenizer)
    trainer.train()
    trainer.push_to_hub()

    files = hub.files(repo_id)
    assert {"config.json", "model.safetensors", "modeling_jmlr.py", "retriever_tokenizer/tokenizer.json"} <= set(files)
    assert len(hub.commits(repo_id)) >= 3  # one per save, plus the final push
    remote = AutoModelForCausalLM.from_pretrained(repo_id, trust_remote_code=True)
    trained = trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(remote.eval()(input_ids=IDS).logits, trained(input_ids=IDS).logits)


# ---------------------------------------------------------------------------------------------------------- real Hub


@pytest.mark.hub
@pytest.mark.skipif(
    not os.environ.get("HF_TOKEN_REAL_HUB"), reason="set HF_TOKEN_REAL_HUB to test against the real Hub"
)
def test_round_trip_against_the_real_hub(trained_dir):
    """Opt-in: push the tiny model to a private repository on huggingface.co, load it back, delete it."""
    script = f"""
import uuid, torch
from huggingface_hub import HfApi
from transformers import AutoModelForCausalLM
from jmlr_hf import JMLRForCausalLM
from jmlr_hf.hub import push_model
api = HfApi()
repo_id = api.whoami()["name"] + "/jmlr-hf-test-" + uuid.uuid4().hex[:8]
try:
    push_model({str(trained_dir)!r}, repo_id, private=True, push_index_from_config=False)
    remote = AutoModelForCausalLM.from_pretrained(repo_id, trust_remote_code=True).eval()
    local = JMLRForCausalLM.from_pretrained({str(trained_dir)!r}).eval()
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad():
        torch.testing.assert_close(remote(input_ids=ids).logits, local(input_ids=ids).logits)
finally:
    api.delete_repo(repo_id, missing_ok=True)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_TOKEN=os.environ["HF_TOKEN_REAL_HUB"], TOKENIZERS_PARALLELISM="false")
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=600)


# ---------------------------------------------------------------------------------------------------------- real models


@pytest.mark.integration
def test_real_small_models_through_the_hub_with_a_lora_adapter(
    hub, fresh_hf_cache, tmp_path, generator_tokenizer, retriever_tokenizer
):
    """SmolLM2-135M + all-MiniLM-L6-v2 (tied embeddings, sdpa attention, real tokenizers): the base generator is
    published once, the JMLR model as retriever + LoRA adapter; a clean interpreter loads it through the remote code
    and gets the same logits, retriever scores and greedy answer."""
    from jmlr_hf.utils.demo_models import minilm_path, smollm2_path

    base_id = unique("smollm2-base")
    HfApi().create_repo(base_id)
    HfApi().upload_folder(repo_id=base_id, folder_path=smollm2_path())
    model = JMLRForCausalLM.from_components(
        str(smollm2_path()), str(minilm_path()), num_candidates=4, num_sampled=2, num_context_documents=2
    )
    torch.manual_seed(0)
    lora = LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, lora_dropout=0.0)
    apply_peft_to_generator(model, lora)
    model.eval()
    prompt = generator_tokenizer("Question: Which organ makes insulin?\nAnswer:", return_tensors="pt")
    with torch.no_grad():
        logits = model(**prompt).logits
        answer = model.generate(**prompt, max_new_tokens=6, do_sample=False)[0].tolist()
    expected_scores = scores(model, retriever_tokenizer)

    repo_id = unique("jmlr-smollm2-lora")
    push_model(
        model,
        repo_id,
        tokenizer=generator_tokenizer,
        retriever_tokenizer=retriever_tokenizer,
        generator_weights="adapter",
        base_model=base_id,
    )
    assert len(hub.files(repo_id)["model.safetensors"]) < 100e6  # retriever (~90 MB fp32) only, no generator

    remote = run_python(
        f"""
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained({repo_id!r}, trust_remote_code=True).eval()
assert "jmlr_hf" not in sys.modules
tokenizer = AutoTokenizer.from_pretrained({repo_id!r})
retriever_tokenizer = AutoTokenizer.from_pretrained({repo_id!r}, subfolder="retriever_tokenizer")
prompt = tokenizer("Question: Which organ makes insulin?\\nAnswer:", return_tensors="pt")
with torch.no_grad():
    logits = model(**prompt).logits
    answer = model.generate(**prompt, max_new_tokens=6, do_sample=False)[0].tolist()
    scores = model.score_documents({QUERIES!r}, [{[d["text"] for d in DOCUMENTS]!r}] * 2, retriever_tokenizer)
result = dict(logits=logits.tolist(), answer=answer, scores=scores.tolist())
"""
    )
    torch.testing.assert_close(torch.tensor(remote["logits"]), logits, rtol=1e-4, atol=1e-4)
    assert remote["answer"] == answer
    torch.testing.assert_close(torch.tensor(remote["scores"]), expected_scores)
