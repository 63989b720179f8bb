"""Models on the Hugging Face Hub (``hf:org/name[@revision]``): ``config.json`` and safetensors headers only.

``huggingface_hub`` fetches the config (with ``--trust-remote-code``, the repository's Python files too, within
``MAX_CODE_FILES`` and ``MAX_CODE_BYTES``) and each shard's header is read with HTTP range requests, as
``get_safetensors_metadata`` reads them: a 140 GB model costs a few hundred kilobytes of traffic. Each answer is read
as a stream, no further than the header: a server that ignores ``Range`` and sends the whole file is cut off there.
The headers are checked as local files' are (:mod:`.safetensors`), against each file's size from the
``Content-Range`` of its first range, and the shards as a local directory's are (:func:`.checkpoint.check_files`):
each tensor in one file only, in the file the index names. ``HF_TOKEN`` and
``HF_ENDPOINT`` are honoured, read when the call is made. Offline (``HF_HUB_OFFLINE``), the Hub cache alone is read:
the headers of weights downloaded whole before (by transformers), checked alike, and the cached ``config.json``.

No request is retried, and each waits at most huggingface_hub's own timeouts (``HF_HUB_ETAG_TIMEOUT`` for a file's
metadata, ``HF_HUB_DOWNLOAD_TIMEOUT`` for its bytes, 10 s each by default); the whole reading is given ``DEADLINE``
seconds. Each file is first asked for with one HEAD of paramscope's own (``get_hf_file_metadata``): its failure is
the server's answer as it is, where ``hf_hub_download`` would retry it for minutes and then report a missing file.

A branch or tag is read at one commit, as ``snapshot_download`` reads it: the first answer names the commit
(``X-Repo-Commit``; offline, ``refs/<branch>`` in the Hub cache), every later request of the reading asks for that
commit, and a note names it. A push while the model is read (an upload under way) would otherwise mix the index of one
commit with the shards of another.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import ParamscopeError, SourceError, TargetError
from .._report import Report
from .._units import format_bytes
from .checkpoint import MAX_CONFIG_BYTES, StoredTensor, check_files, checkpoint_report
from .safetensors import MAX_HEADER_BYTES, MAX_INDEX_BYTES, SINGLE_FILE, header_tensors, parse_header, read_index

PREFIX = "hf:"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$", re.ASCII)  # \w: ASCII, as the Hub's
_COMMIT = re.compile(r"[0-9a-f]{40}")  # a full commit hash, as huggingface_hub's REGEX_COMMIT_HASH
INDEX_FILE = "model.safetensors.index.json"
# The first range asked for, as huggingface_hub asks: 97 % of headers fit in it (huggingface_hub PR 1855).
_FIRST_RANGE = 100_000
# sizes in ASCII digits, at most 20 (2**64 has 20): a server's header is not handed to int() whatever it holds
_SIZE = r"[0-9]{1,20}"
_CONTENT_RANGE = re.compile(rf"^bytes (?:{_SIZE}-{_SIZE}|\*)/({_SIZE})$")
_CONTENT_LENGTH = re.compile(rf"^{_SIZE}$")
_MAX_ERROR_BYTES = 65_536
"""How much of an error answer's body is read, for its message."""
_MAX_WORKERS = 8
DEADLINE = 300.0
"""Seconds the reading of one Hub model may take in all (its requests, not the building of a model)."""
_LATER = "try again later, or download the model and pass its local directory instead"
# What paramscope reads of a repository besides the headers, and how much of each (as of a local file)
CONFIG_FILE = "config.json"
MAX_CODE_FILES = 1_000
MAX_CODE_BYTES = 64 * 2**20
"""How many Python files of a repository ``--trust-remote-code`` downloads at most, and how many bytes in all."""
_LIMITS = {
    CONFIG_FILE: (MAX_CONFIG_BYTES, "larger than 16 MiB, not a model config"),
    INDEX_FILE: (MAX_INDEX_BYTES, "index larger than 100 MB"),
}

if TYPE_CHECKING:
    from huggingface_hub import HfFileMetadata
    from huggingface_hub.utils.tqdm import tqdm

_Result = TypeVar("_Result")


def parse(target: str) -> tuple[str, str | None]:
    """``hf:org/name@revision`` → ``("org/name", "revision")``.

    The id is checked by huggingface_hub's own ``validate_repo_id`` (no ``--`` or ``..``, org and name at most 96
    characters each, no trailing ``.`` or ``.git``), which its download functions would otherwise raise on; so
    ``HF_ENDPOINT`` is checked and huggingface_hub imported first (its import parses ``HF_ENDPOINT``).

    >>> parse("hf:meta-llama/Llama-3.1-8B@main")
    ('meta-llama/Llama-3.1-8B', 'main')
    """
    from .target import require

    repo, at, revision = target.removeprefix(PREFIX).partition("@")
    # "." and ".." would be path segments of the file's URL of their own, removed from it before it is sent
    if _REPO_ID.match(repo) and (revision or not at) and revision not in (".", ".."):
        check_endpoint(f"{target}: ", requests=True)
        require("huggingface_hub", "hf", f"reading {target}")
        from huggingface_hub.errors import HFValidationError

        # public (huggingface_hub's docs), but its lazy utils package does not re-export it for type checkers
        from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined]

        with contextlib.suppress(HFValidationError):
            validate_repo_id(repo)
            return repo, revision or None
    raise TargetError(f"{target}: not a Hub model id; expected hf:org/name or hf:org/name@revision")


def _endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or constants.ENDPOINT


def _redacted(message: str) -> str:
    """``message`` with the password of ``HF_ENDPOINT`` (``https://user:password@host``), wherever the endpoint is
    quoted in it, shown as ``***``. The endpoint is split by hand: one that urllib cannot parse is quoted too."""
    _, slashes, rest = os.environ.get("HF_ENDPOINT", "").partition("//")
    userinfo, at, _ = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not (slashes and at and colon and password):
        return message
    return message.replace(f"{user}:{password}@", f"{user}:***@")


@dataclass
class _Repo:
    """A repository as one call reads it: the target given, the id and revision, the token, the deadline, and the
    commit read."""

    target: str
    repo: str
    revision: str | None
    token: str | None
    seconds: float
    """The time given to the reading in all (``DEADLINE`` when it started)."""
    deadline: float
    """``time.monotonic()`` when that time is up."""
    commit: str | None = None
    """The commit every request asks for once an answer named it (the first that did), or the revision given when
    it is a commit hash; None until then."""
    ref_kept: bool = False
    """Whether the Hub cache's ref of the revision needs no writing by this reading: it was written once, or the
    commit was given (a commit hash, or the one an earlier read of the same command resolved the branch to)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def of(cls, target: str, commit: str | None = None) -> _Repo:
        repo, revision = parse(target)
        token = os.environ.get("HF_TOKEN") or None
        if commit is None and revision is not None and _COMMIT.fullmatch(revision):
            commit = revision
        return cls(target, repo, revision, token, DEADLINE, time.monotonic() + DEADLINE, commit, commit is not None)

    @property
    def at(self) -> str | None:
        """The revision each request asks for: the commit once known, else the revision given (None: the default
        branch)."""
        return self.commit or self.revision

    def pin(self, commit: str | None) -> None:
        """Read at ``commit`` (an answer's ``X-Repo-Commit``) from now on, unless an earlier answer named one."""
        if commit is not None and _COMMIT.fullmatch(commit):
            with self._lock:
                if self.commit is None:
                    self.commit = commit

    def commit_note(self) -> list[str]:
        """``org/name@main read at commit …`` where a branch or tag was resolved to a commit."""
        from huggingface_hub import constants

        revision = self.revision or constants.DEFAULT_REVISION
        return [f"{self.repo}@{revision} read at commit {self.commit}"] if self.commit not in (None, revision) else []

    def url(self, filename: str) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(self.repo, filename, revision=self.at, endpoint=_endpoint())

    def check_deadline(self) -> None:
        """Raise once the time is up: a request started later would be waited for by nobody."""
        if time.monotonic() >= self.deadline:
            raise self.too_late()

    def too_late(self) -> SourceError:
        return SourceError(
            _redacted(
                f"{self.target}: the Hub at {_endpoint()} did not answer in time for {self.repo} ({self.seconds:g} "
                f"seconds in all); {_LATER}"
            )
        )


def _failure(hub: _Repo, error: BaseException) -> str | None:
    """The one-line message for a failure of the Hub client; None for an error of another kind."""
    from huggingface_hub import constants, errors

    if isinstance(error, ParamscopeError):
        return None
    cause = error.__cause__
    if isinstance(error, errors.LocalEntryNotFoundError) and (
        isinstance(cause, errors.HfHubHTTPError) or (cause is not None and _is_timeout(cause))
    ):
        error = cause  # hf_hub_download says the file is not in the cache; why the Hub did not give it is the news
    target, repo, endpoint = hub.target, hub.repo, _endpoint()
    if isinstance(error, errors.GatedRepoError):
        return f"{target}: {repo} is gated: accept its terms on the Hub, then set HF_TOKEN"
    if isinstance(error, errors.RevisionNotFoundError):
        return f"{target}: {repo} has no revision {hub.revision!r}"
    if isinstance(error, errors.RepositoryNotFoundError):
        return f"{target}: no model {repo} on {endpoint} (a private one needs HF_TOKEN)"
    response = getattr(error, "response", None)
    if isinstance(error, errors.HfHubHTTPError) and response is not None:
        return f"{target}: the Hub at {endpoint} answered {_answer(response)}"
    if _is_timeout(error):
        return (
            f"{target}: the Hub at {endpoint} did not answer in time for {repo} (HF_HUB_ETAG_TIMEOUT="
            f"{constants.HF_HUB_ETAG_TIMEOUT:g} and HF_HUB_DOWNLOAD_TIMEOUT={constants.HF_HUB_DOWNLOAD_TIMEOUT:g} "
            f"seconds a request); {_LATER}"
        )
    if _is_broken_off(error):
        return f"{target}: the Hub at {endpoint} broke off its answer for {repo} ({_reason(error)}); {_LATER}"
    if isinstance(error, OSError) and error.filename is not None:  # a file of its own: the cache, the token
        return (
            f"{target}: huggingface_hub cannot use {error.filename} ({error.strerror or error}); set HF_HOME (or "
            "HF_HUB_CACHE) to a directory you can write"
        )
    if isinstance(error, (errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError)) or _is_network_error(error):
        # connection refused, name resolution (httpx errors are recognised by their module, see _is_network_error)
        return (
            f"{target}: cannot reach the Hub at {endpoint} for {repo} ({_reason(error)}); download the model and "
            "pass its local directory instead"
        )
    return None


def _answer(response: Any) -> str:
    """An HTTP error answer, said in words: ``500 Internal Server Error for /org/name/resolve/main/config.json``."""
    said = f"{response.status_code} {response.reason_phrase} for {response.request.url.path}"
    if response.status_code >= 500:
        return f"{said}; try again later"
    if response.status_code == 404 and not response.headers.get("X-Error-Code"):
        # the Hub names what is missing (repository, revision or file) in X-Error-Code
        return f"{said}, without saying what is missing (is HF_ENDPOINT a Hugging Face Hub?)"
    message = response.headers.get("X-Error-Message")
    return f"{said}: {message}" if message else said


def _reason(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else type(error).__name__


@contextlib.contextmanager
def _quiet_hub() -> Iterator[None]:
    # huggingface_hub draws its own tqdm bars on stderr, and logs each retry or resumed download as a warning there;
    # paramscope shows one status line of its own instead, and a failure as one error line.
    import logging

    from huggingface_hub.utils import logging as hub_logging
    from huggingface_hub.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    verbosity = hub_logging.get_verbosity()
    disable_progress_bars()
    hub_logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        hub_logging.set_verbosity(verbosity)
        if not was_disabled:
            enable_progress_bars()


_HTTP_LIBRARIES = frozenset({"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"})


def _is_network_error(error: BaseException) -> bool:
    # The Hub client's HTTP library changes between releases (requests, httpx, httpx2); their connection errors are
    # recognised by where they come from rather than by importing each library.
    return isinstance(error, OSError) or type(error).__module__.split(".")[0] in _HTTP_LIBRARIES


def _is_broken_off(error: BaseException) -> bool:
    """An answer that stopped part-way (httpx's RemoteProtocolError: a body shorter than its Content-Length, or no
    answer at all on an open connection; its ReadError: the connection reset while reading)."""
    return any(
        cls.__name__ in ("RemoteProtocolError", "ReadError") and cls.__module__.split(".")[0] in _HTTP_LIBRARIES
        for cls in type(error).__mro__
    )


def _is_timeout(error: BaseException) -> bool:
    """A request that got no answer in time (httpx's ReadTimeout, ConnectTimeout..., requests' Timeout)."""
    return isinstance(error, TimeoutError) or any(
        "Timeout" in cls.__name__ and cls.__module__.split(".")[0] in _HTTP_LIBRARIES for cls in type(error).__mro__
    )


def check_endpoint(where: str = "", *, requests: bool = False) -> None:
    """Fail in one line when ``HF_ENDPOINT`` cannot be parsed as a URL, or ``HF_HUB_ETAG_TIMEOUT`` or
    ``HF_HUB_DOWNLOAD_TIMEOUT`` as a whole number of seconds: huggingface_hub parses them when it is first imported
    (transformers imports it too), and raises ValueError there; a negative timeout fails at its first request, so
    it is refused only where ``requests`` are to be made. ``where`` starts the message."""
    from urllib.parse import urlsplit

    endpoint = os.environ.get("HF_ENDPOINT", "").rstrip("/")
    try:
        parts = urlsplit(endpoint)
        _ = parts.hostname, parts.port  # these properties parse the host and port, as huggingface_hub's import does
    except ValueError as error:
        raise _bad_endpoint(where, endpoint, error) from None
    for name in ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
        value = os.environ.get(name)
        if value is not None and not _is_seconds(value, negative=not requests):
            raise SourceError(f"{where}{name} is {value!r}, not a whole number of seconds; set it to one, such as 10 "
                              "(huggingface_hub's default), or unset it")  # fmt: skip


def _is_seconds(value: str, *, negative: bool) -> bool:
    """Whether huggingface_hub's ``int(value)`` reads ``value``, and (unless ``negative`` may be) as a timeout a
    socket takes."""
    try:
        return int(value) >= 0 or negative
    except ValueError:
        return False


def _bad_endpoint(where: str, endpoint: str, error: ValueError) -> SourceError:
    return SourceError(
        _redacted(
            f"{where}HF_ENDPOINT is {endpoint!r}, not a valid URL ({error}); set it to the Hub's address, such as "
            "https://huggingface.co, or unset it"
        )
    )


def _address(where: str, endpoint: str) -> tuple[str, int]:
    """The host and port of ``endpoint``, an http(s) URL."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(endpoint)
        port = parts.port or (443 if parts.scheme == "https" else 80)  # .port raises for a port out of range
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http:// or https:// address")
    except ValueError as error:
        raise _bad_endpoint(where, endpoint, error) from None
    return parts.hostname, port


def _check_reachable(hub: _Repo) -> None:
    """Fail at once when the endpoint does not answer: the Hub client would retry a refused connection for ~20 s,
    logging each attempt, before giving up."""
    import socket

    from huggingface_hub import constants

    endpoint = _endpoint()
    address = _address(f"{hub.target}: ", endpoint)
    if constants.HF_HUB_OFFLINE:  # the client answers from its cache, or says it is offline
        return
    try:
        with socket.create_connection(address, timeout=constants.HF_HUB_ETAG_TIMEOUT):
            pass
    except OSError as error:
        raise SourceError(
            _redacted(
                f"{hub.target}: cannot reach the Hub at {endpoint} for {hub.repo} ({error.strerror or error}); "
                "download the model and pass its local directory instead"
            )
        ) from None


def _metadata(hub: _Repo, filename: str) -> HfFileMetadata | None:
    """A file's metadata (its size, commit and ETag) from one HEAD, not retried; None when the repo has no such
    file."""
    from huggingface_hub import constants, errors, get_hf_file_metadata

    hub.check_deadline()
    try:
        metadata = get_hf_file_metadata(
            hub.url(filename), token=hub.token, timeout=constants.HF_HUB_ETAG_TIMEOUT, endpoint=_endpoint()
        )
    except errors.RemoteEntryNotFoundError as error:  # the Hub names the commit it looked in all the same
        response = getattr(error, "response", None)
        hub.pin(response.headers.get(constants.HUGGINGFACE_HEADER_X_REPO_COMMIT) if response is not None else None)
        return None
    hub.pin(metadata.commit_hash)
    return metadata


def _download(hub: _Repo, filename: str, limits: tuple[_Allowance, str] | None = None) -> Path | None:
    """``config.json``, the index or a code file of the repo, downloaded to the Hub cache (or found there); None when
    the repo has no such file. One larger than paramscope reads (``limits``: the bytes it may take, and what a
    larger file is; for the config and the index, theirs) is refused before it is downloaded when the Hub says its
    size, and its download stopped past that size when it does not."""
    from huggingface_hub import constants, errors, hf_hub_download

    allowance, too_large = limits or (_Allowance(_LIMITS[filename][0]), _LIMITS[filename][1])
    if constants.HF_HUB_OFFLINE:  # the Hub cache alone: a file it does not hold is not known to exist
        return _cached(hub, filename)
    # the HEAD says how the Hub answers, once
    metadata = _metadata(hub, filename)
    if metadata is None:
        return None
    if metadata.size is not None and metadata.size > allowance.left:
        size = format_bytes(metadata.size, "si")
        raise SourceError(f"{hub.target}: {filename}: {too_large} ({size}, the Hub says); not downloaded")
    hub.check_deadline()
    try:
        path = hf_hub_download(
            hub.repo,
            filename,
            revision=hub.at,
            endpoint=_endpoint(),
            token=hub.token,
            etag_timeout=constants.HF_HUB_ETAG_TIMEOUT,
            tqdm_class=_size_guard(allowance),
        )
    except _TooLarge:
        raise SourceError(f"{hub.target}: {filename}: {too_large}; its download was stopped") from None
    except errors.RemoteEntryNotFoundError:
        return None
    _remember_commit(hub)
    return Path(path)


def _ref(hub: _Repo) -> Path:
    """``refs/<revision>`` of the repo in the Hub cache: the commit huggingface_hub last found the revision at."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    folder = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=hub.repo, repo_type="model")
    return folder / "refs" / (hub.revision or constants.DEFAULT_REVISION)


def _remember_commit(hub: _Repo) -> None:
    """Write the commit this reading resolved the revision to into the revision's ref in the Hub cache, as
    ``hf_hub_download`` does for a branch (and ``snapshot_download`` when it downloads at the commit): a later offline
    reading finds the files there. Once a reading, after its first download: a ref that another process moved on
    since (a newer commit) is not put back; never where the commit was given; and not at all in a cache that cannot
    be written (the files are downloaded)."""
    with hub._lock:
        if hub.commit is None or hub.ref_kept:
            return
        hub.ref_kept = True
    ref = _ref(hub)
    with contextlib.suppress(OSError):
        if not ref.is_file() or ref.read_text() != hub.commit:
            ref.parent.mkdir(parents=True, exist_ok=True)
            written = ref.with_name(f"{ref.name}.{uuid.uuid4().hex}.tmp")  # unique on a cache that hosts share
            written.write_text(hub.commit)
            os.replace(written, ref)  # never a ref half written, for a reader at the same time


class _TooLarge(Exception):
    """A download went past its limit."""


class _Allowance:
    """The bytes that downloads may still take, shared by those that run together."""

    def __init__(self, limit: int) -> None:
        self.left = limit
        self._lock = threading.Lock()

    def take(self, count: float) -> None:
        with self._lock:
            self.left -= int(count)
            if self.left < 0:
                raise _TooLarge


def _size_guard(allowance: _Allowance) -> type[tqdm]:
    """A progress bar for ``hf_hub_download`` (its ``tqdm_class``) that stops the download once ``allowance`` is
    spent.

    huggingface_hub has no size limit of its own, but it tells the bar the size the answer says and then each chunk
    before it is written: stopping there keeps hf_hub_download (and its cache) rather than writing a download here.
    """
    from huggingface_hub.utils.tqdm import tqdm as hub_tqdm

    class SizeGuard(hub_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]  # (huggingface_hub's is untyped)
            resumed = kwargs.get("initial") or 0  # a resumed download starts with what it has
            if (kwargs.get("total") or 0) - resumed > allowance.left:
                self.close()
                raise _TooLarge
            allowance.take(resumed)

        def update(self, n: float | None = 1) -> bool | None:
            allowance.take(n or 0)
            shown: bool | None = super().update(n)
            return shown

    return SizeGuard


def _with_code(hub: _Repo, config: Path) -> Path:
    """The repo's ``config`` (downloaded) with the repo's Python files downloaded beside it, for transformers to
    import: custom code is imported from the directory config.json is in, as from a local folder. The files are
    listed first, and refused when there are more than ``MAX_CODE_FILES`` of them or more than ``MAX_CODE_BYTES`` in
    all, before any is downloaded; each download is stopped past what is left of those bytes (a listing may
    understate a size). Offline, those the Hub cache holds beside ``config`` are all there is."""
    from fnmatch import fnmatch

    from huggingface_hub import HfApi, constants
    from huggingface_hub.hf_api import RepoFile

    if constants.HF_HUB_OFFLINE:
        return config
    hub.check_deadline()
    listing = HfApi(endpoint=_endpoint(), token=hub.token).list_repo_tree(hub.repo, recursive=True,
                                                                          revision=hub.at)  # fmt: skip
    code = [item for item in listing if isinstance(item, RepoFile) and fnmatch(item.path, "*.py")]
    if len(code) > MAX_CODE_FILES:
        raise SourceError(f"{hub.target}: {len(code):,} Python files in the repository, more than the "
                          f"{MAX_CODE_FILES:,} paramscope downloads for custom code; none downloaded")  # fmt: skip
    listed = sum(item.size or 0 for item in code)
    if listed > MAX_CODE_BYTES:
        raise SourceError(f"{hub.target}: its Python files take {format_bytes(listed)} (the Hub says), more "
                          "than the 64 MiB paramscope downloads for custom code; none downloaded")  # fmt: skip
    limits = (_Allowance(MAX_CODE_BYTES), "past the 64 MiB of Python files paramscope downloads for custom code")
    # three requests a file: in turn, a minute for 200
    _in_daemon_threads(lambda item: _download(hub, item.path, limits), code, _MAX_WORKERS)
    return config


def _in_daemon_threads(function: Callable[[Any], _Result], items: Sequence[Any], workers: int) -> list[_Result]:
    """``function`` of each of ``items``, in order, run in up to ``workers`` threads; the first error raised.

    Daemon threads, where a ThreadPoolExecutor's are waited for at the interpreter's exit: a request left behind at
    the deadline (:func:`_in_time`), whose server sends its answer a byte at a time, must not hold the process."""
    results: list[Any] = [None] * len(items)
    errors: list[BaseException] = []
    left = iter(range(len(items)))
    lock = threading.Lock()

    def work() -> None:
        while not errors:
            with lock:
                index = next(left, None)
            if index is None:
                return
            try:
                results[index] = function(items[index])
            except BaseException as error:  # given to the caller's thread, which raises it
                errors.append(error)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, min(workers, len(items))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _cached(hub: _Repo, filename: str) -> Path | None:
    """A file of the repo in the Hub cache (as ``hf_hub_download`` left it, at the revision asked for), or None. The
    revision's ref is read once, with the first file: every file is then read at that commit."""
    from huggingface_hub import try_to_load_from_cache

    if hub.commit is None:
        with contextlib.suppress(OSError):
            hub.pin(_ref(hub).read_text())
    path = try_to_load_from_cache(hub.repo, filename, revision=hub.at)
    return Path(path) if isinstance(path, str) else None


def _offline(hub: _Repo, missing: str) -> SourceError:
    return SourceError(
        f"{hub.target}: offline (HF_HUB_OFFLINE), and the Hub cache does not hold {missing}; unset HF_HUB_OFFLINE, "
        "or download the model and pass its local directory instead"
    )


def _cached_safetensors(hub: _Repo) -> tuple[dict[str, Path], dict[str, str] | None] | None:
    """Offline: the repo's safetensors files in the Hub cache (downloaded whole, by transformers or
    ``hf_hub_download``), found as :func:`_safetensors_files` finds them on the Hub; None when it holds none."""
    single = _cached(hub, SINGLE_FILE)
    if single is not None:
        return {SINGLE_FILE: single}, None
    index = _cached(hub, INDEX_FILE)
    if index is None:
        return None
    weight_map = read_index(index, f"{hub.target}: {INDEX_FILE}")
    shards = {}
    for name in sorted(set(weight_map.values())):
        path = _cached(hub, name)
        if path is None:
            raise _offline(hub, f"{name}, a shard of {hub.repo} its index names")
        shards[name] = path
    return shards, weight_map


def _cached_file_tensors(hub: _Repo, filename: str, path: Path) -> list[StoredTensor]:
    """The tensors of a safetensors file in the Hub cache, checked as :func:`_file_tensors` checks one on the Hub
    (and its errors named alike, by the id, not by the place in the cache)."""
    where = f"{hub.target}: {filename}"
    try:
        with path.open("rb") as handle:

            def read(start: int, count: int) -> bytes:
                handle.seek(start)
                return handle.read(count)

            header, _, data_size = parse_header(where, os.fstat(handle.fileno()).st_size, read)
    except OSError as error:
        raise SourceError(f"{where}: in the Hub cache at {path}, cannot be read: {error.strerror or error}") from None
    tensors, _ = header_tensors(where, header, data_size, f"{hub.repo}/{filename}")
    return tensors


def _safetensors_files(hub: _Repo) -> tuple[list[str], dict[str, str] | None] | None:
    """The repo's safetensors files, as transformers finds them: model.safetensors, or the shards the index names
    (with the index's weight_map, to check the shards against)."""
    if _metadata(hub, SINGLE_FILE) is not None:
        return [SINGLE_FILE], None
    index = _download(hub, INDEX_FILE)
    if index is None:
        return None
    weight_map = read_index(index, f"{hub.target}: {INDEX_FILE}")
    return sorted(set(weight_map.values())), weight_map


@dataclass(frozen=True)
class _Bytes:
    """What a server answered to a request for a range of a file: its status, the file's size when the answer says
    it, and the bytes read of its body (no more than were asked for)."""

    status: int
    size: int | None
    content: bytes


def _ranged_get(hub: _Repo, url: str, headers: dict[str, str], first: int, last: int) -> _Bytes:
    """Bytes ``first`` to ``last`` of the file at ``url``, read as a stream and no further than asked for, whatever
    the body holds. A server that ignores ``Range`` sends the whole file (200, a 140 GB shard): it is read up to the
    end of the safetensors header it starts with, then the connection is closed."""
    from huggingface_hub import constants, get_session, hf_raise_for_status

    hub.check_deadline()
    # identity: a gzipped answer's Content-Length would be the gzipped size, not the file's (hf_hub_download asks
    # the same for its downloads)
    ranged = {**headers, "Range": f"bytes={first}-{last}", "Accept-Encoding": "identity"}
    # follow_redirects: the Hub sends weights' ranges to its CDN, and an application's client (set_client_factory)
    # may not follow redirects by itself, where a 302 would be read as the range
    stream = get_session().stream(
        "GET", url, headers=ranged, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT, follow_redirects=True
    )
    with stream as response:
        status, body = response.status_code, _Body(response, hub)
        if status == 416:  # an empty file has no byte 0; Content-Range still gives its size
            return _Bytes(status, _range_total(response), b"")
        if status >= 400:
            # its body read as far as an error message goes: hf_raise_for_status quotes it
            error = type(response)(status, headers=response.headers, request=response.request,
                                   content=body.read(_MAX_ERROR_BYTES))  # fmt: skip
            hf_raise_for_status(error)
        if status != 200:
            return _Bytes(status, _range_total(response), body.read(last - first + 1))
        length = response.headers.get("Content-Length", "")
        size = int(length) if _CONTENT_LENGTH.match(length) else None
        if first != 0:  # the file from its start, where the range was asked for
            return _Bytes(status, size, body.read(last + 1)[first:])
        prefix = body.read(8)
        if len(prefix) < 8:
            return _Bytes(status, size, prefix)
        (header_length,) = struct.unpack("<Q", prefix)
        wanted = header_length if header_length <= MAX_HEADER_BYTES else 0  # parse_header refuses the length itself
        return _Bytes(status, size, prefix + body.read(wanted))


def _range_total(response: Any) -> int | None:
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


class _Body:
    """A streamed answer's body, read a part at a time and never further than asked for, nor past the deadline:
    a request's timeout bounds each read of the socket, and a server may send a byte a second."""

    def __init__(self, response: Any, hub: _Repo) -> None:
        self._chunks = response.iter_bytes()
        self._left = b""
        self._hub = hub

    def read(self, count: int) -> bytes:
        """The next ``count`` bytes, fewer where the body ends."""
        parts, got = [self._left], len(self._left)
        while got < count:
            self._hub.check_deadline()
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            parts.append(chunk)
            got += len(chunk)
        joined = b"".join(parts)
        self._left = joined[count:]
        return joined[:count]


def _file_tensors(hub: _Repo, filename: str) -> list[StoredTensor]:
    """The tensors of one safetensors file on the Hub, from its header, checked as a local file's header is; the file
    is one the index names (``model.safetensors`` was found before it is read), so a 404 means the index is wrong.

    Not ``huggingface_hub.get_safetensors_metadata``, though its first request is this one: it parses the header
    itself (a malformed one escapes as its own exception, after checks of its own) and drops the file's size, so
    neither the local reader's checks nor the check of the offsets against the end of the file could run; and it
    reads the whole answer of a server that ignores ``Range``, which is the whole file. A header longer than the
    first answer is read on from where that answer ended, as many times as a server that caps ranges needs.
    """
    from huggingface_hub import errors

    # public (huggingface_hub's docs), but its lazy utils package does not re-export it for type checkers
    from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

    target = hub.target
    url = hub.url(filename)
    headers = build_hf_headers(token=hub.token)
    try:
        first = _ranged_get(hub, url, headers, 0, _FIRST_RANGE)
    except errors.RemoteEntryNotFoundError:
        raise SourceError(f"{target}: {INDEX_FILE}: names {filename}, which is missing") from None
    size = first.size
    if size is None:  # an answer without the file's size: a HEAD gives it
        metadata = _metadata(hub, filename)
        size = metadata.size if metadata is not None else None
    where = f"{target}: {filename}"
    if size is None:
        raise SourceError(f"{where}: the Hub does not say how large the file is, so its header cannot be checked")
    start = first.content
    # all of the header is in hand: the file ends within the first answer, or the server sent the file from its
    # start (read up to the header's end)
    whole = first.status == 200 or len(start) >= size

    def read(offset: int, count: int) -> bytes:
        if offset + count <= len(start) or whole:
            return start[offset : offset + count]
        parts = [start[offset : offset + count]]  # what the first answer holds of it, then the rest
        got = len(parts[0])
        while got < count:  # a server may answer less of a range than asked (capped ranges)
            part = _ranged_get(hub, url, headers, offset + got, offset + count - 1).content
            if not part:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    header, _, data_size = parse_header(where, size, read)
    tensors, _ = header_tensors(where, header, data_size, f"{hub.repo}/{filename}")
    return tensors


def _stored(hub: _Repo) -> tuple[list[StoredTensor], list[str], list[str]] | None:
    """The tensors of the repo's safetensors files, checked as a local directory's are (a tensor in one file only, the
    one the index says), the files' names, and notes; None when the repo has no safetensors files."""
    if _is_offline():
        cached = _cached_safetensors(hub)
        if cached is None:
            return None
        paths, weight_map = cached
        names = list(paths)
        read = [_cached_file_tensors(hub, name, path) for name, path in paths.items()]
    else:
        found = _safetensors_files(hub)
        if found is None:
            return None
        names, weight_map = found
        read = _in_daemon_threads(lambda name: _file_tensors(hub, name), names, _MAX_WORKERS)
    tensors = [tensor for file_tensors in read for tensor in file_tensors]
    notes = check_files(hub.target, tensors, weight_map, f"{hub.target}: {INDEX_FILE}")
    files = [INDEX_FILE, *names] if weight_map is not None else names  # the index too: the files read
    return tensors, [f"{PREFIX}{hub.repo}/{name}" for name in files], notes


@contextlib.contextmanager
def _fetching(hub: _Repo) -> Iterator[None]:
    """Requests to the Hub, without its progress bars or log, their failures turned into one-line errors."""
    with _quiet_hub():
        try:
            yield
        except Exception as error:
            message = _failure(hub, error)
            if message is None:
                raise
            raise SourceError(_redacted(message)) from None


def _in_time(hub: _Repo, fetch: Callable[[], _Result]) -> _Result:
    """``fetch()`` under :func:`_fetching`, given up at the deadline.

    It runs in a daemon thread that is waited for until then only: each request has a timeout and none is retried,
    but a body can trickle in for longer, and huggingface_hub resumes a stalled download five times. Left behind, the
    thread starts no request of paramscope's own (each checks the deadline first, and a body being read stops at
    it), and the process does not wait for it at exit, nor for the threads it reads shards' headers in.
    """
    outcome: list[tuple[Any, BaseException | None]] = []

    def run() -> None:
        try:
            with _fetching(hub):
                outcome.append((fetch(), None))
        except BaseException as error:  # given to the caller's thread, which raises it
            outcome.append((None, error))

    thread = threading.Thread(target=run, name=f"paramscope {hub.target}", daemon=True)
    thread.start()
    thread.join(max(0.0, hub.deadline - time.monotonic()))
    if not outcome:
        raise hub.too_late()
    result, error = outcome[0]
    if error is not None:
        raise error
    fetched: _Result = result
    return fetched


def load(
    target: str,
    *,
    quiet: bool = False,
    from_config: bool = False,
    model_class: str | None = None,
    trust_remote_code: bool = False,
    explain: bool = False,
    commit: str | None = None,
) -> tuple[Report, str | None]:
    """The report of a Hub model: its safetensors headers, or (``from_config``, or no safetensors) its config; and
    the commit read (for :func:`build` to build the config of the same one), None where no answer named one. At
    ``commit`` when given (that which an earlier read of the same command resolved the branch to, whose note names
    it: this one adds none), else at the commit its first answer names."""
    from .._progress import status

    hub = _Repo.of(target, commit)
    repo = hub.repo
    _check_reachable(hub)

    def fetch() -> tuple[Path | None, tuple[list[StoredTensor], list[str], list[str]] | None]:
        config_file = _download(hub, CONFIG_FILE)
        stored = None if from_config or explain else _stored(hub)
        if stored is None and trust_remote_code and config_file is not None:
            config_file = _with_code(hub, config_file)  # the model is built from it
        return config_file, stored

    with status(f"reading {repo} from the Hub", quiet=quiet):
        config_file, stored = _in_time(hub, fetch)
    if stored is None and _is_offline():  # what the cache does not hold may still be on the Hub
        if config_file is None:
            raise _offline(hub, f"{repo}'s {CONFIG_FILE}" if from_config or explain else repo)
        if not from_config and not explain:
            raise SourceError(
                f"{target}: offline (HF_HUB_OFFLINE), and the Hub cache holds no safetensors weights of {repo}; pass "
                "--from-config to build the model from its config.json, or unset HF_HUB_OFFLINE, or download the "
                "model and pass its local directory instead"
            )
    if stored is None:
        if config_file is None and (from_config or explain):  # its weights were not looked for
            raise SourceError(f"{target}: {repo} has no config.json to build the model from")
        if config_file is None:
            raise SourceError(f"{target}: {repo} has neither safetensors weights nor a config.json")
        from .hf import config_report

        report = config_report(
            config_file,
            model_class=model_class,
            trust_remote_code=trust_remote_code,
            explain=explain,
            target=target,
            quiet=quiet,
            name=f"{target}: {CONFIG_FILE}",
        )
        from dataclasses import replace

        missing = [] if from_config or explain else [f"{repo} has no safetensors weights: built from its config.json"]
        commit_notes = hub.commit_note() if commit is None else []
        return replace(report, notes=(*missing, *report.notes, *commit_notes)), hub.commit
    tensors, files, notes = stored
    from .checkpoint import read_config

    config, config_notes = read_config(config_file.parent) if config_file is not None else (None, [])
    notes += config_notes + (hub.commit_note() if commit is None else [])
    files += [f"{PREFIX}{repo}/{CONFIG_FILE}"] if config is not None else []
    report = checkpoint_report(
        tensors, kind="safetensors", target=target, files=files, config=config, notes=notes, sort=True
    )
    return report, hub.commit


def build(target: str, request: Any, commit: str | None = None) -> tuple[Any, list[str], str | None]:
    """The model a Hub repository's config.json describes, built on ``request.device``: ``(module, notes, the
    commit read)``; at ``commit`` when given (that of the weights :func:`load` read, or of an earlier read of the same
    command, whose note names it: this one adds none), else at the commit its first answer names."""
    from .hf import build_from_config

    hub = _Repo.of(target, commit)
    _check_reachable(hub)

    def fetch() -> Path | None:
        config_file = _download(hub, CONFIG_FILE)
        return _with_code(hub, config_file) if config_file is not None and request.trust_remote_code else config_file

    config_file = _in_time(hub, fetch)
    if config_file is None and _is_offline():
        raise _offline(hub, f"{hub.repo}'s {CONFIG_FILE}")
    if config_file is None:
        raise SourceError(f"{target}: {hub.repo} has no config.json to build the model from")
    model, notes = build_from_config(
        config_file,
        model_class=request.model_class,
        trust_remote_code=request.trust_remote_code,
        device=request.device,
        name=f"{target}: {CONFIG_FILE}",
    )
    return model, notes + (hub.commit_note() if commit is None else []), hub.commit
