"""Models on the Hugging Face Hub (``hf:org/name[@revision]``): ``config.json`` and safetensors headers only.

``huggingface_hub`` fetches the config and reads each shard's header with HTTP range requests
(``get_safetensors_metadata``): a 140 GB model costs a few hundred kilobytes of traffic. ``HF_TOKEN`` and
``HF_ENDPOINT`` are honoured, read when the call is made.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import dtypes as dtype_table
from .._errors import SourceError, TargetError
from .._report import Report
from .checkpoint import StoredTensor, checkpoint_report
from .safetensors import DTYPE_CODES

PREFIX = "hf:"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def parse(target: str) -> tuple[str, str | None]:
    """``hf:org/name@revision`` → ``("org/name", "revision")``.

    >>> parse("hf:meta-llama/Llama-3.1-8B@main")
    ('meta-llama/Llama-3.1-8B', 'main')
    """
    repo, at, revision = target.removeprefix(PREFIX).partition("@")
    if not _REPO_ID.match(repo) or (at and not revision):
        raise TargetError(f"{target}: not a Hub model id; expected hf:org/name or hf:org/name@revision")
    return repo, revision or None


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


def _check_reachable(target: str, repo: str) -> None:
    """Fail at once when the endpoint does not answer: the Hub client would retry a refused connection for ~20 s,
    logging each attempt, before giving up."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:  # the client answers from its cache, or says it is offline
        return
    endpoint = _endpoint()
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=10):
            pass
    except OSError as error:
        raise SourceError(
            f"{target}: cannot reach the Hub at {endpoint} for {repo} ({error.strerror or error}); download the "
            "model and pass its local directory instead"
        ) from None


def _config(repo: str, revision: str | None, token: str | None) -> Path | None:
    from huggingface_hub import errors, hf_hub_download

    try:
        return Path(hf_hub_download(repo, "config.json", revision=revision, endpoint=_endpoint(), token=token))
    except errors.RemoteEntryNotFoundError:
        return None


def _stored(target: str, repo: str, metadata: Any) -> tuple[list[StoredTensor], list[str]]:
    tensors = []
    files = []
    # the Hub client fills files_metadata from a thread pool, in arrival order: sort for a stable report
    for filename, file_metadata in sorted(metadata.files_metadata.items()):
        files.append(f"{PREFIX}{repo}/{filename}")
        for name, info in file_metadata.tensors.items():
            dtype = DTYPE_CODES.get(info.dtype)
            if dtype is None:
                raise SourceError(f"{target}: tensor {name!r} in {filename} has unknown dtype {info.dtype!r}")
            shape = tuple(int(dim) for dim in info.shape)
            begin, end = info.data_offsets
            stored = StoredTensor(name, dtype, shape, end - begin, f"{repo}/{filename}")
            if dtype_table.lookup(dtype).nbytes(stored.numel) != end - begin:
                raise SourceError(
                    f"{target}: tensor {name!r} in {filename}: its offsets do not match its dtype and shape"
                )
            tensors.append(stored)
    return tensors, files


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
    from .target import require

    require("huggingface_hub", "hf", f"reading {target}")
    from huggingface_hub import HfApi, errors

    repo, revision = parse(target)
    _check_reachable(target, repo)
    token = os.environ.get("HF_TOKEN") or None
    api = HfApi(endpoint=_endpoint(), token=token)
    with _hub_errors(target, repo, revision), _quiet_hub(), status(f"reading {repo} from the Hub", quiet=quiet):
        try:
            config_file = _config(repo, revision, token)
            if from_config or explain:
                metadata = None
            else:
                try:
                    metadata = api.get_safetensors_metadata(repo, revision=revision)
                except errors.NotASafetensorsRepoError:
                    metadata = None
        except errors.HfHubHTTPError:
            raise
        except Exception as error:
            if _is_network_error(error):
                raise OSError(_reason(error)) from None
            raise
    if metadata is None:
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
    tensors, files = _stored(target, repo, metadata)
    from .checkpoint import read_config

    config, notes = read_config(config_file.parent) if config_file is not None else (None, [])
    return checkpoint_report(
        tensors, kind="safetensors", target=target, files=files, config=config, notes=notes, sort=True
    )


def build(target: str, request: Any) -> tuple[Any, list[str]]:
    """The model a Hub repository's config.json describes, built on ``request.device``: ``(module, notes)``."""
    from .hf import build_from_config
    from .target import require

    require("huggingface_hub", "hf", f"reading {target}")
    repo, revision = parse(target)
    _check_reachable(target, repo)
    token = os.environ.get("HF_TOKEN") or None
    with _hub_errors(target, repo, revision), _quiet_hub():
        try:
            config_file = _config(repo, revision, token)
        except Exception as error:
            if _is_network_error(error):
                raise OSError(_reason(error)) from None
            raise
    if config_file is None:
        raise SourceError(f"{target}: {repo} has no config.json to build the model from")
    return build_from_config(
        config_file,
        model_class=request.model_class,
        trust_remote_code=request.trust_remote_code,
        device=request.device,
    )
