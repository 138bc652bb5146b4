"""A stand-in Hugging Face Hub for the test suite: a small HTTP server on 127.0.0.1 with an in-memory store.

It speaks the subset of the Hub HTTP API that `huggingface_hub` 2.x, `transformers` 5.x and `datasets` 5.x use to
create repos, push commits (regular files inline, large/binary files through Git LFS) and download or stream files,
closely enough that the client libraries cannot tell it from the real Hub. Standard library only (plus PyYAML, a
dependency of `huggingface_hub`, to read card metadata); it starts in milliseconds on daemon threads.

Routes (`{type}` is `model`, `dataset` or `space`; `{prefix}` is "", "datasets/" or "spaces/"; `{repo}` is `name` or
`namespace/name`; `{rev}` is a branch, a tag, `refs/pr/N` or a commit id, quoted or not):

    GET    /api/whoami-v2                                   the dummy user (401 without a valid Bearer token)
    POST   /api/validate-yaml                               card metadata validation ({"errors": [], "warnings": []})
    POST   /api/repos/create                                409 {"error", "url"} if the repo exists
    DELETE /api/repos/delete
    GET    /api/{type}s/{repo}[/revision/{rev}]             repo info: id, sha, siblings, private, cardData, ...
    PUT    /api/{type}s/{repo}/settings                     private / visibility
    GET    /api/{type}s/{repo}/tree/{rev}[/{path}]          ?recursive, ?expand; paginated through a `Link` header
    POST   /api/{type}s/{repo}/paths-info/{rev}             form fields `paths` (repeated) and `expand`
    GET    /api/{type}s/{repo}/refs                         ?include_prs=1
    GET    /api/{type}s/{repo}/commits/{rev}                newest first; paginated through a `Link` header
    POST   /api/{type}s/{repo}/branch/{name}                {"startingPoint": rev}; DELETE removes the branch
    POST   /api/{type}s/{repo}/tag/{rev}                    {"tag", "message"}; DELETE .../tag/{name} removes it
    POST   /api/{type}s/{repo}/preupload/{rev}              uploadMode "lfs" or "regular" per file, and its remote oid
    POST   /api/{type}s/{repo}/commit/{rev}                 NDJSON: header, file, lfsFile, deletedFile, deletedFolder;
                                                            ?create_pr=1 opens refs/pr/N; 412 on a stale parentCommit
    POST   /{prefix}{repo}.git/info/lfs/objects/batch       Git LFS batch API (upload; basic single-part transfer)
    PUT    /{prefix}{repo}.git/info/lfs/objects/{oid}       the LFS upload target (sha256 and size are checked)
    POST   /{prefix}{repo}.git/info/lfs/objects/verify      the LFS verify action
    HEAD   /{prefix}{repo}/resolve/{rev}/{path}             regular file: 200; LFS file: 302 to the "CDN" (below)
    GET    /{prefix}{repo}/resolve/{rev}/{path}             the same, with a body; `Range` gives a 206
    GET    /cdn-lfs/{sha256}         (on `cdn_url`)         LFS content, `Range` supported, no auth needed
    GET    /api/{type}s/{repo}/xet-write-token/{rev}        Xet: {"casUrl", "accessToken", "exp"} for the CAS below
    GET    /xet-cas/{type}/{quoted repo}/v1/chunks/...      Xet global deduplication: always 404 (none here)
    POST   /xet-cas/{type}/{quoted repo}/v1/xorbs/default/{hash}   a xorb (checked to parse, kept by hash)
    POST   /xet-cas/{type}/{quoted repo}/v1/shards          a shard: each file it lists is rebuilt from the xorbs,
                                                            checked against its SHA-256 and kept as an LFS object
    POST   /v1/telemetry                                    hf_xet's usage report (accepted, dropped)

Xet, huggingface_hub's default upload path when `hf_xet` is installed, needs no `HF_HUB_DISABLE_XET=1`: a file
uploaded through Xet becomes the same LFS object as one uploaded through Git LFS, so commits (`lfsFile`) and
downloads work alike; downloads are served over plain HTTP (no `X-Xet-Hash` header, so the client does not use Xet
to download). `xorb-grants` and `v2/shards` answer 404, on which hf_xet uploads directly and falls back to
`v1/shards`. The formats are described in `xet_cas.py`. The test fixtures still set `HF_HUB_DISABLE_XET=1` for
most tests, to exercise the Git LFS path and its failure injection; tests/hub/test_xet_upload.py runs with Xet on.

Like the real Hub, LFS files are answered with a 302 to a "CDN" on another origin (a second port), so the client's
redirect handling is exercised: HEAD metadata come from the 302 (`X-Linked-Etag`, `X-Linked-Size`), the download goes
to the CDN without the Authorization header. A new repo starts with an "initial commit" holding `.gitattributes`.
Errors carry `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound), `X-Error-Message` and {"error": ...}.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import posixpath
import re
import struct
import threading
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import yaml

from . import xet_cas

DEFAULT_TOKEN = "hf_standin_jmlr_tester_token"
DEFAULT_USER = "jmlr-tester"
REPO_TYPES = ("model", "dataset", "space")
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # the Hub refuses regular (non-LFS) files above 10 MiB, and binary files
# The patterns of the `.gitattributes` the Hub writes in a new repo (dataset repos get media formats on top).
_DEFAULT_LFS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.faiss *.ftz *.gguf *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy"
    " *.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors saved_model/**/* *.tar.* *.tar"
    " *.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents*"
)
LFS_PATTERNS = _DEFAULT_LFS.split()
DATASET_LFS_PATTERNS = "*.mds *.lz4 *.flac *.mp3 *.ogg *.wav *.gif *.jpeg *.jpg *.png *.webp *.mp4 *.webm".split()  # noqa: SIM905
_API_ACTIONS = {
    "revision",
    "tree",
    "paths-info",
    "refs",
    "commits",
    "branch",
    "tag",
    "preupload",
    "commit",
    "settings",
    "xet-write-token",
}
_PR_REF = re.compile(r"refs/pr/(\d+)")
_HEX = re.compile(r"[0-9a-f]{7,40}")
_YAML_BLOCK = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(\r\n|\n|$))")  # as the Hub


def git_oid(data: bytes) -> str:
    """The git blob id of `data`: sha1 of "blob {len}\\0" + data."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:512]  # the Hub sees the first 512 bytes (the preupload "sample")


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def card_metadata(text: str) -> dict | None:
    """The YAML block at the top of a README.md, or None. Raises yaml.YAMLError on invalid YAML."""
    match = _YAML_BLOCK.search(text)
    return yaml.safe_load(match.group(2)) if match else None


# ----------------------------------------------------------------------------------------------------------- store


@dataclass(frozen=True)
class Blob:
    """A file version: `oid` is the git blob id (of the content, or of the LFS pointer for an LFS file)."""

    data: bytes
    lfs: bool
    sha256: str
    oid: str

    @classmethod
    def make(cls, data: bytes, lfs: bool) -> Blob:
        sha256 = hashlib.sha256(data).hexdigest()
        return cls(data, lfs, sha256, git_oid(lfs_pointer(sha256, len(data)) if lfs else data))

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, len(self.data)))


@dataclass
class Commit:
    id: str
    parent: str | None
    title: str
    message: str
    date: str
    files: dict[str, Blob]


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    created_at: str
    sdk: str | None = None
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit id
    tags: dict[str, str] = field(default_factory=dict)
    pull_requests: dict[int, str] = field(default_factory=dict)
    lfs_oids: set[str] = field(default_factory=set)  # LFS objects uploaded to this repo


class HubError(Exception):
    """An error answer: status, message, and the `X-Error-Code` the client maps to an exception."""

    def __init__(self, status: int, message: str, code: str | None = None, headers=None, extra=None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers, self.extra = dict(headers or {}), dict(extra or {})


def repo_not_found(repo_type: str, repo_id: str) -> HubError:
    return HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")


class HubStore:
    """Repos -> commits -> {path: Blob}, plus branches, tags, pull-request refs and the LFS object store."""

    def __init__(self):
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_blobs: dict[str, bytes] = {}  # sha256 -> content, shared by all repos (the "CDN")
        # Xet xorbs by hash, shared by all repos and kept by `reset` (hf_xet's local cache may deduplicate against
        # a xorb uploaded earlier in the session): see xet_cas.py.
        self.xorbs: dict[str, bytes] = {}
        self._counter = itertools.count()

    def get(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise repo_not_found(repo_type, repo_id)
        return repo

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False, sdk: str | None = None) -> Repo:
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, f"You already created this {repo_type} repo")
            repo = Repo(repo_id, repo_type, private, _now(), sdk)
            patterns = LFS_PATTERNS + (DATASET_LFS_PATTERNS if repo_type == "dataset" else [])
            gitattributes = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in patterns).encode()
            self.repos[(repo_type, repo_id)] = repo
            self._add_commit(repo, "main", {".gitattributes": Blob.make(gitattributes, lfs=False)}, "initial commit")
            return repo

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        with self.lock:
            if self.repos.pop((repo_type, repo_id), None) is None:
                raise repo_not_found(repo_type, repo_id)

    def _add_commit(self, repo: Repo, ref: str, files: dict[str, Blob], title: str, message: str = "") -> Commit:
        """Append a commit holding `files` on top of `ref` (a branch name or refs/pr/N), which is moved to it."""
        pr = _PR_REF.fullmatch(ref)
        parent = repo.pull_requests.get(int(pr.group(1))) if pr else repo.branches.get(ref)
        seed = f"{repo.repo_type}/{repo.repo_id}\n{parent}\n{title}\n{next(self._counter)}\n{_now()}"
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent, title, message, _now(), files)
        repo.commits[commit.id] = commit
        if pr:
            repo.pull_requests[int(pr.group(1))] = commit.id
        else:
            repo.branches[ref] = commit.id
        return commit

    def resolve(self, repo: Repo, rev: str) -> Commit:
        """The commit a revision points to: branch, tag, refs/heads/x, refs/tags/x, refs/pr/N, or a commit id."""
        pr = _PR_REF.fullmatch(rev)
        if pr and int(pr.group(1)) in repo.pull_requests:
            return repo.commits[repo.pull_requests[int(pr.group(1))]]
        for prefix, refs in (
            ("refs/heads/", repo.branches),
            ("refs/tags/", repo.tags),
            ("", repo.branches),
            ("", repo.tags),
        ):
            if rev.startswith(prefix) and rev[len(prefix) :] in refs:
                return repo.commits[refs[rev[len(prefix) :]]]
        if _HEX.fullmatch(rev):
            matches = [oid for oid in repo.commits if oid.startswith(rev)]
            if len(matches) == 1:
                return repo.commits[matches[0]]
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def history(self, repo: Repo, commit: Commit) -> list[Commit]:
        out = [commit]
        while out[-1].parent is not None:
            out.append(repo.commits[out[-1].parent])
        return out

    def commit(self, repo: Repo, ref: str, header: dict, operations: list[tuple[str, dict]], create_pr: bool):
        """Apply NDJSON commit operations on branch (or PR ref) `ref`; returns (commit, pr number or None)."""
        with self.lock:
            pr = _PR_REF.fullmatch(ref)
            if not (ref in repo.branches or (pr and int(pr.group(1)) in repo.pull_requests)):
                if ref in repo.tags or _HEX.fullmatch(ref):
                    raise HubError(400, f"Invalid rev id: {ref} is not a branch, commits can only be made on branches")
                raise HubError(404, f"Invalid rev id: {ref}", "RevisionNotFound")
            head = self.resolve(repo, ref)
            parent_commit = header.get("parentCommit")
            if parent_commit and not head.id.startswith(parent_commit):
                if create_pr and any(oid.startswith(parent_commit) for oid in repo.commits):
                    head = self.resolve(repo, parent_commit)
                else:
                    raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(head.files)
            for key, value in operations:
                path = value.get("path", "")
                if not path or path.startswith("/") or ".." in path.split("/") or path.split("/")[0] == ".git":
                    raise HubError(400, f"Invalid path: '{path}'")
                if key == "file":
                    data = (
                        base64.b64decode(value["content"])
                        if value.get("encoding") == "base64"
                        else value["content"].encode()
                    )
                    if len(data) > LFS_SIZE_THRESHOLD or _is_binary(data):
                        raise HubError(
                            400,
                            f"Your push was rejected because '{path}' is binary or larger than 10 MiB: use Git LFS",
                        )
                    files[path] = Blob.make(data, lfs=False)
                elif key == "lfsFile":
                    oid = value.get("oid", "")
                    if oid not in repo.lfs_oids or ("size" in value and value["size"] != len(self.lfs_blobs[oid])):
                        raise HubError(
                            400,
                            f"Your push was rejected because an LFS pointer pointed to a file that does not exist: '{path}' (oid {oid})",
                        )
                    files[path] = Blob.make(self.lfs_blobs[oid], lfs=True)
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: '{path}'", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    doomed = [p for p in files if p.startswith(prefix)]
                    if not doomed:
                        raise HubError(404, f"A folder with this name doesn't exist: '{path}'", "EntryNotFound")
                    for p in doomed:
                        del files[p]
                else:
                    raise HubError(400, f"Unknown commit operation: '{key}'")
            summary, description = header.get("summary", ""), header.get("description", "")
            if create_pr:
                number = max([*repo.pull_requests, 0]) + 1
                repo.pull_requests[number] = head.id
                return self._add_commit(repo, f"refs/pr/{number}", files, summary, description), number
            return self._add_commit(repo, ref, files, summary, description), None

    def lfs_patterns(self, repo: Repo, commit: Commit) -> list[str]:
        blob = commit.files.get(".gitattributes")
        if blob is None:
            return LFS_PATTERNS + (DATASET_LFS_PATTERNS if repo.repo_type == "dataset" else [])
        lines = [line.split() for line in blob.data.decode(errors="replace").splitlines()]
        return [parts[0] for parts in lines if len(parts) > 1 and "filter=lfs" in parts[1:]]

    def upload_mode(self, patterns: list[str], path: str, size: int, sample: bytes) -> str:
        def matches(pattern: str) -> bool:
            if "/" not in pattern:
                return fnmatch.fnmatchcase(posixpath.basename(path), pattern)
            return fnmatch.fnmatchcase(path, pattern.lstrip("/").replace("**/", "*"))

        return "lfs" if size > LFS_SIZE_THRESHOLD or _is_binary(sample) or any(map(matches, patterns)) else "regular"


# ----------------------------------------------------------------------------------------------------------- server


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(payload, status: int = 200, headers=None) -> Response:
    return Response(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


@dataclass
class _Failure:
    route: str
    status: int
    times: int
    method: str | None


class StandInHub:
    """The stand-in Hub: `start()` it, point HF_ENDPOINT at `.url`, send `token` as the Bearer token.

    Test helpers: `create_repo` / `upload` seed repos directly (no HTTP); `commits`, `files`, `lfs_files`, `refs` and
    `repo_exists` inspect them; `fail_next` injects failures; `requests` logs every (method, path) received and
    `responses` every (method, path, status) answered; `reset` forgets everything.
    """

    def __init__(self, token: str = DEFAULT_TOKEN, user: str = DEFAULT_USER, page_size: int = 1000):
        self.token, self.user, self.page_size = token, user, page_size
        self.store = HubStore()
        self.requests: list[tuple[str, str]] = []  # (method, path without query), in arrival order
        self.responses: list[tuple[str, str, int]] = []  # (method, path, status) once answered
        self._failures: list[_Failure] = []
        self._servers: list[ThreadingHTTPServer] = []
        self.url = self.cdn_url = ""

    # lifecycle
    def start(self) -> StandInHub:
        for _ in range(2):  # the Hub itself and its "CDN", on another origin, for LFS content
            server = _Server(("127.0.0.1", 0), _Handler)
            server.hub = self  # type: ignore[attr-defined]
            threading.Thread(target=server.serve_forever, name="standin-hub", daemon=True).start()
            self._servers.append(server)
        self.url, self.cdn_url = (f"http://127.0.0.1:{server.server_address[1]}" for server in self._servers)
        self._servers[1].is_cdn = True  # type: ignore[attr-defined]
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def __enter__(self) -> StandInHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # test helpers
    def create_repo(self, repo_id: str, repo_type: str = "model", private: bool = False) -> None:
        self.store.create_repo(repo_type, repo_id, private)

    def upload(self, repo_id: str, files: dict[str, bytes], repo_type: str = "model", message: str = "seed") -> str:
        """Commit `files` on main (LFS or regular as the Hub would decide), creating the repo if needed."""
        with self.store.lock:
            if not self.repo_exists(repo_id, repo_type):
                self.create_repo(repo_id, repo_type)
            repo = self.store.get(repo_type, repo_id)
            head = self.store.resolve(repo, "main")
            patterns = self.store.lfs_patterns(repo, head)
            merged = dict(head.files)
            for path, data in files.items():
                lfs = self.store.upload_mode(patterns, path, len(data), data[:512]) == "lfs" and len(data) > 0
                merged[path] = blob = Blob.make(data, lfs)
                if lfs:
                    self.store.lfs_blobs[blob.sha256] = data
                    repo.lfs_oids.add(blob.sha256)
            return self.store._add_commit(repo, "main", merged, message).id

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        return (repo_type, repo_id) in self.store.repos

    def commits(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list[tuple[str, str]]:
        """(commit id, title) of the history of `revision`, newest first."""
        with self.store.lock:
            repo = self.store.get(repo_type, repo_id)
            return [(c.id, c.title) for c in self.store.history(repo, self.store.resolve(repo, revision))]

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        with self.store.lock:
            repo = self.store.get(repo_type, repo_id)
            return {path: blob.data for path, blob in sorted(self.store.resolve(repo, revision).files.items())}

    def lfs_files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> set[str]:
        """The paths stored with Git LFS at `revision`."""
        with self.store.lock:
            repo = self.store.get(repo_type, repo_id)
            return {path for path, blob in self.store.resolve(repo, revision).files.items() if blob.lfs}

    def refs(self, repo_id: str, repo_type: str = "model") -> dict[str, dict]:
        with self.store.lock:
            repo = self.store.get(repo_type, repo_id)
            return {
                "branches": dict(repo.branches),
                "tags": dict(repo.tags),
                "pull_requests": dict(repo.pull_requests),
            }

    def fail_next(self, route: str, status: int = 500, times: int = 1, method: str | None = None) -> None:
        """Answer the next `times` requests whose path contains `route` (and of `method`, if given) with `status`,
        without touching the store. `status=0` drops the connection without an answer (a network error).

        Mind the client's retries: `huggingface_hub` retries 429/5xx with backoff (1 s, 2 s, 4 s, ...) on preupload,
        LFS batch/upload/verify, tree pages and downloads, but not on the commit route."""
        with self.store.lock:
            self._failures.append(_Failure(route, status, times, method.upper() if method else None))

    def clear_failures(self) -> None:
        """Drop the failures `fail_next` queued that have not fired yet."""
        with self.store.lock:
            self._failures.clear()

    def reset(self) -> None:
        """Forget all repos, LFS objects, pending failures and logged requests."""
        with self.store.lock:
            self.store.repos.clear()
            self.store.lfs_blobs.clear()
            self._failures.clear()
            self.requests.clear()
            self.responses.clear()

    def _take_failure(self, method: str, path: str) -> _Failure | None:
        with self.store.lock:
            for failure in self._failures:
                if failure.route in path and failure.method in (None, method):
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures.remove(failure)
                    return failure
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # parallel downloads (snapshot_download, HfFileSystem) open many connections at once


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    server_version = "StandInHub/1.0"

    def log_message(self, format, *args):  # noqa: A002 - silence the per-request stderr log
        pass

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = lambda self: self._dispatch()  # noqa: E731

    # plumbing
    @property
    def hub(self) -> StandInHub:
        return self.server.hub  # type: ignore[attr-defined]

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        method, split = self.command, urlsplit(self.path)
        self.query = parse_qs(split.query, keep_blank_values=True)
        self.body = self._read_body()
        self.hub.requests.append((method, split.path))
        failure = self.hub._take_failure(method, split.path)
        if failure is not None and failure.status == 0:
            self.close_connection = True  # a network error: no answer at all
            return
        try:
            if failure is not None:
                raise HubError(failure.status, f"Injected failure ({failure.status}) by the stand-in Hub")
            response = self._route(method, split.path)
        except HubError as e:
            message = e.message.replace("\n", " ")
            headers = {"X-Error-Message": message, **({"X-Error-Code": e.code} if e.code else {}), **e.headers}
            response = json_response({"error": e.message, **e.extra}, e.status, headers)
        except Exception as e:  # a bug in the stand-in: answer 500 rather than hang the client
            traceback.print_exc()
            response = json_response({"error": f"stand-in Hub error: {type(e).__name__}: {e}"}, 500)
        self.hub.responses.append((method, split.path, response.status))
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)

    def _param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def _json(self) -> dict:
        try:
            return json.loads(self.body or b"{}")
        except ValueError as e:
            raise HubError(400, f"Invalid JSON body: {e}") from e

    def _user(self, required: bool = False) -> str | None:
        """The authenticated user; 401 for a wrong token, or for no token when `required`."""
        auth = self.headers.get("Authorization", "")
        if not auth:
            if required:
                raise HubError(401, "You must be authenticated to do this (no token sent)")
            return None
        if auth != f"Bearer {self.hub.token}":
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.hub.user

    def _readable(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.hub.store.get(repo_type, repo_id)
        if repo.private and self._user() is None:
            raise HubError(401, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def _writable(self, repo_type: str, repo_id: str) -> Repo:
        self._user(required=True)
        return self.hub.store.get(repo_type, repo_id)

    def _split_repo(self, repo_type: str, segments: list[str], marker: set[str]) -> tuple[str, list[str]]:
        """Split raw path segments into a repo id (`name` or `namespace/name`) and the rest."""
        segments = [unquote(s) for s in segments[:2]] + segments[2:]
        if len(segments) >= 2 and self.hub.repo_exists("/".join(segments[:2]), repo_type):
            return "/".join(segments[:2]), segments[2:]
        if len(segments) >= 2 and segments[1] in marker:
            return segments[0], segments[1:]
        return "/".join(segments[:2]), segments[2:]

    @staticmethod
    def _split_rev(segments: list[str]) -> tuple[str, str]:
        """Split raw segments into a revision (quoted, or unquoted refs/pr/N-like) and an unquoted path."""
        if not segments or not segments[0]:
            raise HubError(400, "Missing revision")
        if segments[0] == "refs" and len(segments) >= 3 and segments[1] in ("pr", "convert", "heads", "tags"):
            return "/".join(segments[:3]), unquote("/".join(segments[3:]))
        return unquote(segments[0]), unquote("/".join(segments[1:]))

    # routing
    def _route(self, method: str, path: str) -> Response:
        if getattr(self.server, "is_cdn", False):
            if method in ("GET", "HEAD") and path.startswith("/cdn-lfs/"):
                return self._cdn(path.rsplit("/", 1)[-1])
            raise HubError(404, "Not found on the CDN")
        segments = path.strip("/").split("/")
        if path == "/api/whoami-v2" and method == "GET":
            self._user(required=True)
            return json_response(self._whoami())
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml()
        if path == "/api/repos/create" and method == "POST":
            return self._create_repo()
        if path == "/api/repos/delete" and method == "DELETE":
            return self._delete_repo()
        if segments[0] == "xet-cas" and len(segments) >= 3:
            return self._xet_cas(method, segments[1], unquote(segments[2]), segments[3:])
        if path == "/v1/telemetry" and method == "POST":  # hf_xet's usage report: accepted, not kept
            return json_response({})
        if segments[0] == "api" and len(segments) >= 3 and segments[1] in ("models", "datasets", "spaces"):
            repo_type = segments[1][:-1]
            repo_id, rest = self._split_repo(repo_type, segments[2:], _API_ACTIONS)
            return self._api(method, repo_type, repo_id, rest)
        repo_type = {"datasets": "dataset", "spaces": "space"}.get(segments[0], "model")
        segments = segments[1:] if repo_type != "model" else segments
        git = next((i for i, s in enumerate(segments[:2]) if s.endswith(".git")), None)
        if git is not None and segments[git + 1 : git + 4] == ["info", "lfs", "objects"]:
            repo_id = unquote("/".join(segments[: git + 1]))[: -len(".git")]
            return self._lfs(method, repo_type, repo_id, segments[git + 4 :])
        repo_id, rest = self._split_repo(repo_type, segments, {"resolve"})
        if rest and rest[0] == "resolve" and method in ("GET", "HEAD"):
            rev, file_path = self._split_rev(rest[1:])
            return self._resolve(repo_type, repo_id, rev, file_path)
        raise HubError(404, f"No such route: {method} {path}")

    def _api(self, method: str, repo_type: str, repo_id: str, rest: list[str]) -> Response:
        action = rest[0] if rest else ""
        store = self.hub.store
        if method == "GET" and action in ("", "revision"):
            repo = self._readable(repo_type, repo_id)
            rev = self._split_rev(rest[1:])[0] if action else "main"
            return json_response(self._repo_info(repo, store.resolve(repo, rev)))
        if method == "PUT" and action == "settings":
            repo, payload = self._writable(repo_type, repo_id), self._json()
            if "private" in payload or "visibility" in payload:
                repo.private = payload.get("private", payload.get("visibility") == "private")
            return json_response({"private": repo.private})
        if method == "GET" and action == "tree":
            repo = self._readable(repo_type, repo_id)
            rev, base = self._split_rev(rest[1:])
            commit = store.resolve(repo, rev)
            entries = self._tree(repo, commit, base.strip("/"), _truthy(self._param("recursive")))
            return self._paginated(entries, 50 if _truthy(self._param("expand")) else self.hub.page_size)
        if method == "POST" and action == "paths-info":
            repo = self._readable(repo_type, repo_id)
            commit = store.resolve(repo, self._split_rev(rest[1:])[0])
            form = parse_qs(self.body.decode(), keep_blank_values=True)
            expand = _truthy((form.get("expand") or [None])[0])
            return json_response(
                [e for p in form.get("paths", []) if (e := self._entry(repo, commit, p.strip("/"), expand))]
            )
        if method == "GET" and action == "refs":
            return json_response(self._refs(self._readable(repo_type, repo_id)))
        if method == "GET" and action == "commits":
            repo = self._readable(repo_type, repo_id)
            history = store.history(repo, store.resolve(repo, self._split_rev(rest[1:])[0]))
            return self._paginated([self._commit_json(c) for c in history], 50)
        if action == "branch" and method in ("POST", "DELETE"):
            return self._branch(method, self._writable(repo_type, repo_id), unquote("/".join(rest[1:])))
        if action == "tag" and method in ("POST", "DELETE"):
            return self._tag(method, self._writable(repo_type, repo_id), unquote("/".join(rest[1:])))
        if method == "POST" and action == "preupload":
            return self._preupload(self._writable(repo_type, repo_id), self._split_rev(rest[1:])[0])
        if method == "POST" and action == "commit":
            return self._commit(self._writable(repo_type, repo_id), self._split_rev(rest[1:])[0])
        if method == "GET" and action == "xet-write-token":
            repo = self._writable(repo_type, repo_id)
            cas_url = f"{self.hub.url}/xet-cas/{repo_type}/{quote(repo_id, safe='')}"
            expires = int(datetime.now(timezone.utc).timestamp()) + 3600
            return json_response({"casUrl": cas_url, "accessToken": self._xet_token(repo), "exp": expires})
        store.get(repo_type, repo_id)
        raise HubError(404, f"No such route: {method} /api/{repo_type}s/{repo_id}/{'/'.join(rest)}")

    def _paginated(self, items: list, size: int) -> Response:
        start = int(self._param("cursor") or 0)
        headers = {}
        if start + size < len(items):
            query = {**self.query, "cursor": [str(start + size)]}
            next_url = f"{self.hub.url}{urlsplit(self.path).path}?{urlencode(query, doseq=True)}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        return json_response(items[start : start + size], headers=headers)

    # account, cards, repos
    def _whoami(self) -> dict:
        return {
            "type": "user",
            "id": hashlib.sha1(self.hub.user.encode()).hexdigest()[:24],
            "name": self.hub.user,
            "fullname": "JMLR Tester",
            "email": f"{self.hub.user}@example.com",
            "emailVerified": True,
            "isPro": False,
            "canPay": False,
            "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "stand-in", "role": "write"}},
        }

    def _validate_yaml(self) -> Response:
        payload = self._json()
        errors: list[str] = []
        try:
            metadata = card_metadata(payload.get("content", ""))
        except yaml.YAMLError as e:
            metadata, errors = None, [f"Invalid YAML in README.md metadata: {e}"]
        warnings = []
        if metadata is None and not errors:
            warnings.append({"message": "empty or missing yaml metadata in repo card"})
        elif metadata is not None:
            errors += card_metadata_errors(metadata, payload.get("repoType") or "model")
        if not errors:
            return json_response({"errors": [], "warnings": warnings})
        if "text/plain" in self.headers.get("Accept", ""):
            return Response(400, "\n".join(errors).encode(), {"Content-Type": "text/plain; charset=utf-8"})
        return json_response({"errors": [{"message": m} for m in errors], "warnings": warnings}, 400)

    def _create_repo(self) -> Response:
        user, payload = self._user(required=True), self._json()
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES or not payload.get("name"):
            raise HubError(400, f"Invalid repo type or name: {payload}")
        if repo_type == "space" and not payload.get("sdk"):
            raise HubError(400, "A Space needs an sdk")
        repo_id = f"{payload.get('organization') or user}/{payload['name']}"
        url = f"{self.hub.url}/{URL_PREFIXES[repo_type]}{repo_id}"
        private = payload.get("private", payload.get("visibility") == "private")
        try:
            self.hub.store.create_repo(repo_type, repo_id, bool(private), payload.get("sdk"))
        except HubError as e:
            e.extra["url"] = url
            raise
        return json_response({"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self) -> Response:
        user, payload = self._user(required=True), self._json()
        repo_id = f"{payload.get('organization') or user}/{payload.get('name')}"
        self.hub.store.delete_repo(payload.get("type") or "model", repo_id)
        return Response(200)

    def _repo_info(self, repo: Repo, commit: Commit) -> dict:
        blobs = _truthy(self._param("blobs"))
        siblings = []
        for path, blob in sorted(commit.files.items()):
            sibling: dict = {"rfilename": path}
            if blobs:
                sibling.update(size=len(blob.data), blobId=blob.oid)
                if blob.lfs:
                    sibling["lfs"] = {"size": len(blob.data), "sha256": blob.sha256, "pointerSize": blob.pointer_size}
            siblings.append(sibling)
        info = {
            "_id": hashlib.sha1(f"{repo.repo_type}/{repo.repo_id}".encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0] if "/" in repo.repo_id else None,
            "sha": commit.id,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(len(b.data) for b in commit.files.values()),
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        if repo.repo_type == "space":
            info["sdk"] = repo.sdk
        readme = commit.files.get("README.md")
        try:
            card = card_metadata(readme.data.decode()) if readme else None
        except (yaml.YAMLError, UnicodeDecodeError):
            card = None
        if isinstance(card, dict):
            info["cardData"] = card
            tags = card.get("tags") or []
            info["tags"] = [tags] if isinstance(tags, str) else list(tags)
            for key in ("library_name", "pipeline_tag"):
                if repo.repo_type == "model" and isinstance(card.get(key), str):
                    info[key] = card[key]
        if repo.repo_type == "model" and "config.json" in commit.files:
            try:
                config = json.loads(commit.files["config.json"].data)
                info["config"] = {k: config[k] for k in ("architectures", "model_type") if k in config}
            except ValueError:
                pass
        expand = self.query.get("expand") or self.query.get("expand[]")
        if expand:
            info = {k: v for k, v in info.items() if k in ("_id", "id", *expand)}
        return info

    def _refs(self, repo: Repo) -> dict:
        def ref(name: str, full: str, oid: str) -> dict:
            return {"name": name, "ref": full, "targetCommit": oid}

        out = {
            "branches": [ref(n, f"refs/heads/{n}", oid) for n, oid in repo.branches.items()],
            "tags": [ref(n, f"refs/tags/{n}", oid) for n, oid in repo.tags.items()],
            "converts": [],
        }
        if _truthy(self._param("include_prs")):
            out["pullRequests"] = [ref(f"{n}", f"refs/pr/{n}", oid) for n, oid in repo.pull_requests.items()]
        return out

    def _branch(self, method: str, repo: Repo, name: str) -> Response:
        with self.hub.store.lock:
            if not name or name.startswith(("refs/", "/")) or name.endswith("/") or ".." in name:
                raise HubError(400, f"Invalid reference for a branch: {name}")
            if method == "DELETE":
                if name not in repo.branches:
                    raise HubError(404, f"Branch not found: {name}", "RevisionNotFound")
                if name == "main":
                    raise HubError(403, "Cannot delete the default branch")
                del repo.branches[name]
                return Response(200)
            if name in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{name}")
            start = self._json().get("startingPoint") or "main"
            repo.branches[name] = self.hub.store.resolve(repo, start).id
            return Response(200)

    def _tag(self, method: str, repo: Repo, name: str) -> Response:
        with self.hub.store.lock:
            if method == "DELETE":
                if repo.tags.pop(name, None) is None:
                    raise HubError(404, f"Tag not found: {name}", "RevisionNotFound")
                return Response(200)
            tag = self._json().get("tag") or ""
            if not tag or tag.startswith("refs/"):
                raise HubError(400, f"Invalid tag name: '{tag}'")
            if tag in repo.tags:
                raise HubError(409, f"Reference already exists: refs/tags/{tag}")
            repo.tags[tag] = self.hub.store.resolve(repo, name).id
            return Response(200)

    # trees
    def _last_commit(self, repo: Repo, commit: Commit, path: str, folder: bool) -> dict:
        def state(c: Commit | None):
            if c is None:
                return None
            if not folder:
                return c.files.get(path)
            return sorted((p, b.oid) for p, b in c.files.items() if p.startswith(path + "/"))

        current = commit
        for parent in self.hub.store.history(repo, commit)[1:] + [None]:
            if state(parent) != state(current):
                break
            current = parent
        return {"id": current.id, "title": current.title, "date": current.date}

    def _entry(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict | None:
        blob = commit.files.get(path)
        if blob is not None:
            entry: dict = {"type": "file", "oid": blob.oid, "size": len(blob.data), "path": path}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": blob.pointer_size}
        else:
            children = sorted((p, b.oid) for p, b in commit.files.items() if p.startswith(path + "/"))
            if not path or not children:
                return None
            tree_oid = hashlib.sha1("\n".join(f"{p} {oid}" for p, oid in children).encode()).hexdigest()
            entry = {"type": "directory", "oid": tree_oid, "size": 0, "path": path}
        if expand:
            entry["lastCommit"] = self._last_commit(repo, commit, path, blob is None)
            if blob is not None:
                entry["securityFileStatus"] = {
                    "status": "safe",
                    "avScan": {"virusFound": False},
                    "pickleImportScan": None,
                }
        return entry

    def _tree(self, repo: Repo, commit: Commit, base: str, recursive: bool) -> list[dict]:
        prefix = base + "/" if base else ""
        folders, files = set(), []
        for path in sorted(commit.files):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            if recursive:
                folders.update(prefix + "/".join(parts[:i]) for i in range(1, len(parts)))
                files.append(path)
            elif len(parts) > 1:
                folders.add(prefix + parts[0])
            else:
                files.append(path)
        if base and not files and not folders:
            raise HubError(404, f"Entry not found: '{base}' is not a folder", "EntryNotFound")
        expand = _truthy(self._param("expand"))
        return [self._entry(repo, commit, p, expand) for p in [*sorted(folders), *files]]

    def _commit_json(self, commit: Commit) -> dict:
        return {
            "id": commit.id,
            "title": commit.title,
            "message": commit.message,
            "authors": [{"user": self.hub.user, "avatar": None}],
            "date": commit.date,
        }

    # uploads
    def _preupload(self, repo: Repo, rev: str) -> Response:
        commit = self.hub.store.resolve(repo, rev)
        patterns = self.hub.store.lfs_patterns(repo, commit)
        out = []
        for file in self._json().get("files", []):
            path, size = file["path"], int(file.get("size", 0))
            sample = base64.b64decode(file.get("sample") or "")
            mode = self.hub.store.upload_mode(patterns, path, size, sample)
            entry = {"path": path, "uploadMode": mode, "shouldIgnore": False}
            if (blob := commit.files.get(path)) is not None:
                entry["oid"] = blob.sha256 if blob.lfs else blob.oid  # what the client compares to skip no-ops
            out.append(entry)
        return json_response({"files": out, "commitOid": commit.id})

    def _commit(self, repo: Repo, rev: str) -> Response:
        lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line.get("key") == "header"), None)
        if not header or not header.get("summary"):
            raise HubError(400, "A commit needs a header line with a summary")
        operations = [(line["key"], line["value"]) for line in lines if line.get("key") != "header"]
        create_pr = _truthy(self._param("create_pr"))
        commit, pr = self.hub.store.commit(repo, rev, header, operations, create_pr)
        repo_url = f"{self.hub.url}/{URL_PREFIXES[repo.repo_type]}{repo.repo_id}"
        out = {
            "success": True,
            "commitOid": commit.id,
            "commitUrl": f"{repo_url}/commit/{commit.id}",
            "hookOutput": "",
        }
        if pr is not None:
            out["pullRequestUrl"] = f"{repo_url}/discussions/{pr}"
        return json_response(out)

    def _lfs(self, method: str, repo_type: str, repo_id: str, rest: list[str]) -> Response:
        # The upload target stands for a pre-signed storage URL: the client sends no Authorization header to it.
        repo = self.hub.store.get(repo_type, repo_id) if method == "PUT" else self._writable(repo_type, repo_id)
        store = self.hub.store
        lfs_base = f"{self.hub.url}/{URL_PREFIXES[repo_type]}{repo_id}.git/info/lfs/objects"
        headers = {"Content-Type": "application/vnd.git-lfs+json"}
        if method == "POST" and rest == ["batch"]:
            payload = self._json()
            if payload.get("operation") != "upload":
                raise HubError(400, "The stand-in Hub only implements the LFS 'upload' operation")
            objects = []
            for obj in payload.get("objects", []):
                out = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if obj["oid"] not in repo.lfs_oids:  # already there: no actions, the client skips the upload
                    out["actions"] = {
                        "upload": {"href": f"{lfs_base}/{obj['oid']}"},
                        "verify": {"href": f"{lfs_base}/verify", "header": {}},
                    }
                objects.append(out)
            return Response(200, json.dumps({"transfer": "basic", "objects": objects}).encode(), headers)
        if method == "PUT" and len(rest) == 1:
            oid = rest[0]
            if hashlib.sha256(self.body).hexdigest() != oid:
                raise HubError(400, f"LFS upload rejected: content does not hash to {oid}")
            with store.lock:
                store.lfs_blobs[oid] = self.body
                repo.lfs_oids.add(oid)
            return Response(200, headers={"ETag": f'"{oid}"'})
        if method == "POST" and rest == ["verify"]:
            payload = self._json()
            if payload.get("oid") not in repo.lfs_oids or len(store.lfs_blobs[payload["oid"]]) != payload.get("size"):
                raise HubError(404, f"LFS object not found: {payload.get('oid')}")
            return Response(200, b"{}", headers)
        raise HubError(404, f"No such LFS route: {method} {'/'.join(rest)}")

    # Xet uploads (tests/testing_utils/xet_cas.py says what hf_xet sends)
    def _xet_token(self, repo: Repo) -> str:
        """The CAS write token of `repo`: issued by `xet-write-token` to the Hub token's holder, checked by the CAS."""
        secret = f"{self.hub.token}:{repo.repo_type}:{repo.repo_id}".encode()
        return "xet_write_" + hashlib.sha256(secret).hexdigest()[:32]

    def _xet_cas(self, method: str, repo_type: str, repo_id: str, rest: list[str]) -> Response:
        store = self.hub.store
        repo = store.get(repo_type, repo_id)
        if self.headers.get("Authorization", "") != f"Bearer {self._xet_token(repo)}":
            raise HubError(401, "Invalid or missing Xet CAS token")
        if method == "GET" and rest[:2] == ["v1", "chunks"]:
            raise HubError(404, "No global deduplication in the stand-in Hub")
        if method == "POST" and rest[:2] == ["v1", "xorbs"] and len(rest) == 4:
            xorb_hash = rest[3]
            try:
                sum(1 for _ in xet_cas.xorb_chunks(self.body))  # refuse a xorb that does not parse, at once
            except (xet_cas.XetFormatError, IndexError, struct.error) as e:
                raise HubError(400, f"Invalid xorb {xorb_hash}: {e}") from e
            with store.lock:
                inserted = xorb_hash not in store.xorbs
                store.xorbs[xorb_hash] = self.body
            return json_response({"was_inserted": inserted})
        if method == "POST" and rest == ["v1", "shards"]:
            try:
                with store.lock:
                    files = [(f.sha256, xet_cas.reconstruct(f, store.xorbs)) for f in xet_cas.parse_shard(self.body)]
            except (xet_cas.XetFormatError, IndexError, struct.error) as e:
                raise HubError(400, f"Invalid shard: {e}") from e
            with store.lock:
                for sha256, data in files:
                    sha256 = sha256 or hashlib.sha256(data).hexdigest()
                    store.lfs_blobs[sha256] = data  # from here on, as if uploaded through Git LFS
                    repo.lfs_oids.add(sha256)
            return json_response({"result": 1})
        raise HubError(404, f"No such Xet CAS route in the stand-in Hub: {method} /{'/'.join(rest)}")

    # downloads
    def _resolve(self, repo_type: str, repo_id: str, rev: str, path: str) -> Response:
        with self.hub.store.lock:
            repo = self._readable(repo_type, repo_id)
            commit = self.hub.store.resolve(repo, rev)
            blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.id})
        headers = {"X-Repo-Commit": commit.id, "ETag": f'"{blob.oid}"'}
        if blob.lfs:
            location = f"{self.hub.cdn_url}/cdn-lfs/{blob.sha256}?filename={quote(posixpath.basename(path))}"
            headers.update(
                {"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.data)), "Location": location}
            )
            return Response(302, b"", headers)
        return self._content(blob.data, headers)

    def _cdn(self, sha256: str) -> Response:
        data = self.hub.store.lfs_blobs.get(sha256)
        if data is None:
            raise HubError(404, "No such LFS object")
        return self._content(data, {"ETag": f'"{sha256}"'})

    def _content(self, data: bytes, headers: dict[str, str]) -> Response:
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if not match or not any(match.groups()):
            return Response(200, data, headers)
        first, last = match.groups()
        if not first:  # suffix range: the last N bytes
            start, end = max(len(data) - int(last), 0), len(data) - 1
        else:
            start, end = int(first), min(int(last), len(data) - 1) if last else len(data) - 1
        if start >= len(data) or start > end:
            return Response(416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"})
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return Response(206, data[start : end + 1], headers)


def card_metadata_errors(metadata, repo_type: str) -> list[str]:
    """The checks of the Hub's card metadata validation that the test suite cares about."""
    if not isinstance(metadata, dict):
        return ["README.md metadata must be a YAML mapping"]
    errors = []

    def strings(key: str) -> None:
        value = metadata.get(key)
        if value is not None and not (
            isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            errors.append(f'"{key}" must be a string or an array of strings')

    for key in ("license", "language", "tags", "datasets", "metrics", "base_model", "library_name", "pipeline_tag"):
        strings(key)
    if "model-index" in metadata:
        model_index = metadata["model-index"]
        if not isinstance(model_index, list):
            errors.append('"model-index" must be an array')
        else:
            for i, model in enumerate(model_index):
                if not isinstance(model, dict) or not isinstance(model.get("name"), str):
                    errors.append(f'"model-index[{i}].name" is required and must be a string')
                elif not isinstance(model.get("results"), list):
                    errors.append(f'"model-index[{i}].results" must be an array')
                else:
                    for j, result in enumerate(model["results"]):
                        if not isinstance(result, dict) or not isinstance((result.get("task") or {}).get("type"), str):
                            errors.append(f'"model-index[{i}].results[{j}].task.type" is required')
                        elif not isinstance(result.get("metrics", []), list) or any(
                            not isinstance(m, dict) or "type" not in m or "value" not in m
                            for m in result.get("metrics", [])
                        ):
                            errors.append(
                                f'"model-index[{i}].results[{j}].metrics" must be an array of {{type, value}}'
                            )
    if repo_type == "dataset" and "configs" in metadata:
        configs = metadata["configs"]
        if not isinstance(configs, list) or any(not isinstance(c, dict) or "config_name" not in c for c in configs):
            errors.append('"configs" must be an array of objects with a "config_name"')
    return errors
