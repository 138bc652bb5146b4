"""One Hub id → a retrieval-augmented answer, where `jmlr_hf` is not installed (issue 13, problems 1 and 2).

A model pushed with its index to the stand-in Hub is loaded by id with `trust_remote_code` in a clean virtual
environment that has the libraries a transformers user has (torch, transformers, huggingface_hub, faiss, pyarrow)
but not `jmlr_hf`, and answers a question with documents retrieved from the index its config pins. The model card's
own snippet is run there too. Saving records a local index relative to the model folder, never as an absolute path,
and `push_to_hub` refuses a model whose index was never published.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from datasets import Dataset
from huggingface_hub import HfApi

from jmlr_hf import JMLRConfig, JMLRForCausalLM
from jmlr_hf.hub import push_index, push_model, render_model_card
from jmlr_hf.models import save_model
from jmlr_hf.retrieval import DocumentIndex
from tests.testing_utils.models import TOY_ROWS

pytestmark = pytest.mark.usefixtures("single_thread")

DOCUMENTS = [
    {"id": f"d{i}", "title": "Physiology" if i % 2 else "", "text": text}
    for i, text in enumerate(dict.fromkeys(c for row in TOY_ROWS for c in row["candidates"]))
]
QUESTION = "Which organ makes insulin?"


def unique(name: str) -> str:
    return f"jmlr-test/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def clean_python(tmp_path_factory) -> str:
    """The interpreter of a fresh virtual environment that sees this one's third-party libraries but not `jmlr_hf`.

    The new environment's `.pth` file puts this environment's site-packages on its path as a plain directory, so the
    `.pth` files inside it (among them the editable install's finder, which makes `jmlr_hf` importable) never run.
    """
    venv = tmp_path_factory.mktemp("clean-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "host_site_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('jmlr_hf'), u.find_spec('transformers'))"],
        capture_output=True,
        text=True,
        cwd=venv,
        env=clean_env(),
        timeout=120,
    )
    none, found = probe.stdout.split(maxsplit=1)
    assert none == "None" and found != "None", probe.stdout + probe.stderr
    return str(python)


def clean_env(**extra: str) -> dict[str, str]:
    """This session's Hub settings (stand-in endpoint, token, cache) without anything that could find `jmlr_hf`."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", **extra)
    return env


def run_clean(python: str, script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run `script` in the clean environment, outside the repository, with stdin closed (a y/N prompt fails)."""
    return subprocess.run(
        [python, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(HF_MODULES_CACHE=str(tmp_path / "modules")),
        stdin=subprocess.DEVNULL,
        timeout=600,
    )


@pytest.fixture
def trained_dir(tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer) -> Path:
    """A saved tiny JMLR model whose config records its local index by absolute path, as training leaves it."""
    model = make_tiny_model(seed=3, num_candidates=4, num_context_documents=2).eval()
    DocumentIndex.from_retriever(
        Dataset.from_list(DOCUMENTS), model.retriever, retriever_tokenizer, max_length=32, show_progress=False
    ).save(tmp_path / "index")
    model.config.index_repo_id = str(tmp_path / "index")
    return save_model(model, generator_tokenizer, retriever_tokenizer, tmp_path / "final")


def test_a_model_published_with_its_index_answers_with_documents_from_the_hub_id_without_jmlr_hf(
    hub, fresh_hf_cache, clean_python, trained_dir, tmp_path, generator_tokenizer, retriever_tokenizer
):
    repo_id = unique("jmlr-rag")
    pushed = push_model(trained_dir, repo_id)
    local = JMLRForCausalLM.from_pretrained(trained_dir).eval()
    expected = local.answer(QUESTION, generator_tokenizer, retriever_tokenizer, max_new_tokens=6)
    assert [doc["id"] for doc in expected.documents]  # documents were retrieved and used

    script = f"""
import importlib.util, json, sys
assert importlib.util.find_spec("jmlr_hf") is None, "jmlr_hf must not be installed here"
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained({repo_id!r}, revision={pushed.commit!r}, trust_remote_code=True).eval()
out = model.answer({QUESTION!r}, max_new_tokens=6)  # tokenizers and index: all from the one id
index = model.load_index()
print("RESULT=" + json.dumps(dict(
    answer=out.answer, prompt=out.prompt, documents=out.documents, index=type(index).__name__,
    module=type(model).__module__, index_revision=model.config.index_revision,
    loaded=sorted(name for name in ("jmlr_hf", "datasets", "peft") if name in sys.modules),
)))
"""
    done = run_clean(clean_python, script, tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.rsplit("RESULT=", 1)[1])
    assert result["module"].startswith("transformers_modules")
    assert result["index"] == "JMLRIndex" and result["loaded"] == []
    assert result["index_revision"] == pushed.index_revision == hub.commits(f"{repo_id}-index", "dataset")[0][0]
    assert result["prompt"] == expected.prompt
    assert result["answer"] == expected.answer
    got, want = result["documents"], expected.documents
    assert [doc["id"] for doc in got] == [doc["id"] for doc in want]
    assert [doc["text"] for doc in got] == [doc["text"] for doc in want]
    for doc, reference in zip(got, want):
        assert doc["score"] == pytest.approx(reference["score"], abs=1e-5)
        assert doc["retriever_score"] == pytest.approx(reference["retriever_score"], abs=1e-5)
    # The documents are in the prompt as the index stores them (title and text), best first.
    first = want[0]
    text = f"{first['title']}. {first['text']}" if first["title"] else first["text"]
    assert f"Document [1]: {text}" in result["prompt"]


def test_the_model_card_snippet_answers_with_documents_without_jmlr_hf_and_without_a_prompt(
    hub, fresh_hf_cache, clean_python, trained_dir, tmp_path
):
    repo_id = unique("jmlr-card")
    pushed = push_model(trained_dir, repo_id)
    card = hub.files(repo_id)["README.md"].decode()
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert blocks, card
    snippet = blocks[0]
    assert "trust_remote_code=True" in snippet and "revision=revision" in snippet
    assert f'repo_id, revision = "{repo_id}", "{pushed.commit}"' in snippet  # pinned to the commit of the upload
    assert 'subfolder="retriever_tokenizer"' in snippet
    assert f"{repo_id}-index" in card and pushed.index_revision in card
    assert str(trained_dir.parent) not in card

    done = run_clean(clean_python, snippet, tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "[y/N]" not in done.stdout + done.stderr  # no trust_remote_code prompt for either tokenizer
    printed = done.stdout.strip().splitlines()
    assert printed, done.stdout
    assert any(line.startswith("d") for line in printed[1:]), done.stdout  # the documents it used, by id


def test_save_pretrained_records_a_local_index_relative_to_the_model_folder(
    tmp_path, make_tiny_model, retriever_tokenizer
):
    model = make_tiny_model(seed=5).eval()
    index = DocumentIndex.from_retriever(
        Dataset.from_list(DOCUMENTS), model.retriever, retriever_tokenizer, max_length=32, show_progress=False
    )
    index.save(tmp_path / "run" / "index")
    model.config.index_repo_id = str(tmp_path / "run" / "index")
    model.save_pretrained(tmp_path / "run" / "final")

    text = (tmp_path / "run" / "final" / "config.json").read_text()
    assert json.loads(text)["index_repo_id"] == "../index"
    assert str(tmp_path) not in text
    assert model.config.index_repo_id == str(tmp_path / "run" / "index")  # the model in memory is unchanged

    # The pair moves together: loaded from elsewhere, the model still finds its index.
    shutil.move(tmp_path / "run", tmp_path / "moved")
    loaded = JMLRForCausalLM.from_pretrained(tmp_path / "moved" / "final").eval()
    assert loaded.config.index_repo_id == str(tmp_path / "moved" / "index")
    assert len(loaded.load_index()) == len(DOCUMENTS)
    documents = loaded.retrieve(QUESTION, retriever_tokenizer)[0]
    assert len(documents) == loaded.config.num_context_documents
    assert loaded.retrieve([QUESTION], retriever_tokenizer, index=tmp_path / "moved" / "index") == [documents]
    # Saved again somewhere else, the path is re-based on the new folder; an index inside the folder is `./`.
    loaded.save_pretrained(tmp_path / "moved" / "deeper" / "copy")
    assert json.loads((tmp_path / "moved" / "deeper" / "copy" / "config.json").read_text())["index_repo_id"] == (
        "../../index"
    )
    loaded.config.index_repo_id = str(tmp_path / "moved" / "final" / "index")
    loaded.save_pretrained(tmp_path / "moved" / "final")
    assert json.loads((tmp_path / "moved" / "final" / "config.json").read_text())["index_repo_id"] == "./index"


def test_push_to_hub_refuses_an_unpublished_index_and_pins_a_published_one(
    hub, fresh_hf_cache, tmp_path, make_tiny_model, retriever_tokenizer
):
    model = make_tiny_model(seed=6).eval()
    DocumentIndex.from_retriever(
        Dataset.from_list(DOCUMENTS), model.retriever, retriever_tokenizer, max_length=32, show_progress=False
    ).save(tmp_path / "index")
    model.config.index_repo_id = str(tmp_path / "index")
    repo_id = unique("jmlr-plain-push")
    with pytest.raises(ValueError, match=r"local folder .*jmlr push model.*push_index"):
        model.push_to_hub(repo_id)
    with pytest.raises(ValueError, match="jmlr push model"):
        model.save_pretrained(tmp_path / "out", push_to_hub=True, repo_id=repo_id)
    assert not HfApi().repo_exists(repo_id)

    index_id = unique("jmlr-plain-push-index")
    published = push_index(tmp_path / "index", index_id)
    model.config.index_repo_id, model.config.index_revision = index_id, None
    model.push_to_hub(repo_id)
    config = json.loads(hub.files(repo_id)["config.json"])
    assert (config["index_repo_id"], config["index_revision"]) == (index_id, published.commit)


def test_the_card_of_a_local_save_shows_no_local_path(trained_dir):
    """As the training recipe writes it: the card of the saved folder, from the config on disk."""
    config = JMLRConfig.from_pretrained(trained_dir)
    assert config.index_repo_id == "../index"
    for cfg in (config, JMLRForCausalLM.from_pretrained(trained_dir).config):  # on disk, and in memory (absolute)
        card = str(render_model_card(cfg, str(trained_dir)))
        card_body = card.replace(str(trained_dir), "<repo id>")  # the repo id passed in is the caller's choice
        assert str(trained_dir.parent) not in card_body and "/tmp" not in card_body
        assert "has not been published" in card and "jmlr push model" in card
        assert "result = model.answer(" not in card  # no snippet that could not work
    assert "(`../index`, relative to the model" in str(render_model_card(config, "me/model"))


def test_the_card_of_a_published_model_pins_the_index_and_shows_both_tokenizers(trained_dir):
    config = JMLRConfig.from_pretrained(trained_dir)
    config.index_repo_id, config.index_revision = "me/model-index", "0123abcd" * 5
    card = str(render_model_card(config, "me/model"))
    assert 'repo_id, revision = "me/model", "main"' in card
    assert "AutoModelForCausalLM.from_pretrained(repo_id, revision=revision, trust_remote_code=True)" in card
    assert "AutoTokenizer.from_pretrained(repo_id, revision=revision, trust_remote_code=True)" in card
    assert 'subfolder="retriever_tokenizer"' in card
    assert "result = model.answer(" in card and "faiss-cpu pyarrow" in card
    assert "[`me/model-index`](https://huggingface.co/datasets/me/model-index) at commit `" + "0123abcd" * 5 in card
