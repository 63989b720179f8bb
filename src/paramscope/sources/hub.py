"""Models on the Hugging Face Hub (``hf:org/name[@revision]``): ``config.json`` and safetensors headers only.

``huggingface_hub`` fetches the config (with ``--trust-remote-code``, the repository's Python files too) and each
shard's header is read with HTTP range requests, as ``get_safetensors_metadata`` reads them: a 140 GB model costs a
few hundred kilobytes of traffic. The headers are checked as local files' are (:mod:`.safetensors`), against each
file's size from the ``Content-Range`` of its first range, and the shards as a local directory's are
(:func:`.checkpoint.check_files`): each tensor in one file only, in the file the index names. ``HF_TOKEN`` and
``HF_ENDPOINT`` are honoured, read when the call is made.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._errors import SourceError, TargetError
from .._report import Report
from .checkpoint import StoredTensor, check_files, checkpoint_report
from .safetensors import header_tensors, parse_header, read_index

PREFIX = "hf:"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# The first range asked for, as huggingface_hub asks: 97 % of headers fit in it (huggingface_hub PR 1855).
_FIRST_RANGE = 100_000
_CONTENT_RANGE = re.compile(r"^bytes (?:\d+-\d+|\*)/(\d+)$")
_MAX_WORKERS = 8


def parse(target: str) -> tuple[str, str | None]:
    """``hf:org/name@revision`` → ``("org/name", "revision")``.

    The id is checked by huggingface_hub's own ``validate_repo_id`` (no ``--`` or ``..``, at most 96 characters, no
    trailing ``.`` or ``.git``), which its download functions would otherwise raise on; so ``HF_ENDPOINT`` is checked
    and huggingface_hub imported first (its import parses ``HF_ENDPOINT``).

    >>> parse("hf:meta-llama/Llama-3.1-8B@main")
    ('meta-llama/Llama-3.1-8B', 'main')
    """
    from .target import require

    repo, at, revision = target.removeprefix(PREFIX).partition("@")
    # "." and ".." would be path segments of the file's URL of their own, removed from it before it is sent
    if _REPO_ID.match(repo) and (revision or not at) and revision not in (".", ".."):
        check_endpoint(f"{target}: ")
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


@contextlib.contextmanager
def _hub_errors(target: str, repo: str, revision: str | None) -> Iterator[None]:
    """Turn the Hub client's exceptions into one-line errors that say what to do."""
    from huggingface_hub import errors

    endpoint = _endpoint()
    try:
        yield
    except errors.GatedRepoError:
        raise SourceError(f"{target}: {repo} is gated: accept its terms on the Hub, then set HF_TOKEN") from None
    except errors.RevisionNotFoundError:
        raise SourceError(f"{target}: {repo} has no revision {revision!r}") from None
    except errors.RepositoryNotFoundError:
        raise SourceError(f"{target}: no model {repo} on {endpoint} (a private one needs HF_TOKEN)") from None
    except (errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError) as error:
        raise SourceError(
            f"{target}: cannot reach the Hub at {endpoint} for {repo} ({_reason(error)}); download the model and "
            "pass its local directory instead"
        ) from None
    except errors.HfHubHTTPError as error:
        raise SourceError(
            f"{target}: the Hub at {endpoint} answered with an error for {repo}: {_reason(error)}"
        ) from None
    except OSError as error:  # connection refused, name resolution, timeouts (httpx errors are OSErrors here too)
        raise SourceError(
            f"{target}: cannot reach the Hub at {endpoint} for {repo} ({_reason(error)}); download the model and "
            "pass its local directory instead"
        ) from None


def _reason(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else type(error).__name__


@contextlib.contextmanager
def _quiet_hub() -> Iterator[None]:
    # huggingface_hub draws its own tqdm bars on stderr; paramscope shows one status line of its own instead.
    from huggingface_hub.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


_HTTP_LIBRARIES = frozenset({"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"})


def _is_network_error(error: BaseException) -> bool:
    # The Hub client's HTTP library changes between releases (requests, httpx, httpx2); their connection errors are
    # recognised by where they come from rather than by importing each library.
    return isinstance(error, OSError) or type(error).__module__.split(".")[0] in _HTTP_LIBRARIES


def check_endpoint(where: str = "") -> None:
    """Fail in one line when ``HF_ENDPOINT`` cannot be parsed as a URL: huggingface_hub parses it when it is first
    imported (transformers imports it too), and raises ValueError there. ``where`` starts the message."""
    from urllib.parse import urlsplit

    endpoint = os.environ.get("HF_ENDPOINT", "").rstrip("/")
    try:
        parts = urlsplit(endpoint)
        _ = parts.hostname, parts.port  # these properties parse the host and port, as huggingface_hub's import does
    except ValueError as error:
        raise _bad_endpoint(where, endpoint, error) from None


def _bad_endpoint(where: str, endpoint: str, error: ValueError) -> SourceError:
    return SourceError(
        f"{where}HF_ENDPOINT is {endpoint!r}, not a valid URL ({error}); set it to the Hub's address, such as "
        "https://huggingface.co, or unset it"
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


def _check_reachable(target: str, repo: str) -> None:
    """Fail at once when the endpoint does not answer: the Hub client would retry a refused connection for ~20 s,
    logging each attempt, before giving up."""
    import socket

    from huggingface_hub import constants

    endpoint = _endpoint()
    address = _address(f"{target}: ", endpoint)
    if constants.HF_HUB_OFFLINE:  # the client answers from its cache, or says it is offline
        return
    try:
        with socket.create_connection(address, timeout=10):
            pass
    except OSError as error:
        raise SourceError(
            f"{target}: cannot reach the Hub at {endpoint} for {repo} ({error.strerror or error}); download the "
            "model and pass its local directory instead"
        ) from None


def _config(repo: str, revision: str | None, token: str | None, *, code: bool = False) -> Path | None:
    """The repo's config.json; with ``code``, the repo's Python files beside it (for transformers to import)."""
    from huggingface_hub import errors, hf_hub_download, snapshot_download

    try:
        if not code:
            return Path(hf_hub_download(repo, "config.json", revision=revision, endpoint=_endpoint(), token=token))
        # never weights: custom code is imported from the directory config.json is in, as from a local folder
        folder = snapshot_download(
            repo, revision=revision, allow_patterns=["config.json", "*.py"], endpoint=_endpoint(), token=token
        )
    except errors.RemoteEntryNotFoundError:
        return None
    config = Path(folder) / "config.json"
    return config if config.is_file() else None


def _safetensors_files(
    target: str, repo: str, revision: str | None, token: str | None
) -> tuple[list[str], dict[str, str] | None] | None:
    """The repo's safetensors files, as transformers finds them: model.safetensors, or the shards the index names
    (with the index's weight_map, to check the shards against)."""
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi(endpoint=_endpoint(), token=token)
    if api.file_exists(repo, SINGLE_FILE, revision=revision):
        return [SINGLE_FILE], None
    if not api.file_exists(repo, INDEX_FILE, revision=revision):
        return None
    index = hf_hub_download(repo, INDEX_FILE, revision=revision, endpoint=_endpoint(), token=token)
    weight_map = read_index(Path(index), f"{target}: {INDEX_FILE}")
    return sorted(set(weight_map.values())), weight_map


def _file_size(response: Any) -> int | None:
    if response.status_code == 200:  # the server ignored the range and sent the whole file
        return len(response.content)
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _file_tensors(target: str, repo: str, revision: str | None, token: str | None, filename: str) -> list[StoredTensor]:
    """The tensors of one safetensors file on the Hub, from its header, checked as a local file's header is; the file
    is one the index names (``model.safetensors`` was found before it is read), so a 404 means the index is wrong.

    Not ``huggingface_hub.get_safetensors_metadata``, though these are the requests it makes: it parses the header
    itself (a malformed one escapes as its own exception, after checks of its own) and drops the file's size, so
    neither the local reader's checks nor the check of the offsets against the end of the file could run.
    """
    from huggingface_hub import constants, errors, get_hf_file_metadata, get_session, hf_hub_url, hf_raise_for_status

    # public (huggingface_hub's docs), but its lazy utils package does not re-export it for type checkers
    from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

    url = hf_hub_url(repo, filename, revision=revision, endpoint=_endpoint())
    headers = build_hf_headers(token=token)

    def get(first: int, last: int) -> Any:
        ranged = {**headers, "Range": f"bytes={first}-{last}"}
        response = get_session().get(url, headers=ranged, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT)
        if response.status_code != 416:  # an empty file has no byte 0; Content-Range still gives its size
            hf_raise_for_status(response)
        return response

    try:
        response = get(0, _FIRST_RANGE)
    except errors.RemoteEntryNotFoundError:
        raise SourceError(f"{target}: {INDEX_FILE}: names {filename}, which is missing") from None
    start = response.content if response.status_code != 416 else b""
    size = _file_size(response)
    if size is None:  # a range answered without the file's size: a HEAD gives it
        size = get_hf_file_metadata(url, token=token).size
    where = f"{target}: {filename}"
    if size is None:
        raise SourceError(f"{where}: the Hub does not say how large the file is, so its header cannot be checked")

    def read(offset: int, count: int) -> bytes:
        # an answer shorter than the first range is the whole file
        if offset + count <= len(start) or len(start) <= _FIRST_RANGE:
            return start[offset : offset + count]
        content: bytes = get(offset, offset + count - 1).content
        return content

    header, _, data_size = parse_header(where, size, read)
    tensors, _ = header_tensors(where, header, data_size, f"{repo}/{filename}")
    return tensors


def _stored(
    target: str, repo: str, revision: str | None, token: str | None
) -> tuple[list[StoredTensor], list[str], list[str]] | None:
    """The tensors of the repo's safetensors files, checked as a local directory's are (a tensor in one file only, the
    one the index says), the files' names, and notes; None when the repo has no safetensors files."""
    from concurrent.futures import ThreadPoolExecutor

    found = _safetensors_files(target, repo, revision, token)
    if found is None:
        return None
    names, weight_map = found
    with ThreadPoolExecutor(max_workers=min(_MAX_WORKERS, len(names) or 1)) as pool:
        read = list(pool.map(lambda name: _file_tensors(target, repo, revision, token, name), names))
    tensors = [tensor for file_tensors in read for tensor in file_tensors]
    notes = check_files(target, tensors, weight_map, f"{target}: {INDEX_FILE}")
    return tensors, [f"{PREFIX}{repo}/{name}" for name in names], notes


@contextlib.contextmanager
def _fetching(target: str, repo: str, revision: str | None) -> Iterator[None]:
    """Requests to the Hub, without its progress bars, their failures turned into one-line errors."""
    from huggingface_hub import errors

    with _hub_errors(target, repo, revision), _quiet_hub():
        try:
            yield
        except errors.HfHubHTTPError:
            raise
        except Exception as error:
            if _is_network_error(error):
                raise OSError(_reason(error)) from None
            raise


def load(
    target: str,
    *,
    quiet: bool = False,
    from_config: bool = False,
    model_class: str | None = None,
    trust_remote_code: bool = False,
    explain: bool = False,
) -> Report:
    """The report of a Hub model: its safetensors headers, or (``from_config``, or no safetensors) its config."""
    from .._progress import status

    repo, revision = parse(target)
    _check_reachable(target, repo)
    token = os.environ.get("HF_TOKEN") or None
    with _fetching(target, repo, revision), status(f"reading {repo} from the Hub", quiet=quiet):
        config_file = _config(repo, revision, token)
        stored = None if from_config or explain else _stored(target, repo, revision, token)
        if stored is None and trust_remote_code and config_file is not None:
            config_file = _config(repo, revision, token, code=True)  # the model is built from it
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
        )
        if not from_config and not explain:
            from dataclasses import replace

            report = replace(report, notes=(f"{repo} has no safetensors weights: built from its config.json",
                                            *report.notes))  # fmt: skip
        return report
    tensors, files, notes = stored
    from .checkpoint import read_config

    config, config_notes = read_config(config_file.parent) if config_file is not None else (None, [])
    return checkpoint_report(
        tensors, kind="safetensors", target=target, files=files, config=config, notes=notes + config_notes, sort=True
    )


def build(target: str, request: Any) -> tuple[Any, list[str]]:
    """The model a Hub repository's config.json describes, built on ``request.device``: ``(module, notes)``."""
    from .hf import build_from_config

    repo, revision = parse(target)
    _check_reachable(target, repo)
    token = os.environ.get("HF_TOKEN") or None
    with _fetching(target, repo, revision):
        config_file = _config(repo, revision, token, code=request.trust_remote_code)
    if config_file is None:
        raise SourceError(f"{target}: {repo} has no config.json to build the model from")
    return build_from_config(
        config_file,
        model_class=request.model_class,
        trust_remote_code=request.trust_remote_code,
        device=request.device,
    )
