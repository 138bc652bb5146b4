"""Every recipe YAML parses with the training script's parser, and the paper-scale ones hold the paper's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from jmlr_hf.scripts.train import make_parser

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def parse(path: Path, *overrides: str):
    return make_parser().parse_args_and_config(args=["--config", str(path), *overrides])


def test_the_recipes_are_there():
    assert [path.name for path in RECIPES] == ["demo.yaml", "jmlr-13b.yaml", "jmlr-7b.yaml"]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.stem)
def test_each_recipe_parses(recipe):
    # bf16 needs a GPU, or use_cpu: transformers refuses it on a CPU-only machine otherwise.
    data, training, model, retrieval = parse(recipe, "--use_cpu", "true")
    assert training.output_dir == f"outputs/{recipe.stem}"
    assert model.model_name_or_path and retrieval.retriever_name_or_path


@pytest.mark.parametrize("recipe", ["jmlr-7b.yaml", "jmlr-13b.yaml"])
def test_paper_scale_recipes_use_the_authors_settings(recipe):
    data, training, model, retrieval = parse(ROOT / "recipes" / recipe, "--use_cpu", "true")
    overrides = retrieval.config_overrides()
    assert (overrides["num_candidates"], overrides["num_sampled"], overrides["num_context_documents"]) == (20, 10, 5)
    assert overrides["max_query_length"] == 512 and overrides["document_order"] == "best_last"
    assert training.max_length == 2048  # TRL's name of the sequence cap, applied by the trainer
    assert training.retriever_learning_rate == 3e-6 and training.learning_rate == 2e-5
    assert training.bf16 and training.gradient_checkpointing
    assert model.use_peft and model.lora_r == 128 and model.lora_alpha == 256 and model.dtype == "bfloat16"
    assert retrieval.retriever_name_or_path == "colbert-ir/colbertv2.0"


ACCELERATE_CONFIGS = sorted((ROOT / "recipes" / "accelerate_configs").glob("*.yaml"))


def test_the_accelerate_configs_are_there():
    names = [path.stem for path in ACCELERATE_CONFIGS]
    assert names == ["cpu", "fsdp2", "multi_gpu", "single_gpu", "zero2", "zero3"]


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda path: path.stem)
def test_each_accelerate_config_loads(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    expected = {
        "cpu": "NO",
        "single_gpu": "NO",
        "multi_gpu": "MULTI_GPU",
        "fsdp2": "FSDP",
        "zero2": "DEEPSPEED",
        "zero3": "DEEPSPEED",
    }[path.stem]
    assert str(config.distributed_type).split(".")[-1] == expected
    if path.stem == "fsdp2":
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        # No layer classes named: the trainer wraps the generator's own decoder layers, whatever the generator.
        assert "fsdp_transformer_layer_cls_to_wrap" not in config.fsdp_config
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    if path.stem.startswith("zero"):
        assert config.deepspeed_config["zero_stage"] == int(path.stem[-1])


@pytest.mark.parametrize("recipe", ["jmlr-7b.yaml", "jmlr-13b.yaml"])
def test_paper_scale_recipes_name_an_accelerate_config_that_exists(recipe):
    text = (ROOT / "recipes" / recipe).read_text(encoding="utf-8")
    named = [word for word in text.split() if word.startswith("recipes/accelerate_configs/")]
    assert named and all((ROOT / name).exists() for name in named)


@pytest.mark.parametrize(
    ("environment", "refusal"),
    [
        ({"ACCELERATE_USE_FSDP": "true"}, "does not run under FSDP1: use FSDP2.*fsdp2.yaml"),  # accelerate's default
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, "does not run under FSDP1: use FSDP2.*fsdp2.yaml"),
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, "FSDP2 needs GPUs.*cpu.yaml.*--multi_gpu"),
        (
            {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"},
            "does not run under DeepSpeed ZeRO-3: use FSDP2.*fsdp2.yaml.*zero2.yaml",
        ),
    ],
    ids=["fsdp-default", "fsdp1", "fsdp2-on-cpu", "zero3"],
)
def test_the_recipe_refuses_what_it_cannot_shard_at_start_naming_fsdp2(monkeypatch, environment, refusal):
    """What `accelerate launch --config_file ...` sets: the recipe stops before loading anything, and names what
    works. On this machine (no GPU) FSDP2 is refused too: accelerate would run the processes as DDP replicas."""
    from jmlr_hf.scripts import train as train_script

    # Parsed first: with these variables set, transformers would want deepspeed installed to parse the arguments.
    data, training, model, retrieval = parse(ROOT / "recipes" / "demo.yaml")
    monkeypatch.setattr(train_script, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=refusal):
        train_script.main(data, training, model, retrieval)


def test_fsdp2_on_gpus_is_accepted(monkeypatch):
    from jmlr_hf.scripts.train import check_sharding

    data, training, model, retrieval = parse(ROOT / "recipes" / "demo.yaml", "--use_cpu", "false")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    assert check_sharding(training, cuda_available=True) == "FSDP2"
    with pytest.raises(ValueError, match="FSDP2 needs GPUs"):
        check_sharding(training, cuda_available=False)


def test_zero2_is_accepted(monkeypatch):
    from jmlr_hf.scripts.train import sharding_scheme

    data, training, model, retrieval = parse(ROOT / "recipes" / "demo.yaml")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    assert sharding_scheme(training) is None
