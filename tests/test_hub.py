"""Hub ids (``hf:org/name[@revision]``) through the real ``huggingface_hub`` client, against a local stand-in for
the Hub on 127.0.0.1 (``tests/hub_server.py``) reached through ``HF_ENDPOINT``.

Every figure is compared with the same files read from a local directory (and, for built configs, with the model
built on meta by the test). The server records every request, so the tests prove that only ``config.json``, the index
and the safetensors *headers* are fetched: each ``.safetensors`` file is asked for ``bytes=0-100000`` and, when its
header is longer, the exact header range, and never whole (with ``--trust-remote-code``, the repo's Python files
too). Malformed headers get the local reader's messages. The Hub cache and ``HF_HOME`` are temporary directories;
``HF_TOKEN`` is unset unless a test sets it. Nothing leaves 127.0.0.1 (name lookups of other hosts are refused).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import huggingface_hub.constants
import pytest
import torch
import transformers
from huggingface_hub import HfApi
from huggingface_hub.utils import _detect_agent
from huggingface_hub.utils import _http as hub_http
from huggingface_hub.utils import logging as hub_logging
from huggingface_hub.utils.tqdm import are_progress_bars_disabled
from torch import nn

from paramscope.sources import hub as hub_source

from . import custom_code
from .checkpoints import LLAMA_3_70B, LLAMA_3_70B_PARAMS, llama_tensors, write_safetensors, write_sharded
from .cli import assert_error, run, run_in_a_new_process
from .custom_code import custom_code_files, isolated_modules_cache
from .hub_server import HubServer, Repo, Request, ZeroPadded

SUBPROCESS_TIMEOUT = 120
TINY = {"vocab": 64, "hidden": 16, "intermediate": 32, "layers": 2, "heads": 4, "kv_heads": 2}
TINY_CONFIG = {"vocab_size": 64, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
LLAMA_2_7B_CONFIG = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                     "num_attention_heads": 32, "num_key_value_heads": 32}  # fmt: skip
LLAMA_2_7B_PARAMS = 6_738_415_616  # published
HEADER_PADDING = 120_000  # makes the tiny model's header longer than the client's first 100 kB range
FIRST_RANGE = "bytes=0-100000"  # what huggingface_hub's parse_safetensors_file_metadata asks for first
TOKEN = "abc"
ID_MESSAGE = "not a Hub model id; expected hf:org/name or hf:org/name@revision"
LATER = "try again later, or download the model and pass its local directory instead"
INDEX = "model.safetensors.index.json"
LONG_NAME = "a" * 97  # huggingface_hub allows 96 characters


# ---------------------------------------------------------------------------------------------------------------------
# the repositories: written to local directories, served from the same bytes


def header_size(path: Path) -> int:
    """The length of a safetensors file's JSON header (its first 8 bytes)."""
    with path.open("rb") as handle:
        return struct.unpack("<Q", handle.read(8))[0]


def served(path: Path) -> bytes | ZeroPadded:
    """The file as the server holds it: small files as they are; a sparse checkpoint as its header over zeros."""
    size = path.stat().st_size
    if path.suffix != ".safetensors" or size < 2**20:
        return path.read_bytes()
    with path.open("rb") as handle:
        prefix = handle.read(8 + header_size(path))
    return ZeroPadded(prefix, size)


def repo_files(directory: Path) -> dict[str, bytes | ZeroPadded]:
    return {path.name: served(path) for path in sorted(directory.iterdir())}


def save_config(directory: Path, config: transformers.PretrainedConfig) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(directory)


@dataclass
class Local:
    """The local copies of the served repositories, and the models the tests compare with."""

    root: Path
    mixtral: nn.Module

    def __getitem__(self, name: str) -> Path:
        return self.root / name


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Local:
    root = tmp_path_factory.mktemp("repos")
    tiny_config = transformers.LlamaConfig(**TINY_CONFIG, architectures=["LlamaForCausalLM"])

    # one file whose header is longer than the first range: the client asks for the header's exact range next
    save_config(root / "tiny-llama", tiny_config)
    write_safetensors(
        root / "tiny-llama" / "model.safetensors",
        llama_tensors(**TINY),
        metadata={"format": "pt", "padding": "x" * HEADER_PADDING},
    )
    # Llama-3-70B: an index and three sparse shards (140 GB as sizes, nothing on disk)
    save_config(
        root / "llama-3-70b", transformers.LlamaConfig(**_hf_config(LLAMA_3_70B), architectures=["LlamaForCausalLM"])
    )
    write_sharded(root / "llama-3-70b", llama_tensors(**LLAMA_3_70B), shards=3)
    # a real tiny Mixtral saved by transformers, with real data
    mixtral_config = transformers.MixtralConfig(
        vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, architectures=["MixtralForCausalLM"],
    )  # fmt: skip
    torch.manual_seed(0)
    mixtral = transformers.MixtralForCausalLM(mixtral_config)
    mixtral.save_pretrained(root / "tiny-mixtral")
    # only a config (Llama-2-7B), and neither a config nor weights
    save_config(root / "config-only", transformers.LlamaConfig(**LLAMA_2_7B_CONFIG, architectures=["LlamaForCausalLM"]))
    (root / "empty").mkdir()
    (root / "empty" / "README.md").write_text("# nothing to count\n")
    return Local(root, mixtral)


def _hf_config(shape: dict[str, int]) -> dict[str, Any]:
    return {
        "vocab_size": shape["vocab"], "hidden_size": shape["hidden"], "intermediate_size": shape["intermediate"],
        "num_hidden_layers": shape["layers"], "num_attention_heads": shape["heads"],
        "num_key_value_heads": shape["kv_heads"],
    }  # fmt: skip


def safetensors_bytes(header: Any, data: bytes = b"", *, length: int | None = None) -> bytes:
    """A safetensors file: the header's length (``length``, to lie about it), the JSON header, then ``data``."""
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def f32(begin: int, count: int = 2) -> dict[str, Any]:
    """A float32 vector of ``count`` elements stored from byte ``begin`` of the data."""
    return {"dtype": "F32", "shape": [count], "data_offsets": [begin, begin + 4 * count]}


def index_bytes(*shards: str) -> bytes:
    """An index that puts tensor ``t{i}`` in the i-th shard named."""
    return json.dumps({"weight_map": {f"t{i}": shard for i, shard in enumerate(shards)}}).encode()


@dataclass(frozen=True)
class Malformed:
    files: dict[str, bytes]
    file: str
    """The file the error names."""
    message: str


SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
MALFORMED = {
    "huge-header": Malformed(
        {"model.safetensors": struct.pack("<Q", 2**40) + b"{}"},
        "model.safetensors",
        "header claims 1.10 TB, more than the 100 MB safetensors allows",
    ),
    "header-past-the-end": Malformed(
        {"model.safetensors": struct.pack("<Q", 200_000) + b" " * 150_000},
        "model.safetensors",
        "header claims 200.00 kB but the file has 150.01 kB",
    ),
    "header-not-json": Malformed(
        {"model.safetensors": struct.pack("<Q", 4) + b"nope"},
        "model.safetensors",
        "header is not valid JSON (Expecting value: line 1 column 1 (char 0)): not a safetensors file",
    ),
    "header-not-an-object": Malformed(
        {"model.safetensors": safetensors_bytes([1, 2])},
        "model.safetensors",
        "header is a JSON array, not an object: not a safetensors file",
    ),
    "too-short": Malformed(
        {"model.safetensors": b"\x01\x02\x03"},
        "model.safetensors",
        "too short for a safetensors header (3 bytes; the length field alone is 8)",
    ),
    "empty-file": Malformed(
        {"model.safetensors": b""}, "model.safetensors", "empty file (0 bytes): not a safetensors file"
    ),
    "index-not-json": Malformed(
        {"model.safetensors.index.json": b"{not json"},
        "model.safetensors.index.json",
        "is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
    ),
    "index-outside": Malformed(
        {"model.safetensors.index.json": index_bytes("../other/model.safetensors")},
        "model.safetensors.index.json",
        "names shard '../other/model.safetensors', not a file name: an index names shards beside it",
    ),
    "overlapping": Malformed(
        {"model.safetensors": safetensors_bytes({"a": f32(0), "b": f32(4)}, bytes(12))},
        "model.safetensors",
        "tensors 'a' and 'b' overlap (data offsets 4 < 8)",
    ),
    "gap": Malformed(
        {"model.safetensors": safetensors_bytes({"a": f32(0), "b": f32(12)}, bytes(20))},
        "model.safetensors",
        "bytes 8 to 12 of the data belong to no tensor",
    ),
    "past-the-end": Malformed(
        {"model.safetensors": safetensors_bytes({"a": f32(0)}, bytes(4))},
        "model.safetensors",
        "tensor 'a' ends at byte 8 of the data, past its end (4 bytes in the file)",
    ),
    "short-of-the-end": Malformed(
        {"model.safetensors": safetensors_bytes({"a": f32(0)}, bytes(12))},
        "model.safetensors",
        "the tensors end at byte 8 of a 12-byte data region",
    ),
    "wrong-size": Malformed(
        {"model.safetensors": safetensors_bytes({"a": {**f32(0), "shape": [3]}}, bytes(8))},
        "model.safetensors",
        "tensor 'a' is float32 [3] = 12 bytes but its offsets span 8",
    ),
    "unknown-dtype": Malformed(
        {"model.safetensors": safetensors_bytes({"a": {**f32(0), "dtype": "F7"}}, bytes(8))},
        "model.safetensors",
        "tensor 'a' has unknown dtype 'F7'",
    ),
    "shard-past-the-end": Malformed(
        {
            "model.safetensors.index.json": index_bytes(*SHARDS),
            SHARDS[0]: safetensors_bytes({"t0": f32(0)}, bytes(8)),
            SHARDS[1]: safetensors_bytes({"t1": f32(0)}, bytes(4)),
        },
        SHARDS[1],
        "tensor 't1' ends at byte 8 of the data, past its end (4 bytes in the file)",
    ),
    "index-names-a-missing-shard": Malformed(
        {"model.safetensors.index.json": index_bytes(*SHARDS), SHARDS[0]: safetensors_bytes({"t0": f32(0)}, bytes(8))},
        "model.safetensors.index.json",
        f"names {SHARDS[1]}, which is missing",
    ),
    "index-lists-a-tensor-its-shard-lacks": Malformed(
        {
            "model.safetensors.index.json": index_bytes(*SHARDS),
            SHARDS[0]: safetensors_bytes({"t0": f32(0)}, bytes(8)),
            SHARDS[1]: safetensors_bytes({"other": f32(0)}, bytes(8)),
        },
        "model.safetensors.index.json",
        f"lists 't1' in {SHARDS[1]}, which does not hold it",
    ),
}
# Shards whose index puts t0 in the first and t1 in the second, but whose second shard holds t0 as well: read
# unchecked, t0 is counted twice (2 + 3 + 2 = 7 parameters instead of 5).
DUPLICATED = {
    "model.safetensors.index.json": index_bytes(*SHARDS),
    SHARDS[0]: safetensors_bytes({"t0": f32(0)}, bytes(8)),
    SHARDS[1]: safetensors_bytes({"t0": f32(0), "t1": f32(8, 3)}, bytes(20)),
}
# Shards holding a tensor the index does not name: counted, and said, as in a local directory.
UNINDEXED = {
    "model.safetensors.index.json": index_bytes(*SHARDS),
    SHARDS[0]: safetensors_bytes({"t0": f32(0), "extra": f32(8, 3)}, bytes(20)),
    SHARDS[1]: safetensors_bytes({"t1": f32(0)}, bytes(8)),
}

REMOTE_SAFETENSORS = safetensors_bytes(
    {"fc.bias": f32(0, 3), "fc.weight": {"dtype": "F32", "shape": [3, 8], "data_offsets": [12, 108]}}, bytes(108)
)


def edited_config(files: dict[str, bytes | ZeroPadded], **changes: Any) -> bytes:
    """The repo's config.json with ``changes`` written over its values."""
    config = files["config.json"]
    assert isinstance(config, bytes)
    return json.dumps({**json.loads(config), **changes}).encode()


def remote_code_files(**weights: bytes) -> dict[str, bytes]:
    """A repo with custom code beside its config, a README, and the weight files given."""
    files = {name: text.encode() for name, text in custom_code_files("paramscope-hub-x").items()}
    return {**files, "README.md": b"# custom code\n", **weights}


@pytest.fixture(scope="module")
def hub(local: Local) -> Iterator[HubServer]:
    tiny = repo_files(local["tiny-llama"])
    repos = {
        "org/tiny-llama": Repo(tiny, branches=("main", "v1.0")),
        "tiny-llama": Repo(tiny),  # an id without an organisation, like "gpt2"
        "org/llama-3-70b": Repo(repo_files(local["llama-3-70b"])),
        "org/llama-3-70b-slow-first-shard": Repo(
            repo_files(local["llama-3-70b"]), delays={"model-00001-of-00003.safetensors": 0.3}
        ),
        "org/tiny-mixtral": Repo(repo_files(local["tiny-mixtral"])),
        "org/config-only": Repo(repo_files(local["config-only"])),
        "org/empty": Repo(repo_files(local["empty"])),
        "org/gated": Repo(tiny, gated_token=TOKEN),
        # ranged answers without the file's size (Content-Range: bytes 0-100000/*): a HEAD gives it
        "org/tiny-llama-no-total": Repo(tiny, range_totals=False),
        "org/past-the-end-no-total": Repo(MALFORMED["past-the-end"].files, range_totals=False),
        # a server that ignores Range and sends every file whole: 140 GB of shards, or a file without its size
        "org/llama-3-70b-no-ranges": Repo(repo_files(local["llama-3-70b"]), ranges=False),
        "org/tiny-llama-no-ranges-unsized": Repo(tiny, ranges=False, lengths=False),
        "org/past-the-end-no-ranges": Repo(MALFORMED["past-the-end"].files, ranges=False),
        # ranged answers capped at 64 KiB, however much was asked for
        "org/tiny-llama-capped-ranges": Repo(tiny, max_range=2**16),
        # gzipped answers: errors, and whole files where Range is ignored (Content-Length then the gzipped size)
        "org/index-names-a-missing-shard-gzip": Repo(MALFORMED["index-names-a-missing-shard"].files, compressed=True),
        "org/tiny-llama-no-ranges-gzip": Repo(tiny, ranges=False, compressed=True),
        "org/shard-500-gzip": Repo(
            repo_files(local["llama-3-70b"]), statuses={"model-00002-of-00003.safetensors": 500}, compressed=True
        ),
        **{f"org/{name}": Repo(case.files) for name, case in MALFORMED.items()},
        "org/duplicated": Repo(DUPLICATED),
        "org/unindexed": Repo(UNINDEXED),
        "org/remote-x": Repo(remote_code_files(**{"pytorch_model.bin": bytes(108)})),
        "org/remote-x-safetensors": Repo(remote_code_files(**{"model.safetensors": REMOTE_SAFETENSORS})),
        # more Python than custom code takes: too many files, too many bytes, and bytes a listing understates
        "org/remote-x-many-files": Repo({**remote_code_files(), **{f"tests/t{i}.py": b"" for i in range(1_000)}}),
        "org/remote-x-huge-code": Repo({**remote_code_files(), "data.py": ZeroPadded(b"#", 100 * 10**6)}),
        "org/remote-x-understated": Repo(
            {**remote_code_files(), "data.py": ZeroPadded(b"#", 70 * 10**6)}, listed_sizes={"data.py": 10}
        ),
        "org/remote-x-understated-unsized": Repo(
            {**remote_code_files(), "data.py": ZeroPadded(b"#", 200 * 2**20)},
            listed_sizes={"data.py": 10},
            lengths=False,
            ranges=False,  # served a chunk at a time, not refused as too large to serve whole
        ),
        # weights, and a config transformers refuses; a config naming no class; weights without a config
        "org/bad-config": Repo({**tiny, "config.json": edited_config(tiny, hidden_size="abc")}),
        "org/bad-architectures": Repo({"config.json": edited_config(tiny, architectures=[123])}),
        "org/abstract-architecture": Repo({"config.json": edited_config(tiny, architectures=["LlamaPreTrainedModel"])}),
        "org/garbage-config": Repo({"config.json": b"\x00\xff garbage"}),
        "org/no-config": Repo({name: data for name, data in tiny.items() if name != "config.json"}),
        "org/slow-config": Repo(tiny, delays={"config.json": 0.5}),
        # a shard's answer sent a byte every 0.2 s: 5.5 hours for its first range, each read of the socket in time
        "org/trickling-shard": Repo(tiny, trickle={"model.safetensors": 0.2}),
        # a config.json or an index larger than paramscope reads, its size said by the HEAD, or by no answer at all
        "org/huge-config": Repo({"config.json": ZeroPadded(b"{", 10 * 10**9)}),
        "org/huge-config-unsized": Repo({"config.json": ZeroPadded(b"{", 40 * 2**20)}, lengths=False),
        "org/huge-index": Repo({"config.json": tiny["config.json"], INDEX: ZeroPadded(b"{", 200 * 10**6)}),
        # a failing Hub, and a server that answers 404 without saying what is missing
        "org/config-500": Repo(tiny, statuses={"config.json": 500}),
        "org/config-404": Repo(tiny, statuses={"config.json": 404}),
        "org/shard-500": Repo(repo_files(local["llama-3-70b"]), statuses={"model-00002-of-00003.safetensors": 500}),
        # a server that breaks off its answer: 20 bytes of the first range of a shard, then the connection closed
        "org/shard-cut": Repo(repo_files(local["llama-3-70b"]), cut={"model-00002-of-00003.safetensors": 20}),
    }
    with HubServer(repos) as server:
        yield server


@dataclass
class Lookups:
    refused: list[str]


@pytest.fixture(autouse=True)
def hub_env(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lookups]:
    """The environment of a user whose HF_ENDPOINT is the local server, with a fresh cache and no token."""
    home, cache = tmp_path / "hf-home", tmp_path / "hf-cache"
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    # huggingface_hub reads these once, when it is imported: the in-process tests set them as a new process would
    constants = huggingface_hub.constants
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # huggingface_hub fetches an "agent harnesses" list from constants.ENDPOINT (fixed at import) for its user agent
    monkeypatch.setattr(_detect_agent, "_registry", {"standardEnvVars": [], "harnesses": {}})
    # nothing may leave 127.0.0.1: a lookup of any other host fails, and is remembered
    lookups = Lookups([])
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", b"127.0.0.1", b"localhost"):
            lookups.refused.append(str(host))
            raise socket.gaierror(socket.EAI_NONAME, f"test: no lookups of {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    hub.clear()
    yield lookups
    assert lookups.refused == []


# ---------------------------------------------------------------------------------------------------------------------
# helpers


def run_json(capsys: pytest.CaptureFixture[str], target: Path | str, *argv: str, code: int = 0) -> dict[str, Any]:
    got, out, err = run(capsys, "inspect", str(target), "--format", "json", *argv)
    assert (got, err) == (code, "")
    return json.loads(out)


def same_model(remote: dict[str, Any], local: dict[str, Any]) -> None:
    """The Hub report and the local one agree on every figure (only the source, and the order of tensors, differ)."""
    for key in ("totals", "by_dtype", "modules"):
        assert remote[key] == local[key], key
    assert sorted(remote["tensors"], key=lambda t: t["name"]) == sorted(local["tensors"], key=lambda t: t["name"])


def safetensors_requests(hub: HubServer) -> list[Request]:
    return [request for request in hub.requests if request.path.endswith(".safetensors")]


def assert_headers_only(hub: HubServer, local_directory: Path) -> None:
    """Each .safetensors file was asked for its header only: HEAD, the first 100 kB, the rest of the header."""
    requests = safetensors_requests(hub)
    assert requests
    for request in requests:
        assert request.status in (200, 206, 404), request
        if request.method == "HEAD":
            continue
        assert request.method == "GET", request
        assert request.range is not None, f"a whole file was downloaded: {request}"
        header = header_size(local_directory / request.filename)
        assert request.range in (FIRST_RANGE, f"bytes=100001-{header + 7}"), request


def local_active(model: nn.Module, top_k: int, experts: int) -> Fraction:
    total = sum(p.numel() for p in model.parameters())
    routed = sum(p.numel() for name, p in model.named_parameters() if "experts" in name.split(".")[:-1])
    return total - routed + routed * Fraction(top_k, experts)


# ---------------------------------------------------------------------------------------------------------------------
# counts, the files read, the bytes asked for


def test_single_file_repo(capsys: pytest.CaptureFixture[str], hub: HubServer, local: Local) -> None:
    report = run_json(capsys, "hf:org/tiny-llama")
    same_model(report, run_json(capsys, local["tiny-llama"]))
    assert report["source"] == {
        "kind": "safetensors",
        "target": "hf:org/tiny-llama",
        "device": None,
        "files": ["hf:org/tiny-llama/model.safetensors", "hf:org/tiny-llama/config.json"],  # every file read
    }
    header = header_size(local["tiny-llama"] / "model.safetensors")
    assert header > 100_000 - 8  # so the client needs the second, exact range
    assert [(r.method, r.range) for r in safetensors_requests(hub)] == [
        ("HEAD", None),
        ("GET", FIRST_RANGE),
        ("GET", f"bytes=100001-{header + 7}"),
    ]
    # the first answer names the commit, which every later request asks for (the HEAD and GET of hf_hub_download)
    commit = hub.repos["org/tiny-llama"].commit
    assert [(r.method, r.path) for r in hub.requests if not r.path.endswith(".safetensors")] == [
        ("HEAD", "/org/tiny-llama/resolve/main/config.json"),
        ("HEAD", f"/org/tiny-llama/resolve/{commit}/config.json"),
        ("GET", f"/org/tiny-llama/resolve/{commit}/config.json"),
    ]
    assert all(f"/resolve/{commit}/" in r.path for r in safetensors_requests(hub))
    assert report["notes"][-1] == f"org/tiny-llama@main read at commit {commit}"
    assert_headers_only(hub, local["tiny-llama"])


def test_sharded_repo_reads_three_headers(capsys: pytest.CaptureFixture[str], hub: HubServer, local: Local) -> None:
    report = run_json(capsys, "hf:org/llama-3-70b")
    assert report["totals"]["params"] == LLAMA_3_70B_PARAMS
    same_model(report, run_json(capsys, local["llama-3-70b"]))
    shards = [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    read = ["model.safetensors.index.json", *shards, "config.json"]  # every file read
    assert report["source"]["files"] == [f"hf:org/llama-3-70b/{name}" for name in read]
    # one ranged GET per shard; the single-file name is tried first (404), then the index is downloaded
    gets = sorted((r.filename, r.range) for r in safetensors_requests(hub) if r.method == "GET")
    assert gets == [(shard, FIRST_RANGE) for shard in shards]
    assert ("HEAD", "model.safetensors", 404) in {(r.method, r.filename, r.status) for r in hub.requests}
    assert ("GET", "model.safetensors.index.json") in {(r.method, r.filename) for r in hub.requests}
    assert_headers_only(hub, local["llama-3-70b"])
    # 140 GB of shards, about 300 kB asked for
    assert sum((local["llama-3-70b"] / shard).stat().st_size for shard in shards) > 140e9


def test_sharded_repo_report_does_not_depend_on_timing(capsys: pytest.CaptureFixture[str], local: Local) -> None:
    expected = run_json(capsys, local["llama-3-70b"])
    report = run_json(capsys, "hf:org/llama-3-70b-slow-first-shard")
    assert [t["name"] for t in report["tensors"]] == [t["name"] for t in expected["tensors"]]
    read = ["model.safetensors.index.json", *(f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)), "config.json"]
    assert report["source"]["files"] == [f"hf:org/llama-3-70b-slow-first-shard/{name}" for name in read]


def test_id_without_organisation(capsys: pytest.CaptureFixture[str], hub: HubServer, local: Local) -> None:
    report = run_json(capsys, "hf:tiny-llama")
    same_model(report, run_json(capsys, local["tiny-llama"]))
    assert {r.path.rpartition("/resolve/")[0] for r in hub.requests} == {"/tiny-llama"}


@pytest.mark.parametrize("revision", ["v1.0", "commit"])
def test_revision(capsys: pytest.CaptureFixture[str], hub: HubServer, local: Local, revision: str) -> None:
    commit = hub.repos["org/tiny-llama"].commit
    if revision == "commit":
        revision = commit
    report = run_json(capsys, f"hf:org/tiny-llama@{revision}")
    expected = run_json(capsys, local["tiny-llama"])
    same_model(report, expected)
    assert report["source"]["target"] == f"hf:org/tiny-llama@{revision}"
    # the revision asked for once, then the commit its answer named; a commit hash is asked for as it is, unsaid
    assert [r.path.split("/")[4] for r in hub.requests] == [revision] + [commit] * (len(hub.requests) - 1)
    said = [] if revision == commit else [f"org/tiny-llama@{revision} read at commit {commit}"]
    assert report["notes"] == expected["notes"] + said


def test_moe_repo_gives_active_params(capsys: pytest.CaptureFixture[str], hub: HubServer, local: Local) -> None:
    report = run_json(capsys, "hf:org/tiny-mixtral")
    same_model(report, run_json(capsys, local["tiny-mixtral"]))
    assert report["totals"]["params"] == sum(p.numel() for p in local.mixtral.parameters())
    assert report["totals"]["active_params"] == local_active(local.mixtral, top_k=2, experts=4)
    assert any(note.startswith("mixture of experts, 2 of 4 experts per token") for note in report["notes"])
    assert_headers_only(hub, local["tiny-mixtral"])


def test_repo_with_only_a_config_is_built(capsys: pytest.CaptureFixture[str], hub: HubServer, local: Local) -> None:
    report = run_json(capsys, "hf:org/config-only")
    assert report["totals"]["params"] == LLAMA_2_7B_PARAMS
    assert report["totals"] == run_json(capsys, local["config-only"])["totals"]
    assert report["source"]["kind"] == "hf-config"
    assert report["source"]["target"] == "hf:org/config-only"
    assert report["notes"][0] == "org/config-only has no safetensors weights: built from its config.json"
    assert report["notes"][1].startswith("built LlamaForCausalLM from ")
    commit = hub.repos["org/config-only"].commit
    assert report["notes"][-1] == f"org/config-only@main read at commit {commit}"
    assert safetensors_requests(hub) == [
        Request("HEAD", f"/org/config-only/resolve/{commit}/model.safetensors", None, None, 404),
    ]


def test_from_config_fetches_no_header(capsys: pytest.CaptureFixture[str], hub: HubServer) -> None:
    report = run_json(capsys, "hf:org/tiny-llama", "--from-config")
    config = transformers.LlamaConfig(**TINY_CONFIG)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    assert report["source"]["kind"] == "hf-config"
    assert report["totals"]["params"] == sum(p.numel() for p in model.parameters())
    assert report["notes"][0].startswith("built LlamaForCausalLM from ")  # no "no safetensors weights" note
    assert safetensors_requests(hub) == []


def test_check_against_the_hub(capsys: pytest.CaptureFixture[str], hub: HubServer, local: Local) -> None:
    report = run_json(capsys, "hf:org/tiny-llama", "--check")
    assert report["source"]["kind"] == "safetensors"
    assert report["check"] == {
        "against": "hf:org/tiny-llama",
        "ok": True,
        "missing": [],
        "unexpected": [],
        "mismatched": [],
    }
    assert_headers_only(hub, local["tiny-llama"])


def test_model_class_on_a_repo_read_from_its_headers_is_refused(
    capsys: pytest.CaptureFixture[str], hub: HubServer
) -> None:
    assert_error(
        run(capsys, "inspect", "hf:org/tiny-llama", "--model-class", "LlamaModel"),
        "hf:org/tiny-llama: --model-class is for a model built from a config.json; the repository's safetensors "
        "weights are read: add --from-config to build it from config.json, or --check to compare the two",
    )
    config = transformers.LlamaConfig(**TINY_CONFIG)
    with torch.device("meta"):
        base = transformers.LlamaModel(config)
    report = run_json(capsys, "hf:org/tiny-llama", "--from-config", "--model-class", "LlamaModel")
    assert report["totals"]["params"] == sum(p.numel() for p in base.parameters())
    built = run_json(capsys, "hf:org/config-only", "--model-class", "LlamaModel")  # no weights: built, as asked
    assert built["notes"][1].startswith("built LlamaModel from ")


def test_check_needs_weights_on_the_hub(capsys: pytest.CaptureFixture[str], hub: HubServer) -> None:
    for argv in (["hf:org/config-only", "--check"], ["hf:org/tiny-llama", "--check", "--from-config"]):
        code, out, err = run(capsys, "inspect", *argv)
        assert (code, out) == (2, "")
        assert err.startswith(f"paramscope: error: {argv[0]}: --check compares ")  # the model with itself: no check


def test_summary_check_against_the_hub(capsys: pytest.CaptureFixture[str], hub: HubServer) -> None:
    code, out, err = run(capsys, "summary", "hf:org/tiny-llama", "--input-size", "1,4", "--input-dtype", "long",
                         "--check", "--format", "json", "--quiet")  # fmt: skip
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["check"]["ok"] is True
    assert report["totals"]["flops"] > 0


# ---------------------------------------------------------------------------------------------------------------------
# HF_TOKEN, HF_ENDPOINT


def test_no_token_is_sent_by_default(capsys: pytest.CaptureFixture[str], hub: HubServer) -> None:
    run_json(capsys, "hf:org/tiny-llama")
    assert hub.requests
    assert {r.authorization for r in hub.requests} == {None}


def test_hf_token_is_sent(capsys: pytest.CaptureFixture[str], hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", hub.url + "/")  # a trailing slash is fine
    run_json(capsys, "hf:org/tiny-llama")
    assert hub.requests
    assert {r.authorization for r in hub.requests} == {f"Bearer {TOKEN}"}
    commit = hub.repos["org/tiny-llama"].commit
    assert hub.requests[0].path == "/org/tiny-llama/resolve/main/config.json"
    assert all(r.path.startswith(f"/org/tiny-llama/resolve/{commit}/") for r in hub.requests[1:])


def test_gated_repo_needs_a_token(capsys: pytest.CaptureFixture[str], hub: HubServer) -> None:
    assert_error(
        run(capsys, "inspect", "hf:org/gated"),
        "hf:org/gated: org/gated is gated: accept its terms on the Hub, then set HF_TOKEN",
    )
    assert {r.status for r in hub.requests} == {403}


def test_gated_repo_with_a_token(
    capsys: pytest.CaptureFixture[str], hub: HubServer, local: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    report = run_json(capsys, "hf:org/gated")
    assert report["totals"] == run_json(capsys, local["tiny-llama"])["totals"]


def test_hf_endpoint_is_read_at_call_time(
    capsys: pytest.CaptureFixture[str], hub: HubServer, local: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HubServer({"org/tiny-llama": Repo(repo_files(local["tiny-llama"]))}) as other:
        monkeypatch.setenv("HF_ENDPOINT", other.url)
        run_json(capsys, "hf:org/tiny-llama")
        assert other.requests
    assert hub.requests == []


@pytest.mark.parametrize("client", ["huggingface_hub's", "an application's, not following redirects"])
def test_weights_redirected_to_a_cdn(
    capsys: pytest.CaptureFixture[str], local: Local, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    """The Hub answers a request for a file stored with LFS with a 302 to a CDN, another host: followed, the range
    asked of the CDN, the token not sent there; also with an HTTP client an application set for huggingface_hub
    (``set_client_factory``) that follows no redirects by itself (httpx's default)."""
    if client != "huggingface_hub's":
        client_type = type(hub_http.default_client_factory())
        monkeypatch.setattr(hub_http, "_GLOBAL_CLIENT_FACTORY", lambda: client_type(timeout=None))
        monkeypatch.setattr(hub_http, "_GLOBAL_CLIENT", None)
    tiny = repo_files(local["tiny-llama"])
    with (
        HubServer({"org/tiny-llama": Repo(tiny)}) as cdn,
        HubServer({"org/tiny-llama": Repo(tiny, cdn=cdn.url)}) as hub,
    ):
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        same_model(run_json(capsys, "hf:org/tiny-llama"), run_json(capsys, local["tiny-llama"]))
        header = header_size(local["tiny-llama"] / "model.safetensors")
        ranges = [FIRST_RANGE, f"bytes=100001-{header + 7}"]
        assert [(r.method, r.range, r.status) for r in safetensors_requests(hub)] == [
            ("HEAD", None, 302),
            *[("GET", asked, 302) for asked in ranges],
        ]
        assert [(r.method, r.range, r.status, r.authorization) for r in cdn.requests] == [
            ("GET", asked, 206, None) for asked in ranges
        ]


# ---------------------------------------------------------------------------------------------------------------------
# errors: one line, exit 2


def test_missing_repo(capsys: pytest.CaptureFixture[str], hub: HubServer) -> None:
    assert_error(
        run(capsys, "inspect", "hf:org/missing"),
        f"hf:org/missing: no model org/missing on {hub.url} (a private one needs HF_TOKEN)",
    )


def test_bad_revision(capsys: pytest.CaptureFixture[str]) -> None:
    assert_error(
        run(capsys, "inspect", "hf:org/tiny-llama@nope"),
        "hf:org/tiny-llama@nope: org/tiny-llama has no revision 'nope'",
    )


def test_repo_without_weights_or_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert_error(
        run(capsys, "inspect", "hf:org/empty"),
        "hf:org/empty: org/empty has neither safetensors weights nor a config.json",
    )


def test_from_config_without_a_config(capsys: pytest.CaptureFixture[str], hub: HubServer, local: Local) -> None:
    assert_error(
        run(capsys, "inspect", "hf:org/no-config", "--from-config"),
        "hf:org/no-config: org/no-config has no config.json to build the model from",
    )
    # its weights are there, and read without it
    assert run_json(capsys, "hf:org/no-config")["totals"] == run_json(capsys, local["tiny-llama"])["totals"]


def test_a_config_transformers_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    # named by the id, not by its place in the Hub cache
    message = (
        "hf:org/bad-config: config.json: not a config transformers can read (StrictDataclassFieldValidationError: "
        "Validation error for field 'hidden_size': TypeError: Field 'hidden_size' expected int, got str (value: 'abc'))"
    )
    for argv in (["--from-config"], ["--check"], ["--from-config", "--trust-remote-code"]):
        assert_error(run(capsys, "inspect", "hf:org/bad-config", *argv), message)
    # the weights alone are counted from their headers: the config is only read as JSON
    assert run_json(capsys, "hf:org/bad-config")["source"]["kind"] == "safetensors"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "bad-architectures",
            'architectures is [123], not a list of model class names such as ["LlamaForCausalLM"]; name the class to '
            "build with --model-class NAME",
        ),
        (
            "abstract-architecture",
            "architectures names LlamaPreTrainedModel, an abstract base class of transformers with no weights of its "
            "own (it would count 0 parameters); pass the model class to build with --model-class NAME (such as "
            "LlamaForCausalLM)",
        ),
        ("garbage-config", "not valid JSON ('utf-8' codec can't decode byte 0xff in position 1: invalid start byte)"),
    ],
)
@pytest.mark.parametrize("command", ["inspect", "memory"])
def test_config_errors_name_the_id(capsys: pytest.CaptureFixture[str], name: str, message: str, command: str) -> None:
    assert_error(run(capsys, command, f"hf:org/{name}"), f"hf:org/{name}: config.json: {message}")


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://127.0.0.1:99999", "Port out of range 0-65535"),
        ("localhost:8080", "not an http:// or https:// address"),
    ],
)
def test_malformed_hf_endpoint(
    capsys: pytest.CaptureFixture[str], hub: HubServer, monkeypatch: pytest.MonkeyPatch, endpoint: str, reason: str
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    for argv in (["inspect", "hf:org/tiny-llama"], ["inspect", "hf:org/tiny-llama", "--check"]):
        assert_error(
            run(capsys, *argv),
            f"hf:org/tiny-llama: HF_ENDPOINT is {endpoint!r}, not a valid URL ({reason}); set it to the Hub's "
            "address, such as https://huggingface.co, or unset it",
        )
    assert hub.requests == []


@pytest.mark.parametrize("name", ["HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"])
def test_a_negative_hub_timeout_is_no_matter_where_no_request_is_made(
    capsys: pytest.CaptureFixture[str], local: Local, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """huggingface_hub imports a negative timeout as it is (a socket refuses it at a first request): a local config,
    which makes none, is read as without it."""
    config = local["tiny-llama"] / "config.json"
    expected = run_json(capsys, str(config))
    monkeypatch.setenv(name, "-5")
    assert run_json(capsys, str(config)) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [("HF_HUB_ETAG_TIMEOUT", "abc"), ("HF_HUB_ETAG_TIMEOUT", "-1"), ("HF_HUB_DOWNLOAD_TIMEOUT", "1.5")],
)
def test_malformed_hub_timeout(
    capsys: pytest.CaptureFixture[str], hub: HubServer, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """huggingface_hub reads these with int() when it is imported (a traceback), and a negative one is refused by
    the socket at the first request (another)."""
    monkeypatch.setenv(name, value)
    message = (f"{name} is {value!r}, not a whole number of seconds; set it to one, such as 10 (huggingface_hub's "
               "default), or unset it")  # fmt: skip
    for argv in (["inspect", "hf:org/tiny-llama"], ["inspect", "hf:org/tiny-llama", "--from-config"], ["summary",
                 "hf:org/tiny-llama", "--input-size", "1,4"]):  # fmt: skip
        assert_error(run(capsys, *argv), f"hf:org/tiny-llama: {message}")
    assert hub.requests == []
    if value == "abc":  # in a process of its own, which imports huggingface_hub after the check
        env = {**os.environ, "HF_ENDPOINT": hub.url, name: value}
        env["PYTHONPATH"] = str(Path(hub_source.__file__).parents[2])
        done = run_in_a_new_process("inspect", "hf:org/tiny-llama", env=env, timeout=SUBPROCESS_TIMEOUT)
        assert (done.returncode, done.stdout, done.stderr) == (
            2,
            "",
            f"paramscope: error: hf:org/tiny-llama: {message}\n",
        )


@pytest.mark.parametrize(
    "target",
    [
        *["hf:", "hf:org/", "hf:/name", "hf:org/name@", "hf:a/b/c", "hf:org/na me", "hf:-x/y"],
        # what huggingface_hub's validate_repo_id refuses, and a revision that is a URL path segment of its own
        *["hf:org/x..y", "hf:org/x--y", "hf:a/b.", "hf:org/name.git", "hf:org/naïve"],
        pytest.param(f"hf:org/{LONG_NAME}", id="97-chars"),
        *["hf:org/tiny-llama@..", "hf:org/tiny-llama@."],
    ],
)
def test_malformed_id(capsys: pytest.CaptureFixture[str], hub: HubServer, target: str) -> None:
    assert_error(run(capsys, "inspect", target), f"{target}: {ID_MESSAGE}")
    assert hub.requests == []


@pytest.mark.parametrize(
    "argv",
    [
        ["memory", "{}"],
        ["summary", "{}", "--input-size", "1,8"],
        ["inspect", "{}", "--check"],
        ["diff", "{}", "hf:org/tiny-llama"],
    ],
)
@pytest.mark.parametrize("target", ["hf:org/x..y", pytest.param(f"hf:{LONG_NAME}", id="97-chars")])
def test_malformed_id_in_every_command(
    capsys: pytest.CaptureFixture[str], hub: HubServer, argv: list[str], target: str
) -> None:
    assert_error(run(capsys, *(arg.format(target) for arg in argv)), f"{target}: {ID_MESSAGE}")
    assert hub.requests == []


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _NoSleep:
    """``time`` for huggingface_hub's retry loop, without the waits (1 + 2 + 4 + 8 + 8 s when the Hub is down)."""

    def __getattr__(self, name: str) -> Any:
        import time

        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        pass


OFFLINE_REASON = "Connection refused"  # paramscope tries the endpoint itself before the Hub client's retries


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> str:
    """HF_ENDPOINT on a port nobody listens on; huggingface_hub's retries do not wait."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(hub_http, "time", _NoSleep())
    return endpoint


def test_offline_names_the_repo_and_suggests_a_local_path(capsys: pytest.CaptureFixture[str], offline: str) -> None:
    code, out, err = run(capsys, "inspect", "hf:org/tiny-llama")
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == (
        f"paramscope: error: hf:org/tiny-llama: cannot reach the Hub at {offline} for org/tiny-llama "
        f"({OFFLINE_REASON}); download the model and pass its local directory instead"
    )


@pytest.fixture
def hub_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub's log handler writes to the captured stderr (in a process of its own, to the real one)."""
    for handler in hub_logging.get_logger().handlers:
        monkeypatch.setattr(handler, "stream", sys.stderr)


def test_offline_error_is_one_line(capsys: pytest.CaptureFixture[str], offline: str, hub_log: None) -> None:
    code, out, err = run(capsys, "inspect", "hf:org/tiny-llama")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1, err


OFFLINE_LATER = "unset HF_HUB_OFFLINE, or download the model and pass its local directory instead"


def cache_files(hub: HubServer, repo: str, *filenames: str) -> None:
    """Download ``filenames`` of ``repo`` whole into the Hub cache, as transformers' from_pretrained does (online,
    whatever HF_HUB_OFFLINE says)."""
    constants = huggingface_hub.constants
    offline, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, False
    try:
        for filename in filenames:
            huggingface_hub.hf_hub_download(repo, filename, endpoint=hub.url)
    finally:
        constants.HF_HUB_OFFLINE = offline


@pytest.fixture
def hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1, as huggingface_hub reads it when it is imported."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize("repo", ["tiny-llama", "unindexed"])  # one file and a config; shards and an index
def test_offline_reads_the_headers_of_cached_weights(
    capsys: pytest.CaptureFixture[str], hub: HubServer, local: Local, tmp_path: Path, hub_offline: None, repo: str
) -> None:
    directory = local[repo] if repo == "tiny-llama" else write_repo(tmp_path / repo, UNINDEXED)
    names = [path.name for path in directory.iterdir()]
    cache_files(hub, f"org/{repo}", *names)
    hub.clear()
    report = run_json(capsys, f"hf:org/{repo}")
    expected = run_json(capsys, directory)
    same_model(report, expected)
    # refs/main in the cache gave the commit
    assert report["notes"] == [*expected["notes"], f"org/{repo}@main read at commit {hub.repos[f'org/{repo}'].commit}"]
    weights = sorted(name for name in names if name.endswith(".safetensors"))
    index, config = [n for n in names if n.endswith(".index.json")], [n for n in names if n == "config.json"]
    assert report["source"]["files"] == [f"hf:org/{repo}/{name}" for name in (*index, *weights, *config)]
    assert hub.requests == []


def test_offline_without_cached_weights(capsys: pytest.CaptureFixture[str], hub: HubServer, hub_offline: None) -> None:
    assert_error(
        run(capsys, "inspect", "hf:org/tiny-llama"),
        f"hf:org/tiny-llama: offline (HF_HUB_OFFLINE), and the Hub cache does not hold org/tiny-llama; {OFFLINE_LATER}",
    )
    config = "offline (HF_HUB_OFFLINE), and the Hub cache does not hold org/tiny-llama's config.json"
    for command in (["inspect", "--from-config"], ["summary", "--input-size", "1,4"]):
        assert_error(run(capsys, command[0], "hf:org/tiny-llama", *command[1:]), f"hf:org/tiny-llama: {config}; "
                                                                                 f"{OFFLINE_LATER}")  # fmt: skip
    cache_files(hub, "org/tiny-llama", "config.json")
    assert_error(
        run(capsys, "inspect", "hf:org/tiny-llama"),
        "hf:org/tiny-llama: offline (HF_HUB_OFFLINE), and the Hub cache holds no safetensors weights of "
        f"org/tiny-llama; pass --from-config to build the model from its config.json, or {OFFLINE_LATER}",
    )
    built = run_json(capsys, "hf:org/tiny-llama", "--from-config")
    assert built["totals"]["params"] == sum(p.numel() for p in transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**TINY_CONFIG)).parameters())  # fmt: skip
    assert hub.requests_for("config.json")  # cached, online, by the test
    assert not [r for r in hub.requests if not r.path.endswith("config.json")]


def test_offline_with_a_shard_not_cached(capsys: pytest.CaptureFixture[str], hub: HubServer, hub_offline: None) -> None:
    cache_files(hub, "org/unindexed", INDEX, SHARDS[0])
    assert_error(
        run(capsys, "inspect", "hf:org/unindexed"),
        f"hf:org/unindexed: offline (HF_HUB_OFFLINE), and the Hub cache does not hold {SHARDS[1]}, a shard of "
        f"org/unindexed its index names; {OFFLINE_LATER}",
    )


# ---------------------------------------------------------------------------------------------------------------------
# a push while a model is read: every file is read at the commit of the first answer, which a note names

COMMIT_A, COMMIT_B = (hashlib.sha1(name).hexdigest() for name in (b"a", b"b"))
# the same index and shards before and after a push that grew the tensors: 2 + 3 parameters, then 4 + 6
PUSHED_A = {
    INDEX: index_bytes(*SHARDS),
    SHARDS[0]: safetensors_bytes({"t0": f32(0)}, bytes(8)),
    SHARDS[1]: safetensors_bytes({"t1": f32(0, 3)}, bytes(12)),
}
PUSHED_B = {
    INDEX: index_bytes(*SHARDS),
    SHARDS[0]: safetensors_bytes({"t0": f32(0, 4)}, bytes(16)),
    SHARDS[1]: safetensors_bytes({"t1": f32(0, 6)}, bytes(24)),
}


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A Hub of its own, whose org/pushed a test pushes a new commit to (PUSHED_B, COMMIT_B)."""
    with HubServer({"org/pushed": Repo(PUSHED_A, commit=COMMIT_A, branches=("main", "v1.0"))}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def resolved(hub: HubServer) -> list[str]:
    """The paths of the requests for the repository's files, in order."""
    return [r.path for r in hub.requests if "/resolve/" in r.path]


@pytest.mark.parametrize("after", ["the first answer", "the index"])
def test_a_push_while_a_model_is_read(
    capsys: pytest.CaptureFixture[str], pushed: HubServer, tmp_path: Path, after: str
) -> None:
    """The branch gets a new commit right after the first answer, or between the index and the shards (a model
    being uploaded): every file is read at the commit the first answer named, not the index of one commit and the
    shards of another."""
    after_it = {"the first answer": lambda r: True, "the index": lambda r: (r.method, r.filename) == ("GET", INDEX)}
    pushed.push("org/pushed", Repo(PUSHED_B, commit=COMMIT_B), after=after_it[after])
    report = run_json(capsys, "hf:org/pushed")
    local = run_json(capsys, write_repo(tmp_path / "at-a", PUSHED_A))
    same_model(report, local)
    assert report["totals"]["params"] == 2 + 3
    assert report["notes"] == [*local["notes"], f"org/pushed@main read at commit {COMMIT_A}"]
    paths = resolved(pushed)
    assert paths[0] == "/org/pushed/resolve/main/config.json"  # the first answer (404: no config) names the commit
    assert all(path.startswith(f"/org/pushed/resolve/{COMMIT_A}/") for path in paths[1:]), paths


def test_a_tag_is_read_at_one_commit_and_a_commit_as_it_is(
    capsys: pytest.CaptureFixture[str], pushed: HubServer, tmp_path: Path
) -> None:
    pushed.push("org/pushed", Repo(PUSHED_B, commit=COMMIT_B, branches=("main", "v1.0")), after=lambda r: True)
    report = run_json(capsys, "hf:org/pushed@v1.0")
    assert report["totals"]["params"] == 2 + 3
    assert report["notes"][-1] == f"org/pushed@v1.0 read at commit {COMMIT_A}"
    # a commit hash given is every request's revision, from the first; no note says what was asked
    pushed.clear()
    report = run_json(capsys, f"hf:org/pushed@{COMMIT_A}")
    local = run_json(capsys, write_repo(tmp_path / "at-a", PUSHED_A))
    same_model(report, local)
    assert report["notes"] == local["notes"]
    assert resolved(pushed)
    assert all(path.startswith(f"/org/pushed/resolve/{COMMIT_A}/") for path in resolved(pushed))
    # the branch, read again, is the new commit
    report = run_json(capsys, "hf:org/pushed")
    assert report["totals"]["params"] == 4 + 6
    assert report["notes"][-1] == f"org/pushed@main read at commit {COMMIT_B}"


def test_offline_the_cache_is_read_at_one_commit(
    capsys: pytest.CaptureFixture[str], pushed: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    hub_offline: None,
) -> None:  # fmt: skip
    """Offline, refs/main in the Hub cache gives the commit, read once: a download of the new commit that moves it
    while paramscope reads the cache (after the index) changes nothing of what is read."""
    cache_files(pushed, "org/pushed", INDEX, *SHARDS)
    pushed.push("org/pushed", Repo(PUSHED_B, commit=COMMIT_B))
    cache_files(pushed, "org/pushed", INDEX, *SHARDS)
    ref = tmp_path / "hf-cache" / "models--org--pushed" / "refs" / "main"
    assert ref.read_text() == COMMIT_B
    ref.write_text(COMMIT_A)
    cached = huggingface_hub.try_to_load_from_cache

    def moving_ref(repo_id: str, filename: str, *args: Any, **kwargs: Any) -> Any:
        found = cached(repo_id, filename, *args, **kwargs)
        if filename == INDEX:
            ref.write_text(COMMIT_B)
        return found

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", moving_ref)
    pushed.clear()
    report = run_json(capsys, "hf:org/pushed")
    local = run_json(capsys, write_repo(tmp_path / "at-a", PUSHED_A))
    same_model(report, local)
    assert report["notes"] == [*local["notes"], f"org/pushed@main read at commit {COMMIT_A}"]
    assert pushed.requests == []


def test_a_model_read_online_is_then_read_offline(
    capsys: pytest.CaptureFixture[str], hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an online read downloaded (config.json) is found offline under the branch, as huggingface_hub's own
    downloads leave it (refs/main names the commit)."""
    online = run_json(capsys, "hf:org/tiny-llama", "--from-config")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    hub.clear()
    assert run_json(capsys, "hf:org/tiny-llama", "--from-config")["totals"] == online["totals"]
    assert hub.requests == []


def test_a_read_given_the_commit_leaves_the_caches_ref_as_another_process_moved_it(
    capsys: pytest.CaptureFixture[str], hub: HubServer, tmp_path: Path
) -> None:
    """refs/main is written by the read that resolved the branch, once: a later read given that commit (the second
    read of summary --check or memory) does not put back a ref that another download has moved on since."""
    from paramscope.sources import hub as hub_source

    run_json(capsys, "hf:org/tiny-llama", "--from-config")
    ref = tmp_path / "hf-cache" / "models--org--tiny-llama" / "refs" / "main"
    read = hub.repos["org/tiny-llama"].commit
    assert ref.read_text() == read  # written as huggingface_hub's own download writes it
    ref.write_text(COMMIT_B)  # another process downloaded a newer commit of main
    report, commit = hub_source.load("hf:org/tiny-llama", from_config=True, commit=read)
    assert commit == read
    assert ref.read_text() == COMMIT_B
    assert report.source.kind == "hf-config"


def test_check_builds_the_config_of_the_commit_whose_weights_were_read(
    capsys: pytest.CaptureFixture[str], local: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--check reads the weights, then builds the model from config.json: a push in between (a config of one
    layer) is not what the weights are compared with."""
    tiny = repo_files(local["tiny-llama"])
    with HubServer({"org/tiny-llama": Repo(tiny, commit=COMMIT_A)}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        one_layer = Repo({**tiny, "config.json": edited_config(tiny, num_hidden_layers=1)}, commit=COMMIT_B)
        server.push("org/tiny-llama", one_layer, after=lambda r: r.method == "GET" and r.range is not None)
        report = run_json(capsys, "hf:org/tiny-llama", "--check")
        assert report["check"]["ok"] is True
        assert report["notes"][-1] == f"org/tiny-llama@main read at commit {COMMIT_A}"
        assert all(f"/resolve/{COMMIT_A}/" in path for path in resolved(server)[1:])


def commit_notes(notes: list[str]) -> list[str]:
    return [note for note in notes if " read at commit " in note]


def assert_read_at_one_commit(report: dict[str, Any], server: HubServer, commit: str) -> None:
    """The command asked for main once (config.json, first), then for ``commit`` alone, and one note names it."""
    assert commit_notes(report["notes"]) == [f"org/tiny-llama@main read at commit {commit}"]
    paths = resolved(server)
    assert paths[0] == "/org/tiny-llama/resolve/main/config.json"
    assert all(f"/resolve/{commit}/" in path for path in paths[1:]), paths


def test_summary_check_reads_the_commit_the_model_was_built_from(
    capsys: pytest.CaptureFixture[str], local: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    """summary --check builds the model from config.json, then reads the weights and config.json again for the
    check: a push right after the first answer (a config of one layer) is read by neither, and one note names the
    commit both reads used."""
    tiny = repo_files(local["tiny-llama"])
    with HubServer({"org/tiny-llama": Repo(tiny, commit=COMMIT_A)}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        one_layer = Repo({**tiny, "config.json": edited_config(tiny, num_hidden_layers=1)}, commit=COMMIT_B)
        server.push("org/tiny-llama", one_layer, after=lambda r: True)
        code, out, err = run(capsys, "summary", "hf:org/tiny-llama", "--input-size", "1,4", "--input-dtype", "long",
                             "--check", "--format", "json", "--quiet")  # fmt: skip
        assert (code, err) == (0, "")
        report = json.loads(out)
        assert report["check"]["ok"] is True  # not the 9 tensors of layer 1 unexpected by a model of one layer
        assert report["check"]["unexpected"] == []
        with torch.device("meta"):
            two_layers = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY_CONFIG))
        assert report["totals"]["params"] == sum(p.numel() for p in two_layers.parameters())
        assert_read_at_one_commit(report, server, COMMIT_A)


@pytest.mark.parametrize("via", ["cli", "api"])
def test_memory_runs_the_model_of_the_commit_whose_weights_were_read(
    capsys: pytest.CaptureFixture[str], local: Local, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    """memory with a context reads the weights, then builds the model from config.json to size the KV cache and run
    the forward: a push in between (a config of one layer) is not the model that runs, and one note names the
    commit both reads used."""
    import paramscope

    tiny = repo_files(local["tiny-llama"])
    code, out, err = run(capsys, "memory", str(local["tiny-llama"]), "--context", "8", "--format", "json")
    assert (code, err) == (0, "")
    at_a = json.loads(out)  # the same files, read from a local directory
    with HubServer({"org/tiny-llama": Repo(tiny, commit=COMMIT_A)}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        one_layer = Repo({**tiny, "config.json": edited_config(tiny, num_hidden_layers=1)}, commit=COMMIT_B)
        server.push("org/tiny-llama", one_layer, after=lambda r: r.method == "GET" and r.range is not None)
        if via == "cli":
            code, out, err = run(capsys, "memory", "hf:org/tiny-llama", "--context", "8", "--format", "json")
            assert (code, err) == (0, "")
            report = json.loads(out)
        else:
            report = paramscope.memory("hf:org/tiny-llama", seq=8).to_dict()
        items = {item["name"]: item["total_bytes"] for item in report["memory"]["items"]}
        # K and V × 2 layers × 2 KV heads × head_dim 4 × 8 tokens × batch 1 × 2 B (bfloat16): not 1 layer's 256 B
        assert items["KV cache"] == 2 * TINY["layers"] * TINY["kv_heads"] * (TINY["hidden"] // TINY["heads"]) * 8 * 2
        assert report["memory"]["items"] == at_a["memory"]["items"]  # the forward of A's model too
        assert_read_at_one_commit(report, server, COMMIT_A)


@pytest.mark.parametrize("setting", ["HF_HUB_CACHE", "HF_TOKEN_PATH"])
def test_a_hub_cache_that_cannot_be_used_is_not_a_network_error(
    capsys: pytest.CaptureFixture[str], hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    """The cache (HF_HUB_CACHE), or the token file under HF_HOME, under a path that is a file: the Hub answers, and
    the error says what is wrong where (here, not on the network)."""
    (tmp_path / "a-file").write_text("")
    place = tmp_path / "a-file" / "inside"
    monkeypatch.setattr(huggingface_hub.constants, setting, str(place))
    assert_error(
        run(capsys, "inspect", "hf:org/tiny-llama"),
        f"hf:org/tiny-llama: huggingface_hub cannot use {place} (Not a directory); set HF_HOME (or HF_HUB_CACHE) to "
        "a directory you can write",
    )


def with_password(endpoint: str, password: str = "s3cr:t") -> str:
    return endpoint.replace("http://", f"http://user:{password}@")


@pytest.mark.parametrize("password", ["s3cr:t", "a", "p@ss"])
def test_a_password_in_hf_endpoint_is_not_shown(
    capsys: pytest.CaptureFixture[str], hub: HubServer, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    shown = with_password(hub.url, "***")
    cases = [
        (hub.url, "hf:org/missing", f"no model org/missing on {shown} (a private one needs HF_TOKEN)"),
        (hub.url, "hf:org/config-500", f"the Hub at {shown} answered 500 Internal Server Error for "
                                       "/org/config-500/resolve/main/config.json; try again later"),
        (f"http://127.0.0.1:{closed_port()}", "hf:org/tiny-llama", "cannot reach the Hub at {} for org/tiny-llama "
         "(Connection refused); download the model and pass its local directory instead"),
        ("http://[::1", "hf:org/tiny-llama", "HF_ENDPOINT is '{}', not a valid URL (Invalid IPv6 URL); set it to the "
         "Hub's address, such as https://huggingface.co, or unset it"),
    ]  # fmt: skip
    for endpoint, target, message in cases:
        monkeypatch.setenv("HF_ENDPOINT", with_password(endpoint, password))
        assert_error(run(capsys, "inspect", target), f"{target}: {message.format(with_password(endpoint, '***'))}")


@pytest.fixture
def silent(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """HF_ENDPOINT on a server that takes connections and never answers; huggingface_hub's own timeouts (read from
    HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT when it is imported) are 1 s."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)  # the kernel completes the connections it queues; nobody reads from them
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_ETAG_TIMEOUT", 1)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)
        yield endpoint


@pytest.mark.timeout(30)  # the Hub client alone retries for about 400 s
@pytest.mark.parametrize("argv", [[], ["--quiet"], ["--from-config"]])
def test_a_hub_that_never_answers(
    capsys: pytest.CaptureFixture[str], silent: str, hub_log: None, argv: list[str]
) -> None:
    assert_error(
        run(capsys, "inspect", "hf:org/tiny-llama", *argv),
        f"hf:org/tiny-llama: the Hub at {silent} did not answer in time for org/tiny-llama (HF_HUB_ETAG_TIMEOUT=1 "
        f"and HF_HUB_DOWNLOAD_TIMEOUT=1 seconds a request); {LATER}",
    )


@pytest.mark.timeout(30)
def test_reading_a_model_has_a_deadline(
    capsys: pytest.CaptureFixture[str], hub: HubServer, hub_log: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_source, "DEADLINE", 0.2)  # config.json takes 0.5 s to come
    assert_error(
        run(capsys, "inspect", "hf:org/slow-config"),
        f"hf:org/slow-config: the Hub at {hub.url} did not answer in time for org/slow-config (0.2 seconds in all); "
        f"{LATER}",
    )
    # given up on, the reading starts no new request (and writes nothing once this test's cache is gone)
    for thread in threading.enumerate():
        if thread.name.startswith("paramscope hf:"):
            thread.join()
    assert {(r.method, r.filename) for r in hub.requests} == {("HEAD", "config.json"), ("GET", "config.json")}


_GIVEN_UP_AT_THE_DEADLINE = """
import sys
import paramscope.sources.hub as hub
from paramscope.cli import main
hub.DEADLINE = float(sys.argv[2])
sys.stderr.write(f"exit code {main(['inspect', sys.argv[1], '-q'])}\\n")
"""


@pytest.mark.timeout(60)
def test_a_shard_sent_a_byte_at_a_time_ends_at_the_deadline_and_so_does_the_process(hub: HubServer) -> None:
    # from review: the error came at the deadline, and the process then waited at exit for the threads reading the
    # shards' headers, as long as the server kept sending (a thread pool's threads are joined at exit)
    env = {key: value for key, value in os.environ.items() if key not in {"COLUMNS", "FORCE_COLOR"}}
    env["PYTHONPATH"] = str(Path(hub_source.__file__).parents[2])
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _GIVEN_UP_AT_THE_DEADLINE, "hf:org/trickling-shard", "3"],
                          capture_output=True, text=True, env=env, timeout=50, check=False)  # fmt: skip
    took = time.monotonic() - started
    assert done.stderr.endswith(
        f"paramscope: error: hf:org/trickling-shard: the Hub at {hub.url} did not answer in time for "
        f"org/trickling-shard (3 seconds in all); {LATER}\nexit code 2\n"
    )
    assert done.returncode == 0
    assert took < 30


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("config-500", "500 Internal Server Error for /org/config-500/resolve/main/config.json; try again later"),
        (
            "shard-500",  # asked for at the commit the first answer named
            "500 Internal Server Error for /org/shard-500/resolve/{commit}/model-00002-of-00003.safetensors; try "
            "again later",
        ),
        (
            "config-404",
            "404 Not Found for /org/config-404/resolve/main/config.json, without saying what is missing (is "
            "HF_ENDPOINT a Hugging Face Hub?)",
        ),
    ],
)
@pytest.mark.parametrize("argv", [[], ["--quiet"]])
def test_an_error_answer_is_said_at_once(
    capsys: pytest.CaptureFixture[str],
    hub: HubServer,
    hub_log: None,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    said: str,
    argv: list[str],
) -> None:
    monkeypatch.setattr(hub_http, "time", _NoSleep())  # without paramscope's fix, 23 s of retries
    said = said.format(commit=hub.repos[f"org/{name}"].commit)
    assert_error(
        run(capsys, "inspect", f"hf:org/{name}", *argv), f"hf:org/{name}: the Hub at {hub.url} answered {said}"
    )
    assert len([r for r in hub.requests if r.status in (404, 500) and r.filename != "model.safetensors"]) == 1


def test_an_answer_broken_off_is_said_as_such(capsys: pytest.CaptureFixture[str], hub: HubServer) -> None:
    assert_error(
        run(capsys, "inspect", "hf:org/shard-cut"),
        f"hf:org/shard-cut: the Hub at {hub.url} broke off its answer for org/shard-cut (peer closed connection "
        f"without sending complete message body (received 20 bytes, expected 100001)); {LATER}",
    )


def cache_bytes(tmp_path: Path) -> int:
    """The bytes written under HF_HUB_CACHE, finished downloads and unfinished ones."""
    return sum(path.stat().st_size for path in (tmp_path / "hf-cache").rglob("*") if path.is_file())


@pytest.mark.parametrize("argv", [[], ["--from-config"]])
def test_a_huge_config_is_not_downloaded(
    capsys: pytest.CaptureFixture[str], hub: HubServer, tmp_path: Path, argv: list[str]
) -> None:
    # the HEAD says 10 GB: nothing is asked for after it
    assert_error(
        run(capsys, "inspect", "hf:org/huge-config", *argv),
        "hf:org/huge-config: config.json: larger than 16 MiB, not a model config (10.00 GB, the Hub says); not "
        "downloaded",
    )
    assert [(r.method, r.filename) for r in hub.requests] == [("HEAD", "config.json")]
    assert cache_bytes(tmp_path) == 0


def test_a_huge_config_of_unknown_size_is_not_downloaded_whole(
    capsys: pytest.CaptureFixture[str], hub: HubServer, tmp_path: Path
) -> None:
    # no answer says how large it is (40 MiB): its download stops past 16 MiB
    assert_error(
        run(capsys, "inspect", "hf:org/huge-config-unsized"),
        "hf:org/huge-config-unsized: config.json: larger than 16 MiB, not a model config; its download was stopped",
    )
    assert ("GET", "config.json") in {(r.method, r.filename) for r in hub.requests}
    assert cache_bytes(tmp_path) < 32 * 2**20


def test_a_huge_index_is_not_downloaded(capsys: pytest.CaptureFixture[str], hub: HubServer) -> None:
    assert_error(
        run(capsys, "inspect", "hf:org/huge-index"),
        f"hf:org/huge-index: {INDEX}: index larger than 100 MB (200.00 MB, the Hub says); not downloaded",
    )
    assert ("GET", INDEX) not in {(r.method, r.filename) for r in hub.requests}


# ---------------------------------------------------------------------------------------------------------------------
# malformed checkpoints: checked as local files are, against each file's size


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_checkpoint(capsys: pytest.CaptureFixture[str], hub: HubServer, tmp_path: Path, name: str) -> None:
    case = MALFORMED[name]
    assert_error(run(capsys, "inspect", f"hf:org/{name}"), f"hf:org/{name}: {case.file}: {case.message}")
    assert all(r.range is not None for r in safetensors_requests(hub) if r.method == "GET")
    # the same bytes in a local directory: the local reader's message, so its checks are the ones made
    directory = tmp_path / name
    directory.mkdir()
    for filename, content in case.files.items():
        (directory / filename).write_bytes(content)
    assert_error(run(capsys, "inspect", str(directory)), f"{directory / case.file}: {case.message}")


def write_repo(directory: Path, files: dict[str, bytes]) -> Path:
    directory.mkdir()
    for filename, content in files.items():
        (directory / filename).write_bytes(content)
    return directory


def test_a_tensor_in_two_shards_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    message = f"tensor 't0' is stored in more than one shard ({SHARDS[0]} and {SHARDS[1]})"
    assert_error(run(capsys, "inspect", "hf:org/duplicated"), f"hf:org/duplicated: {message}")
    directory = write_repo(tmp_path / "duplicated", DUPLICATED)
    assert_error(run(capsys, "inspect", str(directory)), f"{directory}: {message}")


def test_tensors_the_index_does_not_name_are_counted_and_said(
    capsys: pytest.CaptureFixture[str], hub: HubServer, tmp_path: Path
) -> None:
    report = run_json(capsys, "hf:org/unindexed")
    local = run_json(capsys, write_repo(tmp_path / "unindexed", UNINDEXED))
    same_model(report, local)
    assert report["totals"]["params"] == 2 + 3 + 2
    assert report["notes"] == [
        *local["notes"],
        f"org/unindexed@main read at commit {hub.repos['org/unindexed'].commit}",
    ]
    assert "1 tensor(s) in the shards are not in the index (extra, …): counted too" in report["notes"]


def test_file_size_from_a_head_when_the_range_lacks_it(
    capsys: pytest.CaptureFixture[str], hub: HubServer, local: Local
) -> None:
    report = run_json(capsys, "hf:org/tiny-llama-no-total")
    same_model(report, run_json(capsys, local["tiny-llama"]))
    header = header_size(local["tiny-llama"] / "model.safetensors")
    assert [(r.method, r.range) for r in safetensors_requests(hub)] == [
        ("HEAD", None),  # does model.safetensors exist
        ("GET", FIRST_RANGE),
        ("HEAD", None),  # its size, which the range did not give
        ("GET", f"bytes=100001-{header + 7}"),
    ]
    assert_error(
        run(capsys, "inspect", "hf:org/past-the-end-no-total"),
        f"hf:org/past-the-end-no-total: model.safetensors: {MALFORMED['past-the-end'].message}",
    )


def test_a_server_that_ignores_ranges_is_read_to_the_end_of_each_header(
    capsys: pytest.CaptureFixture[str], hub: HubServer, local: Local
) -> None:
    report = run_json(capsys, "hf:org/llama-3-70b-no-ranges")
    same_model(report, run_json(capsys, local["llama-3-70b"]))
    shards = sorted(path for path in local["llama-3-70b"].iterdir() if path.suffix == ".safetensors")
    # one GET a shard, answered whole (200), of which a few MiB at most were sent before the connection closed:
    # the header, and what the sockets' buffers took
    gets = [(r.filename, r.status) for r in safetensors_requests(hub) if r.method == "GET"]
    assert sorted(gets) == [(shard.name, 200) for shard in shards]
    for shard in shards:
        assert 8 + header_size(shard) <= hub.streamed[shard.name] <= 32 * 2**20 < shard.stat().st_size


def test_ranged_answers_shorter_than_asked(capsys: pytest.CaptureFixture[str], hub: HubServer, local: Local) -> None:
    same_model(run_json(capsys, "hf:org/tiny-llama-capped-ranges"), run_json(capsys, local["tiny-llama"]))
    header = header_size(local["tiny-llama"] / "model.safetensors")
    gets = [r.range for r in safetensors_requests(hub) if r.method == "GET"]
    # the rest of the header from where the first answer ended, 64 KiB at a time
    assert gets == [FIRST_RANGE] + [f"bytes={start}-{header + 7}" for start in range(2**16, header + 8, 2**16)]


def test_gzipped_answers(capsys: pytest.CaptureFixture[str], hub: HubServer, local: Local) -> None:
    # the whole file gzipped: its size is not the Content-Length, which is the gzipped one
    same_model(run_json(capsys, "hf:org/tiny-llama-no-ranges-gzip"), run_json(capsys, local["tiny-llama"]))
    # errors with gzipped bodies are the errors they are, not "cannot reach the Hub"
    name = "index-names-a-missing-shard"
    assert_error(
        run(capsys, "inspect", f"hf:org/{name}-gzip"),
        f"hf:org/{name}-gzip: {MALFORMED[name].file}: {MALFORMED[name].message}",
    )
    assert_error(
        run(capsys, "inspect", "hf:org/shard-500-gzip"),
        f"hf:org/shard-500-gzip: the Hub at {hub.url} answered 500 Internal Server Error for "
        f"/org/shard-500-gzip/resolve/{hub.repos['org/shard-500-gzip'].commit}/model-00002-of-00003.safetensors; try "
        "again later",
    )


def test_a_server_that_ignores_ranges_without_sizes(capsys: pytest.CaptureFixture[str], hub: HubServer) -> None:
    assert_error(
        run(capsys, "inspect", "hf:org/tiny-llama-no-ranges-unsized"),
        "hf:org/tiny-llama-no-ranges-unsized: model.safetensors: the Hub does not say how large the file is, so its "
        "header cannot be checked",
    )
    assert_error(
        run(capsys, "inspect", "hf:org/past-the-end-no-ranges"),
        f"hf:org/past-the-end-no-ranges: model.safetensors: {MALFORMED['past-the-end'].message}",
    )


# ---------------------------------------------------------------------------------------------------------------------
# custom code: its Python files are downloaded with --trust-remote-code only, and only to build the model


@pytest.fixture
def modules_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where transformers copies the repo's code to import it: a temporary directory."""
    return isolated_modules_cache(tmp_path, monkeypatch)


def fetched(hub: HubServer) -> set[str]:
    """The repo files whose contents were asked for."""
    return {r.filename for r in hub.requests if r.method == "GET" and "/resolve/" in r.path}


def cached_config(tmp_path: Path, hub: HubServer, repo: str) -> Path:
    """Where the Hub client keeps ``repo``'s config.json (HF_HUB_CACHE is ``tmp_path / "hf-cache"``)."""
    folder = tmp_path / "hf-cache" / f"models--{repo.replace('/', '--')}"
    return folder / "snapshots" / hub.repos[repo].commit / "config.json"


def test_custom_code_needs_trust_remote_code(capsys: pytest.CaptureFixture[str], hub: HubServer) -> None:
    assert_error(
        run(capsys, "inspect", "hf:org/remote-x"),
        "hf:org/remote-x: config.json: the model is defined by custom code in its repository; pass "
        "--trust-remote-code to run that code (only for code you trust)",
    )
    assert fetched(hub) == {"config.json"}  # no Python file was even downloaded


def test_trust_remote_code_downloads_the_code_and_no_weights(
    capsys: pytest.CaptureFixture[str], hub: HubServer, tmp_path: Path, modules_cache: Path
) -> None:
    report = run_json(capsys, "hf:org/remote-x", "--trust-remote-code")
    assert report["totals"]["params"] == custom_code.PARAMS
    assert report["source"]["kind"] == "hf-config"
    assert report["notes"][:2] == [
        "org/remote-x has no safetensors weights: built from its config.json",
        f"built XModel (custom code, through AutoModel) from {cached_config(tmp_path, hub, 'org/remote-x')} on meta",
    ]
    assert fetched(hub) == {"config.json", "configuration_x.py", "modeling_x.py"}
    assert not [r for r in hub.requests if r.filename in ("pytorch_model.bin", "README.md")]
    assert modules_cache.is_dir()


def test_trust_remote_code_with_safetensors_downloads_code_only_to_build(
    capsys: pytest.CaptureFixture[str], hub: HubServer, modules_cache: Path
) -> None:
    report = run_json(capsys, "hf:org/remote-x-safetensors", "--trust-remote-code")
    assert (report["source"]["kind"], report["totals"]["params"]) == ("safetensors", custom_code.PARAMS)
    assert not [r for r in hub.requests if r.filename.endswith(".py")]  # the headers are enough
    hub.clear()
    report = run_json(capsys, "hf:org/remote-x-safetensors", "--trust-remote-code", "--check")
    assert report["check"]["ok"] is True
    assert {"configuration_x.py", "modeling_x.py"} <= fetched(hub)


@pytest.mark.parametrize(
    ("repo", "message"),
    [
        ("remote-x-many-files", "1,002 Python files in the repository, more than the 1,000 paramscope downloads for "
                                "custom code; none downloaded"),
        ("remote-x-huge-code", "its Python files take 95.37 MiB (the Hub says), more than the 64 MiB paramscope "
                               "downloads for custom code; none downloaded"),
        ("remote-x-understated", "data.py: past the 64 MiB of Python files paramscope downloads for custom code "
                                 "(70.00 MB, the Hub says); not downloaded"),
        ("remote-x-understated-unsized", "data.py: past the 64 MiB of Python files paramscope downloads for custom "
                                         "code; its download was stopped"),
    ],
)  # fmt: skip
def test_custom_code_is_downloaded_within_bounds(
    capsys: pytest.CaptureFixture[str], hub: HubServer, tmp_path: Path, repo: str, message: str
) -> None:
    assert_error(run(capsys, "inspect", f"hf:org/{repo}", "--trust-remote-code"), f"hf:org/{repo}: {message}")
    downloaded = fetched(hub) - {"config.json"}
    if "none downloaded" in message:
        assert not downloaded
    assert cache_bytes(tmp_path) < 100 * 2**20  # of 200 MiB served


# ---------------------------------------------------------------------------------------------------------------------
# progress bars, and a real process


def test_no_progress_bars_when_not_a_terminal(capsys: pytest.CaptureFixture[str], hub: HubServer) -> None:
    # huggingface_hub alone draws bars here (downloads, "Parse safetensors files"), even with stderr not a terminal
    was_disabled = are_progress_bars_disabled()
    HfApi(endpoint=hub.url).get_safetensors_metadata("org/llama-3-70b")
    assert "Parse safetensors files" in capsys.readouterr().err
    code, _, err = run(capsys, "inspect", "hf:org/llama-3-70b")
    assert (code, err) == (0, "")
    assert are_progress_bars_disabled() == was_disabled  # the client's setting is given back


def test_subprocess(hub: HubServer, local: Local, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"COLUMNS", "FORCE_COLOR", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"}
    }
    env |= {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home"), "HF_HUB_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "paramscope.cli", "inspect", "hf:org/tiny-llama@v1.0", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=env,
    )
    assert (result.returncode, result.stderr) == (0, "")
    report = json.loads(result.stdout)
    same_model(report, run_json(capsys, local["tiny-llama"]))
    assert (tmp_path / "cache" / "models--org--tiny-llama").is_dir()  # HF_HUB_CACHE honoured
    # besides the repo's files, the client only asks HF_ENDPOINT for its user-agent registry
    paths = {r.path for r in hub.requests}
    assert {path for path in paths if "/resolve/" not in path} <= {"/api/agent-harnesses"}
    # v1.0 asked for once: the rest at the commit its answer named
    first, *later = resolved(hub)
    assert first == "/org/tiny-llama/resolve/v1.0/config.json"
    assert all(path.startswith(f"/org/tiny-llama/resolve/{hub.repos['org/tiny-llama'].commit}/") for path in later)
    assert_headers_only(hub, local["tiny-llama"])


@pytest.mark.parametrize("total", ["\u00b2", "9" * 5000, "-1", " 12"])
def test_a_file_size_python_cannot_read_is_no_size(total: str) -> None:
    # what int() refuses (a superscript digit, 5,000 digits) or a malformed size: as if the server gave no size
    answer = SimpleNamespace(headers={"Content-Range": f"bytes 0-9/{total}"})
    assert hub_source._range_total(answer) is None
    assert hub_source._range_total(SimpleNamespace(headers={"Content-Range": "bytes 0-9/12"})) == 12
