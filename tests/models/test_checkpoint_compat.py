"""Checkpoints saved before the package layout changed keep loading, and keep giving the same outputs.

`tests/fixtures/jmlr_checkpoint_v0_1/` is a tiny JMLR model (Llama + BERT with a ColBERT projection) saved with
`save_pretrained` by jmlr_hf 0.1.0 while the model lived in `jmlr_hf/modeling_jmlr.py` (commit bc3bb75), with its
remote code and the outputs it gave then (`expected_outputs.json`). Published models on the Hub look like this.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from jmlr_hf import JMLRForCausalLM

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "jmlr_checkpoint_v0_1"
EXPECTED = json.loads((FIXTURE / "expected_outputs.json").read_text())


def outputs_of(model) -> dict:
    ids = torch.tensor(EXPECTED["input_ids"])
    query, docs = torch.tensor(EXPECTED["query_input_ids"]), torch.tensor(EXPECTED["doc_input_ids"])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :, :8]
        scores = model.retriever(query, torch.ones_like(query), docs, torch.ones_like(docs))
    return {"logits": logits, "scores": scores}


def assert_expected(outputs: dict) -> None:
    torch.testing.assert_close(outputs["logits"], torch.tensor(EXPECTED["logits"]), atol=1e-6, rtol=0)
    torch.testing.assert_close(outputs["scores"], torch.tensor(EXPECTED["scores"]), atol=1e-6, rtol=0)


def test_the_fixture_names_files_not_package_paths():
    auto_map = json.loads((FIXTURE / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_jmlr.JMLRConfig",
        "AutoModel": "modeling_jmlr.JMLRForCausalLM",
        "AutoModelForCausalLM": "modeling_jmlr.JMLRForCausalLM",
    }


def test_an_old_checkpoint_loads_with_the_package():
    model = JMLRForCausalLM.from_pretrained(FIXTURE).eval()
    assert type(model).__module__ == "jmlr_hf.models.modeling_jmlr"
    assert model.retriever.linear is not None and model.retriever.linear.weight.shape == (8, 16)
    assert model.retriever.weights_fingerprint() == EXPECTED["fingerprint"]
    assert_expected(outputs_of(model))


def test_an_old_checkpoint_loads_through_its_own_remote_code(tmp_path):
    """Without jmlr_hf: `AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True)` runs the checkpoint's
    own copy of the modeling code, as a Hub user's would."""
    model_dir = shutil.copytree(FIXTURE, tmp_path / "model")
    script = textwrap.dedent(
        """
        import json, sys
        import torch
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        expected = json.load(open(sys.argv[1] + "/expected_outputs.json"))
        ids = torch.tensor(expected["input_ids"])
        query, docs = torch.tensor(expected["query_input_ids"]), torch.tensor(expected["doc_input_ids"])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :, :8]
            scores = model.retriever(query, torch.ones_like(query), docs, torch.ones_like(docs))
        torch.testing.assert_close(logits, torch.tensor(expected["logits"]), atol=1e-6, rtol=0)
        torch.testing.assert_close(scores, torch.tensor(expected["scores"]), atol=1e-6, rtol=0)
        assert not any(name.startswith("jmlr_hf") for name in sys.modules)
        print("OK")
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", script, str(model_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")


def test_an_old_checkpoint_saved_again_keeps_its_auto_map_and_outputs(tmp_path):
    model = JMLRForCausalLM.from_pretrained(FIXTURE).eval()
    model.save_pretrained(tmp_path / "resaved")
    config = json.loads((tmp_path / "resaved" / "config.json").read_text())
    assert config["auto_map"] == json.loads((FIXTURE / "config.json").read_text())["auto_map"]
    assert {"modeling_jmlr.py", "configuration_jmlr.py"} <= {p.name for p in (tmp_path / "resaved").iterdir()}
    assert_expected(outputs_of(JMLRForCausalLM.from_pretrained(tmp_path / "resaved").eval()))
