"""Pushes through Xet, huggingface_hub's default upload path whenever `hf_xet` is installed (as on a user's machine):
the stand-in Hub used to need `HF_HUB_DISABLE_XET=1`, and without it a push failed as a "network error" on
`/xet-write-token`. Here Xet is on, as by default: `jmlr push model` and `jmlr pull` round-trip every byte, through
the Xet routes of the stand-in (tests/testing_utils/xet_cas.py), not Git LFS."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants
from huggingface_hub.utils._runtime import is_xet_available

from jmlr_hf.cli import main as jmlr
from jmlr_hf.models import save_model

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def xet_on(monkeypatch, tmp_path):
    """huggingface_hub's default: Xet whenever hf_xet is installed (the test suite turns it off elsewhere, to test
    the Git LFS path); hf_xet's local cache in a fresh folder."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    monkeypatch.setenv("HF_XET_CACHE", str(tmp_path / "xet-cache"))
    assert is_xet_available(), "hf_xet is a dependency of huggingface_hub: it must be installed"


def digests(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in folder.rglob("*")
        if path.is_file() and ".cache" not in path.parts
    }


def test_push_model_and_pull_through_xet(
    hub, xet_on, fresh_hf_cache, tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    folder = save_model(make_tiny_model(0), generator_tokenizer, retriever_tokenizer, tmp_path / "model")
    repo_id = f"jmlr-test/xet-{uuid.uuid4().hex[:8]}"
    start = len(hub.requests)
    jmlr(["push", "model", str(folder), "--repo_id", repo_id, "--no_index"])
    paths = [path for _, path in hub.requests[start:]]
    assert any(path.endswith("/xet-write-token/main") for path in paths)
    assert any("/xet-cas/" in path and path.endswith("/v1/shards") for path in paths)
    assert not any("/info/lfs/" in path for path in paths)  # nothing went through Git LFS

    jmlr(["pull", "model", repo_id, "--output", str(tmp_path / "pulled")])
    pulled, pushed = digests(tmp_path / "pulled"), digests(folder)
    weights = [name for name in pushed if name.endswith(".safetensors")]  # the config is rewritten by the push
    assert weights and {name: pulled[name] for name in weights} == {name: pushed[name] for name in weights}
    assert "model.safetensors" in hub.lfs_files(repo_id)
    # The files went in one commit (then the card's pinned revision), as through Git LFS.
    assert len(hub.commits(repo_id)) == 3


def test_the_cas_refuses_a_token_of_another_repository(hub, xet_on):
    """The CAS write token is the one `xet-write-token` issued for the repository in the CAS URL."""
    import httpx2

    from tests.testing_utils import xet_cas

    api = HfApi()
    first = api.create_repo(f"jmlr-test/xet-a-{uuid.uuid4().hex[:8]}").repo_id
    second = api.create_repo(f"jmlr-test/xet-b-{uuid.uuid4().hex[:8]}").repo_id
    headers = {"Authorization": f"Bearer {hub.token}"}
    grant = httpx2.get(f"{hub.url}/api/models/{first}/xet-write-token/main", headers=headers).json()
    assert grant["casUrl"].startswith(hub.url) and grant["exp"] > 0
    other = grant["casUrl"].replace(first.replace("/", "%2F"), second.replace("/", "%2F"))
    shard = b"\0" * 48 + xet_cas.BOOKEND + b"\0" * 16
    auth = {"Authorization": f"Bearer {grant['accessToken']}"}
    assert httpx2.post(f"{grant['casUrl']}/v1/shards", content=shard, headers=auth).status_code == 200
    assert httpx2.post(f"{other}/v1/shards", content=shard, headers=auth).status_code == 401
