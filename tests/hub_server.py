"""A small stand-in for the Hugging Face Hub on 127.0.0.1, enough for ``huggingface_hub`` to download files from it.

The real client (reached through ``HF_ENDPOINT``) asks for ``/{repo_id}/resolve/{revision}/{filename}``: a HEAD for
the file's metadata (``ETag``, ``X-Repo-Commit``, ``Content-Length``), then a GET, whole or by ``Range`` (206 and
``Content-Range``: how ``get_safetensors_metadata`` reads a header without the weights). Errors carry the
``X-Error-Code`` header that ``hf_raise_for_status`` turns into ``RepositoryNotFoundError``, ``GatedRepoError``,
``RevisionNotFoundError`` and ``RemoteEntryNotFoundError``. Of the API, only what ``snapshot_download`` asks for is
served: ``/api/models/{repo_id}/revision/{revision}`` (the commit) and ``/api/models/{repo_id}/tree/{revision}`` (the
files). Every request is recorded, so a test can prove which bytes of a checkpoint were read. A repository can get a
new commit while it is read (:meth:`HubServer.push`): its branches then answer with the new files, and the commits
before stay reachable by their hash, as on the Hub.

A file is ``bytes``, or a :class:`ZeroPadded` file (real bytes followed by zeros up to a size): a safetensors header
over a data region of zeros, so a 140 GB model can be served from a few hundred kilobytes of memory.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import unquote, urlsplit

# A ranged or whole GET larger than this is refused (500): serving a big zero-padded file whole would be a test bug.
MAX_SERVED_BYTES = 64 * 2**20
_CHUNK = 2**20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_API = re.compile(r"^/api/models/(?P<repo>[^/]+(?:/[^/]+)?)/(?P<route>revision|tree)/(?P<revision>[^/]+)$")


@dataclass(frozen=True)
class ZeroPadded:
    """A file made of ``prefix`` followed by zeros, ``size`` bytes in all."""

    prefix: bytes
    size: int

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive)."""
        head = self.prefix[start:end]
        return head + bytes(max(0, end - max(start, len(self.prefix))))


File = bytes | ZeroPadded


def _size(content: File) -> int:
    return len(content) if isinstance(content, bytes) else content.size


def _read(content: File, start: int, end: int) -> bytes:
    return content[start:end] if isinstance(content, bytes) else content.read(start, end)


@dataclass(frozen=True)
class Repo:
    """A model repository: its files at one commit, reachable by that commit and by the branch names given."""

    files: Mapping[str, File]
    commit: str = ""
    branches: tuple[str, ...] = ("main",)
    gated_token: str | None = None
    """When set, the repo is gated: only ``Authorization: Bearer <gated_token>`` gets through (403 GatedRepo else)."""
    delays: Mapping[str, float] = field(default_factory=dict)
    """Seconds to wait before answering a GET of the named files (to make one of several parallel requests last)."""
    range_totals: bool = True
    """When false, a ranged answer omits the file's size (``Content-Range: bytes 0-99/*``); a HEAD still gives it."""
    lengths: bool = True
    """When false, no answer about a file says its size: no ``Content-Length``, the body ends when the connection
    closes (as a proxy that strips the length does)."""
    statuses: Mapping[str, int] = field(default_factory=dict)
    """An answer of this status, without ``X-Error-Code``, to any request for the named files (a failing Hub, or a
    server that is not one)."""
    listed_sizes: Mapping[str, int] = field(default_factory=dict)
    """Sizes the file listing (``/tree``) gives instead of the files' own: a listing that understates them."""
    max_range: int | None = None
    """When set, a ranged answer holds at most this many bytes, however many were asked for (as some servers cap)."""
    compressed: bool = False
    """When true, error answers, and whole files where ``Range`` is ignored, are sent gzipped to a client that
    accepts it (``Content-Encoding: gzip``, ``Content-Length`` the compressed size), as many servers do."""
    ranges: bool = True
    """When false, ``Range`` is ignored, as some servers and proxies do: every GET is answered 200 with the whole
    file, sent a chunk at a time until the client stops reading (:attr:`HubServer.streamed` counts the bytes)."""
    trickle: Mapping[str, float] = field(default_factory=dict)
    """Seconds between the bytes of the body of a GET of the named files: a server that sends its answer a byte at a
    time, which no timeout of one read of the socket ends."""
    cut: Mapping[str, int] = field(default_factory=dict)
    """The body of a GET of the named files stops after this many bytes, and the connection is closed: an answer
    shorter than its ``Content-Length`` (a server or proxy that broke off)."""
    cdn: str | None = None
    """When set, requests for ``.safetensors`` files are answered ``302 Found`` to the same path (and a signature)
    at this address, another server (a CDN), as the Hub answers for files stored with LFS: the HEAD carries the
    file's size and ETag in ``X-Linked-Size`` and ``X-Linked-Etag``."""

    def __post_init__(self) -> None:
        if not self.commit:
            digest = hashlib.sha1(repr(sorted(self.files)).encode()).hexdigest()
            object.__setattr__(self, "commit", digest)


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int

    @property
    def filename(self) -> str:
        return self.path.rpartition("/")[2]


@dataclass
class HubServer:
    """``with HubServer({"org/name": Repo({...})}) as hub:`` serves at ``hub.url`` and records ``hub.requests``."""

    repos: dict[str, Repo]
    requests: list[Request] = field(default_factory=list)
    streamed: dict[str, int] = field(default_factory=dict)
    """Bytes of each file (by name) that a server ignoring ``Range`` sent whole, or began to: each chunk counted as it
    is handed to the socket (the last may have found the connection closed)."""
    earlier: dict[str, list[Repo]] = field(default_factory=dict)
    """The commits each repository had before its last :meth:`push`, reachable by their hash only."""
    _pushes: dict[str, tuple[Repo, Callable[[Request], bool]]] = field(default_factory=dict)
    _server: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None, "the server is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_state = hub

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)
            due = [repo_id for repo_id, (_, after) in self._pushes.items() if after(request)]
        for repo_id in due:  # recorded as its answer starts: the client's next request finds the new commit
            self._move(repo_id)

    def _move(self, repo_id: str) -> None:
        with self._lock:
            if repo_id in self._pushes:
                repo, _ = self._pushes.pop(repo_id)
                self.earlier.setdefault(repo_id, []).append(self.repos[repo_id])
                self.repos[repo_id] = repo

    def push(self, repo_id: str, repo: Repo, *, after: Callable[[Request], bool] | None = None) -> None:
        """Make ``repo`` the repository's new commit, on the branches it names: at once, or once a request for which
        ``after`` is true has been answered (a push while a client reads the repository). The commit before stays
        reachable by its hash."""
        assert repo.commit != self.repos[repo_id].commit, "a new commit needs a hash of its own"
        with self._lock:
            self._pushes[repo_id] = (repo, after or (lambda request: True))
        if after is None:
            self._move(repo_id)

    def at(self, repo_id: str, revision: str) -> Repo | None:
        """The repository at ``revision``, one of its current branches or any of its commits; None if none."""
        current = self.repos[repo_id]
        if revision in (*current.branches, current.commit):
            return current
        return next((repo for repo in self.earlier.get(repo_id, ()) if repo.commit == revision), None)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.streamed.clear()

    def count_streamed(self, filename: str, count: int) -> None:
        with self._lock:
            self.streamed[filename] = self.streamed.get(filename, 0) + count

    def requests_for(self, suffix: str) -> Iterator[Request]:
        """The recorded requests whose path ends with ``suffix``."""
        return (request for request in list(self.requests) if request.path.endswith(suffix))


class _Handler(http.server.BaseHTTPRequestHandler):
    server_state: HubServer
    protocol_version = "HTTP/1.1"
    compressing = False
    """Whether this answer's body is gzipped (its repo's ``compressed``, and the client accepts it)."""
    cut: int | None = None
    """Where this answer's body stops (its repo's ``cut``)."""
    trickle: float | None = None
    """Seconds between the bytes of this answer's body (its repo's ``trickle``)."""

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output clean

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except ConnectionResetError:  # a client that closed the connection before reading all of an answer
            self.close_connection = True

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _send(self, status: int, headers: Mapping[str, str], body: bytes = b"", *, send_body: bool = True) -> None:
        self.server_state.record(
            Request(
                self.command,
                unquote(urlsplit(self.path).path),
                self.headers.get("Range"),
                self.headers.get("Authorization"),
                status,
            )
        )
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers and not self.close_connection:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and body:
            if self.cut is not None:
                body, self.close_connection = body[: self.cut], True
            try:
                if self.trickle is None:
                    self.wfile.write(body)
                else:
                    for at in range(len(body)):
                        self.wfile.write(body[at : at + 1])
                        self.wfile.flush()
                        time.sleep(self.trickle)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client stopped reading (a download refused part-way)

    def _stream(self, filename: str, content: File, headers: Mapping[str, str], *, sized: bool) -> None:
        """The whole file, 200, a chunk at a time (its size said when ``sized``): a client that has what it needs
        closes the connection."""
        size = _size(content)
        if self.compressing:
            whole = gzip.compress(_read(content, 0, size))
            self._send(200, {**headers, "Content-Encoding": "gzip", "Content-Length": str(len(whole))}, whole)
            return
        self._send(200, {**headers, "Content-Length": str(size)} if sized else headers, send_body=False)
        for start in range(0, size, _CHUNK):
            chunk = _read(content, start, min(start + _CHUNK, size))
            # counted before it is written: once written, the client may read it, finish and be checked before this
            # thread runs again
            self.server_state.count_streamed(filename, len(chunk))
            try:
                self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return

    def _error(self, status: int, code: str | None, message: str, extra: Mapping[str, str] = ()) -> None:
        headers = {"Content-Type": "application/json", **dict(extra)}
        if code is not None:
            headers["X-Error-Code"] = code
        headers["X-Error-Message"] = message
        body = ('{"error": "' + message + '"}').encode()
        if self.compressing:
            body = gzip.compress(body)
            headers |= {"Content-Encoding": "gzip", "Content-Length": str(len(body))}
        self._send(status, headers, body, send_body=self.command != "HEAD")

    def _repo(self, repo_id: str, revision: str) -> Repo | None:
        """The repo at ``revision``, or None once the error the Hub would give has been sent."""
        repo = self.server_state.repos.get(repo_id)
        if repo is None:
            # The Hub answers 401 for a repo it cannot show (missing or private), with this error code.
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if repo.gated_token is not None and self.headers.get("Authorization") != f"Bearer {repo.gated_token}":
            self._error(403, "GatedRepo", "Access to model is restricted. You must have access to it.")
            return None
        at = self.server_state.at(repo_id, revision)
        if at is None:
            self._error(404, "RevisionNotFound", "Invalid rev id: " + revision)
        return at

    def _api(self, path: str, *, body: bool) -> None:
        match = _API.match(path)
        if match is None:
            self._error(404, None, "Not Found")  # the other /api/... routes, which this server does not implement
            return
        repo = self._repo(match["repo"], match["revision"])
        if repo is None:
            return
        payload: object
        if match["route"] == "revision":
            payload = {
                "id": match["repo"],
                "sha": repo.commit,
                "siblings": [{"rfilename": name} for name in repo.files],
            }
        else:  # every file, recursively, on one page (no Link header)
            payload = [
                {
                    "type": "file",
                    "path": name,
                    "size": repo.listed_sizes.get(name, _size(content)),
                    "oid": hashlib.sha1(name.encode()).hexdigest(),
                }
                for name, content in repo.files.items()
            ]
        self._send(200, {"Content-Type": "application/json"}, json.dumps(payload).encode(), send_body=body)

    def _answer(self, *, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        if path.startswith("/api/models/"):
            self._api(path, body=body)
            return
        repo_id, resolve, rest = path.lstrip("/").partition("/resolve/")
        revision, _, filename = rest.partition("/")
        if not resolve or not filename:
            self._error(404, None, "Not Found")
            return
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        self.compressing = repo.compressed and "gzip" in self.headers.get("Accept-Encoding", "")
        self.cut = repo.cut.get(filename)
        self.trickle = repo.trickle.get(filename)
        content = repo.files.get(filename)
        commit = {"X-Repo-Commit": repo.commit}
        if filename in repo.statuses:
            self._error(repo.statuses[filename], None, "failing on purpose", commit)
            return
        if content is None:
            self._error(404, "EntryNotFound", "Entry not found", commit)
            return
        if repo.cdn is not None and filename.endswith(".safetensors"):
            etag = hashlib.sha256(repo.commit.encode() + filename.encode()).hexdigest()
            location = f"{repo.cdn}{urlsplit(self.path).path}?X-Amz-Signature=abc"
            headers = {**commit, "Location": location, "X-Linked-Size": str(_size(content)), "X-Linked-Etag": etag}
            self._send(302, headers, send_body=False)
            return
        if body and filename in repo.delays:
            time.sleep(repo.delays[filename])
        size = _size(content)
        etag = hashlib.sha256(repo.commit.encode() + filename.encode()).hexdigest()
        headers = {"ETag": f'"{etag}"', **commit, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if not repo.lengths:
            # the body ends when the connection does; said, so that a client does not send its next request on it
            # (after a HEAD, which has no body to end, it would, and find the connection closed)
            headers["Connection"] = "close"
            self.close_connection = True
        if not body:
            self._send(200, {**headers, "Content-Length": str(size)} if repo.lengths else headers, send_body=False)
            return
        requested = self.headers.get("Range")
        if not repo.ranges:
            self._stream(filename, content, headers, sized=repo.lengths)
            return
        if requested is None:
            if size > MAX_SERVED_BYTES:
                self._error(500, None, f"refusing to serve {size} bytes whole")
                return
            self._send(200, headers, _read(content, 0, size))
            return
        match = _RANGE.match(requested.strip())
        if match is None or (not match.group(1) and not match.group(2)):
            self._error(416, None, "Malformed range")
            return
        if match.group(1):
            start = int(match.group(1))
            end = min(int(match.group(2)) + 1 if match.group(2) else size, size)
        else:  # bytes=-N: the last N bytes
            start, end = max(0, size - int(match.group(2))), size
        if repo.max_range is not None:
            end = min(end, start + repo.max_range)
        if start >= size or start >= end:
            self._error(416, None, "Range not satisfiable", {"Content-Range": f"bytes */{size}"})
            return
        if end - start > MAX_SERVED_BYTES:
            self._error(500, None, f"refusing to serve {end - start} bytes")
            return
        total = str(size) if repo.range_totals else "*"
        self._send(206, {**headers, "Content-Range": f"bytes {start}-{end - 1}/{total}"}, _read(content, start, end))
