"""The stand-in Hub (tests/hub_server.py) behaves like the Hugging Face Hub for huggingface_hub, datasets and
transformers: every test goes through the real client libraries, over HTTP, to the server the session started."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from pathlib import Path

import httpx2
import pytest
from datasets import Dataset, DatasetDict, load_dataset
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    HfFileSystem,
    ModelCard,
    ModelCardData,
    RepoCard,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (
    BadRequestError,
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import get_session

from tests.testing_utils.hub_server import StandInHub

WEIGHTS = os.urandom(3000)  # a "binary" LFS file
BLOB = b"\x00\x01 binary without an LFS extension" * 10  # LFS because binary (the Hub sniffs the 512-byte sample)


def read(path: str) -> bytes:
    return Path(path).read_bytes()


@pytest.fixture
def api() -> HfApi:
    return HfApi()


@pytest.fixture
def repo_id(hub, api) -> str:
    """A new, empty model repo (the Hub puts a bare name in the user's namespace)."""
    return api.create_repo(f"test-{uuid.uuid4().hex[:10]}").repo_id


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "bert", "architectures": ["BertModel"]}')
    (folder / "README.md").write_text("---\nlicense: apache-2.0\ntags:\n- jmlr\n---\n# A model\n")
    (folder / "model.safetensors").write_bytes(WEIGHTS)
    (folder / "sub" / "notes.txt").write_text("hello\n")
    (folder / "sub" / "blob.dat").write_bytes(BLOB)
    return folder


def test_whoami_needs_a_valid_token(hub, api):
    assert api.whoami()["name"] == hub.user == "jmlr-tester"
    with pytest.raises(HfHubHTTPError) as error:
        HfApi(token="hf_not_the_right_one").whoami()
    assert error.value.response.status_code == 401
    assert get_session().get(f"{hub.url}/api/whoami-v2").status_code == 401


def test_create_repo_conflict_exist_ok_private_and_initial_commit(hub, api):
    name = f"create-{uuid.uuid4().hex[:8]}"
    url = api.create_repo(name)
    assert url.repo_id == f"{hub.user}/{name}" and url.repo_type == "model" and url.startswith(hub.url)
    with pytest.raises(HfHubHTTPError) as error:
        api.create_repo(url.repo_id)
    assert error.value.response.status_code == 409
    assert error.value.response.json()["url"] == str(url)
    assert api.create_repo(url.repo_id, exist_ok=True) == url
    # like the Hub, a new repo has one "initial commit" holding .gitattributes
    assert [title for _, title in hub.commits(url.repo_id)] == ["initial commit"]
    assert api.list_repo_files(url.repo_id) == [".gitattributes"]

    dataset = api.create_repo(f"{hub.user}/{name}", repo_type="dataset", private=True)
    assert dataset.repo_type == "dataset" and hub.repo_exists(dataset.repo_id, "dataset")
    assert api.dataset_info(dataset.repo_id).private is True
    with pytest.raises(RepositoryNotFoundError):  # anonymous users cannot see a private repo
        HfApi(token=False).dataset_info(dataset.repo_id)


def test_upload_folder_regular_and_lfs_files_in_one_commit(hub, api, repo_id, model_folder, fresh_hf_cache):
    before, first_request = hub.commits(repo_id), len(hub.requests)
    info = api.upload_folder(repo_id=repo_id, folder_path=model_folder, commit_message="Add the model")
    commits = hub.commits(repo_id)
    assert len(commits) == len(before) + 1 and commits[0] == (info.oid, "Add the model")
    assert [r for r in hub.requests[first_request:] if "/commit/" in r[1]] == [
        ("POST", f"/api/models/{repo_id}/commit/main")
    ]
    assert hub.lfs_files(repo_id) == {"model.safetensors", "sub/blob.dat"}
    expected = {p.relative_to(model_folder).as_posix(): p.read_bytes() for p in model_folder.rglob("*") if p.is_file()}
    assert {k: v for k, v in hub.files(repo_id).items() if k != ".gitattributes"} == expected

    # listings, as the client parses them
    assert api.list_repo_files(repo_id) == sorted([".gitattributes", *expected])
    tree = {entry.path: entry for entry in api.list_repo_tree(repo_id, recursive=True)}
    assert set(tree) == {".gitattributes", *expected, "sub"} and not hasattr(tree["sub"], "size")
    assert tree["model.safetensors"].lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert tree["model.safetensors"].size == len(WEIGHTS) and tree["config.json"].lfs is None
    assert {entry.path for entry in api.list_repo_tree(repo_id)} == {
        ".gitattributes",
        "config.json",
        "README.md",
        "model.safetensors",
        "sub",
    }
    assert {entry.path for entry in api.list_repo_tree(repo_id, "sub")} == {"sub/notes.txt", "sub/blob.dat"}
    paths = api.get_paths_info(repo_id, ["config.json", "sub", "missing.txt"], expand=True)
    assert [type(p).__name__ for p in paths] == ["RepoFile", "RepoFolder"]
    assert paths[0].last_commit.oid == info.oid and paths[1].last_commit.title == "Add the model"
    model = api.model_info(repo_id, files_metadata=True)
    assert model.sha == info.oid and model.card_data.license == "apache-2.0" and model.tags == ["jmlr"]
    assert {s.rfilename: s.size for s in model.siblings}["model.safetensors"] == len(WEIGHTS)

    # downloads: LFS files are answered with a 302 to the "CDN", regular ones directly
    first_response = len(hub.responses)
    assert read(hf_hub_download(repo_id, "model.safetensors")) == WEIGHTS
    assert read(hf_hub_download(repo_id, "sub/notes.txt")) == b"hello\n"
    answered = hub.responses[first_response:]
    assert ("HEAD", f"/{repo_id}/resolve/main/model.safetensors", 302) in answered
    assert ("GET", f"/cdn-lfs/{hashlib.sha256(WEIGHTS).hexdigest()}", 200) in answered
    assert ("GET", f"/{repo_id}/resolve/main/sub/notes.txt", 200) in answered
    snapshot = snapshot_download(repo_id)
    assert {p: read(os.path.join(snapshot, p)) for p in expected} == expected
    local = snapshot_download(repo_id, local_dir=model_folder.parent / "local")
    assert {p: read(os.path.join(local, p)) for p in expected} == expected

    # pushing the same files again is a no-op: the preupload answer carries the remote oids
    api.upload_folder(repo_id=repo_id, folder_path=model_folder)
    assert hub.commits(repo_id) == commits


def test_file_metadata_like_the_hub(hub, api, repo_id):
    hub.upload(repo_id, {"model.safetensors": WEIGHTS, "config.json": b"{}"})
    lfs = get_hf_file_metadata(hf_hub_url(repo_id, "model.safetensors"))
    assert lfs.etag == hashlib.sha256(WEIGHTS).hexdigest() and lfs.size == len(WEIGHTS)
    assert lfs.location.startswith(hub.cdn_url) and lfs.commit_hash == hub.commits(repo_id)[0][0]
    regular = get_hf_file_metadata(hf_hub_url(repo_id, "config.json"))
    assert regular.etag == hashlib.sha1(b"blob 2\x00{}").hexdigest() and regular.size == 2
    partial = get_session().get(hf_hub_url(repo_id, "model.safetensors"), headers={"Range": "bytes=10-19"})
    assert partial.status_code == 206 and partial.content == WEIGHTS[10:20]
    assert partial.headers["Content-Range"] == f"bytes 10-19/{len(WEIGHTS)}"


def test_create_commit_deletes_files_and_folders(hub, api, repo_id):
    hub.upload(repo_id, {"a.txt": b"a", "b.txt": b"b", "dir/x.txt": b"x", "dir/deep/y.bin": b"y"})
    api.create_commit(
        repo_id,
        [
            CommitOperationDelete("a.txt"),
            CommitOperationDelete("dir/"),
            CommitOperationAdd("c.txt", b"c"),
        ],
        commit_message="Delete and add",
    )
    assert set(hub.files(repo_id)) == {".gitattributes", "b.txt", "c.txt"}
    assert hub.commits(repo_id)[0][1] == "Delete and add"
    with pytest.raises(EntryNotFoundError):
        api.delete_file("does-not-exist.txt", repo_id)
    with pytest.raises(EntryNotFoundError):
        api.delete_folder("no-such-folder", repo_id)


def test_commit_rejects_unknown_lfs_objects_and_binary_regular_files(hub, api, repo_id):
    def commit(operation: dict) -> httpx2.Response:
        header = {"key": "header", "value": {"summary": "raw commit", "description": ""}}
        body = "\n".join(json.dumps(line) for line in (header, operation)).encode()
        headers = {"Authorization": f"Bearer {hub.token}", "Content-Type": "application/x-ndjson"}
        return get_session().post(f"{hub.url}/api/models/{repo_id}/commit/main", content=body, headers=headers)

    never_uploaded = {"path": "w.bin", "algo": "sha256", "oid": hashlib.sha256(b"nope").hexdigest(), "size": 4}
    assert commit({"key": "lfsFile", "value": never_uploaded}).status_code == 400
    binary = {"path": "w.bin", "content": base64.b64encode(BLOB).decode(), "encoding": "base64"}
    assert commit({"key": "file", "value": binary}).status_code == 400
    assert len(hub.commits(repo_id)) == 1
    text = {"path": "ok.txt", "content": base64.b64encode(b"fine").decode(), "encoding": "base64"}
    answer = commit({"key": "file", "value": text})
    assert answer.status_code == 200 and answer.json()["commitOid"] == hub.commits(repo_id)[0][0]


def test_branches_tags_and_downloads_at_old_revisions(hub, api, repo_id, fresh_hf_cache):
    v1 = api.upload_file(path_or_fileobj=b"version 1", path_in_repo="file.txt", repo_id=repo_id).oid
    api.create_tag(repo_id, tag="v1", tag_message="first")
    api.create_branch(repo_id, branch="dev")
    with pytest.raises(HfHubHTTPError) as error:
        api.create_branch(repo_id, branch="dev")
    assert error.value.response.status_code == 409
    api.create_branch(repo_id, branch="dev", exist_ok=True)
    v2 = api.upload_file(path_or_fileobj=b"version 2", path_in_repo="file.txt", repo_id=repo_id).oid
    api.upload_file(path_or_fileobj=b"dev only", path_in_repo="dev.txt", repo_id=repo_id, revision="dev")

    refs = api.list_repo_refs(repo_id)
    assert {b.name: b.target_commit for b in refs.branches}["main"] == v2
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": v1} and refs.converts == []
    commits = api.list_repo_commits(repo_id)
    assert [c.commit_id for c in commits[:2]] == [v2, v1] and commits[-1].title == "initial commit"
    assert [c.commit_id for c in api.list_repo_commits(repo_id, revision="dev")][1] == v1

    for revision in ("v1", v1, v1[:10], "dev"):
        assert read(hf_hub_download(repo_id, "file.txt", revision=revision)) == b"version 1"
    assert read(hf_hub_download(repo_id, "file.txt")) == b"version 2"
    assert read(hf_hub_download(repo_id, "dev.txt", revision="dev")) == b"dev only"
    assert api.model_info(repo_id, revision="v1").sha == v1
    assert api.list_repo_files(repo_id, revision=v1) == [".gitattributes", "file.txt"]

    api.delete_tag(repo_id, tag="v1")
    api.delete_branch(repo_id, branch="dev")
    assert hub.refs(repo_id)["tags"] == {} and set(hub.refs(repo_id)["branches"]) == {"main"}
    with pytest.raises(RevisionNotFoundError):
        api.delete_tag(repo_id, tag="v1")


def test_errors_map_to_the_client_exceptions(hub, api, repo_id):
    hub.upload(repo_id, {"config.json": b"{}"})
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(f"{hub.user}/no-such-repo")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(f"{hub.user}/no-such-repo", "config.json")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, "config.json", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(repo_id, revision="no-such-branch")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "missing.json")
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(repo_id, "no-such-folder"))
    assert api.repo_exists(repo_id) and not api.repo_exists(f"{hub.user}/no-such-repo")
    assert api.file_exists(repo_id, "config.json") and not api.file_exists(repo_id, "missing.json")
    assert api.revision_exists(repo_id, "main") and not api.revision_exists(repo_id, "nope")
    with pytest.raises(BadRequestError):  # only branches take commits
        api.upload_file(
            path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id, revision=hub.commits(repo_id)[0][0]
        )


def test_hffs_reads_a_byte_range(hub, repo_id):
    data = bytes(range(256)) * 40
    hub.upload(repo_id, {"weights/shard.bin": data, "notes.md": b"# notes\n"})
    fs = HfFileSystem(skip_instance_cache=True)
    assert fs.ls(f"{repo_id}/weights", detail=False) == [f"{repo_id}/weights/shard.bin"]
    assert fs.info(f"{repo_id}/weights/shard.bin")["size"] == len(data)
    first_response = len(hub.responses)
    with fs.open(f"{repo_id}/weights/shard.bin", "rb", block_size=1024) as f:
        f.seek(5000)
        assert f.read(100) == data[5000:5100]
    assert any(status == 206 and path.startswith("/cdn-lfs/") for _, path, status in hub.responses[first_response:])
    assert fs.cat(f"{repo_id}/notes.md") == b"# notes\n"
    assert sorted(fs.glob(f"{repo_id}/**/*.bin")) == [f"{repo_id}/weights/shard.bin"]


def test_an_injected_failure_on_the_commit_leaves_the_repo_unchanged(hub, api, repo_id):
    hub.upload(repo_id, {"config.json": b"{}"})
    commits, files = hub.commits(repo_id), hub.files(repo_id)
    hub.fail_next("/commit/", 500)
    with pytest.raises(HfHubHTTPError) as error:
        api.upload_file(path_or_fileobj=WEIGHTS, path_in_repo="model.safetensors", repo_id=repo_id)
    assert error.value.response.status_code == 500
    hub.fail_next("/commit/", status=0)  # the connection drops: a network error
    with pytest.raises(httpx2.TransportError):
        api.upload_file(path_or_fileobj=WEIGHTS, path_in_repo="model.safetensors", repo_id=repo_id)
    assert hub.commits(repo_id) == commits and hub.files(repo_id) == files
    api.upload_file(
        path_or_fileobj=WEIGHTS, path_in_repo="model.safetensors", repo_id=repo_id
    )  # the LFS object is there
    assert len(hub.commits(repo_id)) == len(commits) + 1


def test_stale_parent_commit_and_pull_requests(hub, api, repo_id, fresh_hf_cache):
    parent = hub.upload(repo_id, {"a.txt": b"a"})
    hub.upload(repo_id, {"b.txt": b"b"})
    with pytest.raises(HfHubHTTPError) as error:
        api.upload_file(path_or_fileobj=b"c", path_in_repo="c.txt", repo_id=repo_id, parent_commit=parent)
    assert error.value.response.status_code == 412
    pr = api.upload_file(path_or_fileobj=b"c", path_in_repo="c.txt", repo_id=repo_id, create_pr=True)
    assert pr.pr_revision == "refs/pr/1" and pr.pr_num == 1
    assert "c.txt" not in hub.files(repo_id) and "c.txt" in hub.files(repo_id, revision="refs/pr/1")
    assert read(hf_hub_download(repo_id, "c.txt", revision="refs/pr/1")) == b"c"
    assert [ref.ref for ref in api.list_repo_refs(repo_id, include_pull_requests=True).pull_requests] == ["refs/pr/1"]


def test_tree_pagination_follows_the_link_header(hub, api, repo_id, monkeypatch):
    hub.upload(repo_id, {f"shard-{i}.txt": b"x" for i in range(7)})
    monkeypatch.setattr(hub, "page_size", 3)
    first_request = len(hub.requests)
    assert len(api.list_repo_files(repo_id)) == 8
    assert len([r for r in hub.requests[first_request:] if "/tree/" in r[1]]) == 3


def test_delete_repo(hub, api, repo_id):
    api.delete_repo(repo_id)
    assert not hub.repo_exists(repo_id) and not api.repo_exists(repo_id)
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo(repo_id)
    api.delete_repo(repo_id, missing_ok=True)


def _splits() -> DatasetDict:
    rows = [
        {"id": f"q{i}", "question": f"Question {i}?", "answer": "yes" if i % 2 else "no", "score": i / 2}
        for i in range(12)
    ]
    return DatasetDict({"train": Dataset.from_list(rows[:9]), "test": Dataset.from_list(rows[9:])})


def test_dataset_parquet_files_load_and_stream_identically(hub, api, tmp_path, fresh_hf_cache):
    splits = _splits()
    repo_id = api.create_repo(f"{hub.user}/data-{uuid.uuid4().hex[:8]}", repo_type="dataset").repo_id
    (tmp_path / "data").mkdir()
    for split, dataset in splits.items():
        dataset.to_parquet(str(tmp_path / "data" / f"{split}-00000-of-00001.parquet"))
    before = len(hub.commits(repo_id, "dataset"))
    api.upload_folder(repo_id=repo_id, folder_path=tmp_path, repo_type="dataset")
    assert len(hub.commits(repo_id, "dataset")) == before + 1
    assert hub.lfs_files(repo_id, "dataset") == {
        "data/train-00000-of-00001.parquet",
        "data/test-00000-of-00001.parquet",
    }

    loaded = load_dataset(repo_id)
    streamed = load_dataset(repo_id, streaming=True)
    for split, dataset in splits.items():
        assert loaded[split].to_list() == dataset.to_list()
        assert list(streamed[split]) == dataset.to_list()


def test_datasetdict_push_to_hub_then_load_dataset(hub, fresh_hf_cache):
    splits = _splits()
    repo_id = f"{hub.user}/pushed-{uuid.uuid4().hex[:8]}"
    splits.push_to_hub(repo_id)
    assert {"README.md", "data/train-00000-of-00001.parquet", "data/test-00000-of-00001.parquet"} <= set(
        hub.files(repo_id, "dataset")
    )
    loaded = load_dataset(repo_id)
    assert {split: loaded[split].to_list() for split in loaded} == {split: splits[split].to_list() for split in splits}
    assert list(load_dataset(repo_id, split="test", streaming=True)) == splits["test"].to_list()


def test_model_card_validation_and_push(hub, api, repo_id):
    data = ModelCardData(license="apache-2.0", tags=["jmlr"], model_name="tiny", eval_results=[])
    card = ModelCard.from_template(data, model_id="tiny")
    card.validate()
    bad = RepoCard("---\nlicense: apache-2.0\nmodel-index:\n  name: not-a-list\n---\n# Bad card\n")
    with pytest.raises(ValueError, match="model-index"):
        bad.validate(repo_type="model")
    with pytest.raises(ValueError, match="model-index"):  # create_commit validates README.md before uploading
        api.upload_file(path_or_fileobj=str(bad).encode(), path_in_repo="README.md", repo_id=repo_id)
    card.push_to_hub(repo_id)
    assert hub.files(repo_id)["README.md"] == str(card).encode()
    assert ModelCard.load(repo_id).data.license == "apache-2.0"
    assert api.model_info(repo_id).card_data.tags == ["jmlr"]


def test_transformers_round_trip(hub, repo_id, fresh_hf_cache):
    from transformers import AutoConfig, AutoModel, BertConfig, BertModel

    config = BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    model = BertModel(config)
    model.push_to_hub(repo_id)
    assert "model.safetensors" in hub.lfs_files(repo_id)
    assert AutoConfig.from_pretrained(repo_id).hidden_size == 8
    reloaded = AutoModel.from_pretrained(repo_id)
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))


def test_a_second_hub_starts_and_stops(hub):
    with StandInHub(user="someone-else") as other:
        assert other.url != hub.url
        response = httpx2.get(f"{other.url}/api/whoami-v2", headers={"Authorization": f"Bearer {other.token}"})
        assert response.json()["name"] == "someone-else"
        assert httpx2.get(f"{other.url}/api/models/someone-else/nothing").headers["X-Error-Code"] == "RepoNotFound"
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(f"{other.url}/api/whoami-v2")
