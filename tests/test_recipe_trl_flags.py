"""The training script's TRL flags: each one accepted does what a TRL user expects, or is refused before anything
loads with one line naming the replacement. End to end on a tiny random JMLR model, in process."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from transformers import TrainerCallback

import jmlr_hf.scripts.train as train_script
from jmlr_hf.models import save_model
from jmlr_hf.scripts.train import check_arguments, check_hub_access, cli_main, make_parser
from jmlr_hf.trainer import JointRetrievalTrainer
from tests.testing_utils.models import RECIPE_CORPUS as CORPUS

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "recipes" / "demo.yaml")
MEDQA = ROOT / "tests" / "fixtures" / "medqa_tiny.jsonl"


def parse(*flags: str, config: str | None = DEMO):
    parsed = make_parser().parse_args_and_config(args=[*(["--config", config] if config else []), *flags])
    check_arguments(*parsed)
    return parsed


def refused(capsys, *flags: str, status: int = 1) -> str:
    """Run the script's entry point; it must exit with `status` and one line on stderr, which is returned."""
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--config", DEMO, *flags], prog="train.py")
    assert exit_info.value.code == status
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("train.py: error: "), err
    return err


# ------------------------------------------------------------------------------------------------ parse time


def test_max_length_is_the_sequence_cap_and_max_prompt_length_its_old_name():
    assert parse("--max_length", "300")[1].max_length == 300
    data, training, model, retrieval = parse("--max_prompt_length", "320", "--use_cpu", "true", config=None)
    assert training.max_length == 320 and "max_length" not in retrieval.config_overrides()
    assert parse()[1].max_length == 640  # demo.yaml's cap, now under TRL's name


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--packing", "true"], "nll_padding_free"),
        (["--padding_free", "true"], "nll_padding_free"),
        (["--max_length", "300", "--max_prompt_length", "200"], "give --max_length only"),
        (["--dataset_name", "org/questions", "--train_file", "x.jsonl"], "drop --train_file"),
        (["--dataset_streaming", "true"], "--corpus_streaming true"),
        (["--corpus_limit", "0"], "--corpus_limit 0: give a positive count"),
        (["--train_limit", "-1"], "--train_limit -1: give a positive count"),
    ],
)
def test_flags_that_cannot_work_are_refused_at_parse_time(capsys, monkeypatch, flags, named):
    monkeypatch.setattr(train_script, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    assert named in refused(capsys, *flags)


# ------------------------------------------------------------------------------------------------ --push_to_hub


def hub_flags(tmp_path: Path, repo_id: str) -> list[str]:
    return ["--output_dir", str(tmp_path / "run"), "--push_to_hub", "true", "--hub_model_id", repo_id]


def test_push_to_hub_offline_is_one_line_before_anything_loads(capsys, monkeypatch, tmp_path, hub):
    monkeypatch.setattr(train_script, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    assert "HF_HUB_OFFLINE" in refused(capsys, *hub_flags(tmp_path, f"{hub.user}/m"), status=1)


def test_push_to_hub_checks_the_token_and_the_namespace(capsys, monkeypatch, tmp_path, hub):
    monkeypatch.setattr(train_script, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    flags = hub_flags(tmp_path, f"{hub.user}/m")
    assert "token is invalid" in refused(capsys, *flags, "--hub_token", "hf_not_a_valid_token", status=1)
    assert "someone-else" in refused(capsys, *hub_flags(tmp_path, "someone-else/m"), status=1)
    training = parse(*flags)[1]
    check_hub_access(training)  # the stand-in Hub's write token, the user's own namespace: nothing to say


def test_push_to_hub_unreachable(capsys, monkeypatch, tmp_path, hub):
    monkeypatch.setattr(train_script, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr("huggingface_hub.hf_api.constants.ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(HfApi, "__init__", _api_on(HfApi.__init__, "http://127.0.0.1:9"))
    assert "cannot reach" in refused(capsys, *hub_flags(tmp_path, f"{hub.user}/m"), status=1)


def _api_on(init, endpoint: str):
    def patched(self, *args, **kwargs):
        kwargs["endpoint"] = endpoint
        init(self, *args, **kwargs)

    return patched


# ------------------------------------------------------------------------------------------------ end to end


class LogRecorder(TrainerCallback):
    """What a `report_to` integration receives: every `on_log` call, with its step."""

    def __init__(self):
        self.received: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.received.append({**(logs or {}), "step": state.global_step})


@pytest.fixture
def tiny_checkpoint(tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer) -> Path:
    path = tmp_path / "tiny"
    save_model(make_tiny_model(0, max_length=256), generator_tokenizer, retriever_tokenizer, path)
    return path


@pytest.fixture
def hub_questions(hub) -> str:
    """MedQA-format questions on the stand-in Hub, a `train` and a `test` split (the same 4 rows)."""
    api = HfApi()
    repo_id = api.create_repo(f"{hub.user}/medqa-{uuid.uuid4().hex[:8]}", repo_type="dataset").repo_id
    for split in ("train", "test"):
        api.upload_file(
            path_or_fileobj=str(MEDQA), path_in_repo=f"{split}.jsonl", repo_id=repo_id, repo_type="dataset"
        )
    return repo_id


def test_dataset_name_eval_strategy_max_length_and_every_metric_through_the_log(
    tmp_path, tiny_checkpoint, hub_questions, monkeypatch
):
    """`--dataset_name <Hub id>` trains and evaluates on its splits; `--eval_strategy steps` evaluates the prepared
    evaluation split (joint loss + retrieval metrics); `--max_length` caps the sequences and is saved with the model;
    the before/after evaluation goes through the trainer's log too: every figure reaches `on_log` (`report_to`)."""
    recorder = LogRecorder()

    class RecordedTrainer(JointRetrievalTrainer):
        def __init__(self, *args, callbacks=None, **kwargs):
            super().__init__(*args, callbacks=[*(callbacks or []), recorder], **kwargs)

    monkeypatch.setattr(train_script, "JointRetrievalTrainer", RecordedTrainer)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(CORPUS)))
    out = tmp_path / "run"
    cli_main(
        [
            "--task", "medqa", "--dataset_name", hub_questions, "--corpus", str(corpus),
            "--model_name_or_path", str(tiny_checkpoint), "--output_dir", str(out),
            "--num_candidates", "4", "--num_sampled", "2", "--num_context_documents", "1",
            "--max_document_length", "32", "--max_length", "200", "--eval_answer_limit", "1",
            "--max_steps", "2", "--logging_steps", "1", "--eval_strategy", "steps", "--eval_steps", "1",
            "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4", "--save_strategy", "no",
            "--use_cpu", "true", "--bf16", "false", "--report_to", "none", "--disable_tqdm", "true",
            "--refresh_index", "false", "--learning_rate", "1e-3",
        ]
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert results["before"]["num_questions"] == 4  # the Hub data set's test split, prepared with candidates
    history = results["train"]
    assert recorder.received == history  # what report_to receives is the whole log history
    periodic = [entry for entry in history if "eval_loss" in entry]
    assert [entry["step"] for entry in periodic] == [1, 2]
    assert all({"eval_lm_loss", "eval_retrieval_loss"} <= set(entry) for entry in periodic)
    before, after = (entry for entry in history if "eval_accuracy" in entry)
    assert (before["step"], after["step"]) == (0, 2)
    assert before["eval_accuracy"] == results["before"]["accuracy"]
    assert after["eval_answer_nll"] == results["after"]["answer_nll"]
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["max_length"] == 200


def test_dataset_name_reads_a_local_data_set_folder(tmp_path):
    """A folder of split files, as `datasets.load_dataset` reads it: the chosen splits, through the task's loader."""
    folder = tmp_path / "questions"
    folder.mkdir()
    rows = [line for line in MEDQA.read_text(encoding="utf-8").splitlines() if line.strip()]
    (folder / "train.jsonl").write_text("\n".join(rows[:3]) + "\n", encoding="utf-8")
    (folder / "validation.jsonl").write_text(rows[3] + "\n", encoding="utf-8")
    data = train_script.DataArguments(task="medqa", dataset_name=str(folder), dataset_test_split="validation")
    train, held_out = (train_script.load_split_questions(data, split) for split in ("train", "test"))
    assert (len(train), len(held_out)) == (3, 1)
    assert held_out[0]["question"] == json.loads(rows[3])["question"]


def test_model_flags_reach_the_generator(monkeypatch):
    """`--model_revision`, `--attn_implementation`, `--trust_remote_code` and `--max_length` are not parsed and then
    dropped: they reach the generator's loading (and its tokenizer's) and the model's config."""
    calls: dict = {}

    def from_components(cls, generator, retriever, **kwargs):
        calls["model"] = kwargs
        return "model"

    class Tokenizer:
        pad_token, eos_token = None, "</s>"

        @classmethod
        def from_pretrained(cls, path, **kwargs):
            calls.setdefault("tokenizers", []).append(kwargs)
            return cls()

    monkeypatch.setattr(train_script.JMLRForCausalLM, "from_components", classmethod(from_components))
    monkeypatch.setattr(train_script, "AutoTokenizer", Tokenizer)
    flags = ["--model_revision", "v2", "--attn_implementation", "eager", "--trust_remote_code", "true"]
    data, training, model, retrieval = parse(*flags, "--max_length", "300")
    train_script.load_model(model, retrieval, training.max_length, training.trust_remote_code)
    generator_kwargs = calls["model"]["generator_kwargs"]
    assert generator_kwargs["revision"] == "v2" and generator_kwargs["attn_implementation"] == "eager"
    assert generator_kwargs["trust_remote_code"] is True and calls["model"]["max_length"] == 300
    assert {"revision": "v2", "trust_remote_code": True} in calls["tokenizers"]  # the generator's tokenizer


def test_corpus_streaming_indexes_without_loading_the_corpus(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    """`--corpus_streaming`: the corpus file is streamed into the index folder chunk by chunk (the in-memory build is
    never called), and the run trains on candidates from it; `--corpus_limit` stops the stream after its first rows;
    the named corpora are refused with the flag."""
    from jmlr_hf.retrieval import DocumentIndex

    monkeypatch.setattr(DocumentIndex, "build", classmethod(lambda *a, **k: pytest.fail("in-memory build")))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "content": t}) + "\n" for i, t in enumerate(CORPUS)))
    out = tmp_path / "run"
    cli_main(
        [
            "--task", "medqa", "--train_file", str(MEDQA), "--eval_file", str(MEDQA), "--corpus", str(corpus),
            "--corpus_streaming", "true", "--corpus_limit", "5", "--model_name_or_path", str(tiny_checkpoint),
            "--output_dir", str(out),
            "--num_candidates", "4", "--num_sampled", "2", "--num_context_documents", "1",
            "--max_document_length", "32", "--evaluate_before", "false", "--eval_answer_limit", "1",
            "--max_steps", "1", "--save_strategy", "no", "--use_cpu", "true", "--bf16", "false",
            "--report_to", "none", "--disable_tqdm", "true",
        ]
    )  # fmt: skip
    index = DocumentIndex.load(out / "index")
    assert index.documents["text"] == CORPUS[:5] and index.documents["id"] == [str(i) for i in range(5)]
    assert (out / "final" / "config.json").exists()
    capsys.readouterr()  # the run's progress bars
    assert "--corpus_streaming" in refused(capsys, "--corpus_streaming", "true")  # demo.yaml's corpus: pubmedqa
