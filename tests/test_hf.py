"""Hugging Face configs built on the meta device: published counts, the class built, MoE active parameters,
``--exclude-embeddings``, a config beside its weights (``--from-config``, ``--check``), custom code and meta pitfalls.

Every config is written by the test from transformers' config classes (``config.save_pretrained``); nothing touches
the network (the Hub client is put in offline mode). Ground truth: published counts, and the same config built on
the meta device by the test itself (``sum(p.numel() for p in model.parameters())``), never paramscope's arithmetic.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
import transformers
from safetensors import safe_open
from torch import nn

import paramscope
from paramscope._moe import with_active_params

from .cli import assert_error, run
from .custom_code import custom_code_files, isolated_modules_cache

SUBPROCESS_TIMEOUT = 120
META_HINT = "; the model needs real tensors while it is built: try --device cpu"

LLAMA_2_7B = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 32}  # fmt: skip
LLAMA_3_8B = {"vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 8, "rope_theta": 500000.0}  # fmt: skip
LLAMA_3_70B = {"vocab_size": 128256, "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
               "num_attention_heads": 64, "num_key_value_heads": 8, "rope_theta": 500000.0}  # fmt: skip
TINY_LLAMA = {"vocab_size": 64, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip

# name: (config class, its arguments, architectures[0], the published parameter count)
PUBLISHED: dict[str, tuple[str, dict[str, Any], str, int]] = {
    "gpt2": ("GPT2Config", {}, "GPT2LMHeadModel", 124_439_808),  # LM head tied to wte: counted once
    "bert-base-uncased": ("BertConfig", {}, "BertModel", 109_482_240),
    "llama-2-7b": ("LlamaConfig", LLAMA_2_7B, "LlamaForCausalLM", 6_738_415_616),
    "llama-3-8b": ("LlamaConfig", LLAMA_3_8B, "LlamaForCausalLM", 8_030_261_248),
    "llama-3-70b": ("LlamaConfig", LLAMA_3_70B, "LlamaForCausalLM", 70_553_706_496),
    "mixtral-8x7b": ("MixtralConfig", {}, "MixtralForCausalLM", 46_702_792_704),  # the defaults are Mixtral-8x7B
}
MOE_PUBLISHED = {"mixtral-8x7b"}


# ---------------------------------------------------------------------------------------------------------------------
# helpers


def run_json(capsys: pytest.CaptureFixture[str], target: Path | str, *argv: str, code: int = 0) -> dict[str, Any]:
    got, out, err = run(capsys, "inspect", str(target), "--format", "json", "--quiet", *argv)
    assert (got, err) == (code, "")
    return json.loads(out)


def meta_build(cls: type[nn.Module], config: Any) -> nn.Module:
    with torch.device("meta"):
        return cls(config)


def numel(model: nn.Module) -> int:
    """Every parameter once (``parameters()`` yields a tied tensor once)."""
    return sum(p.numel() for p in model.parameters())


def is_routed(name: str) -> bool:
    """A routed expert's tensor: one under a module named ``experts`` (not ``shared_experts``/``shared_expert``)."""
    return "experts" in name.split(".")[:-1]


def routed(model: nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if is_routed(name))


def expected_active(model: nn.Module, top_k: int, experts: int) -> Fraction:
    """Parameters used per token: all but the routed experts, plus top_k/experts of them."""
    return numel(model) - routed(model) + routed(model) * Fraction(top_k, experts)


def layer_rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The decoder-layer rows (``model.layers.N``) of a JSON report."""
    return {
        row["path"]: row
        for row in report["modules"]
        if row["path"].startswith("model.layers.") and row["path"].count(".") == 2
    }


def write_config(directory: Path, config: transformers.PretrainedConfig) -> Path:
    config.save_pretrained(directory)
    return directory / "config.json"


def edit_config(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2))


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test here may reach the network: the Hub client refuses every request, and custom code is cached in tmp."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))


@dataclass
class Published:
    directory: Path
    config: transformers.PretrainedConfig
    model: nn.Module
    """Built on meta by the test itself, from the same config."""
    count: int


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Published]:
    """Each published config written once, with the model built on meta from it (Llama-3-70B: about a second)."""
    root = tmp_path_factory.mktemp("published")
    models = {}
    for name, (config_class, arguments, architecture, count) in PUBLISHED.items():
        config = getattr(transformers, config_class)(**arguments, architectures=[architecture])
        write_config(root / name, config)
        models[name] = Published(root / name, config, meta_build(getattr(transformers, architecture), config), count)
    return models


# ---------------------------------------------------------------------------------------------------------------------
# 1. published counts, from a directory holding config.json and from the config.json itself


@pytest.mark.parametrize("form", ["directory", "config.json"])
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_count(
    capsys: pytest.CaptureFixture[str], published: dict[str, Published], name: str, form: str
) -> None:
    entry = published[name]
    target = entry.directory if form == "directory" else entry.directory / "config.json"
    report = run_json(capsys, target)
    params = list(entry.model.parameters())
    assert report["totals"]["params"] == entry.count == numel(entry.model)
    assert report["totals"]["param_bytes"] == sum(p.numel() * p.element_size() for p in params)
    assert report["totals"]["buffers"] == sum(b.numel() for b in entry.model.buffers())
    assert report["totals"]["non_embedding_params"] is None  # only with --exclude-embeddings
    assert report["source"] == {
        "kind": "hf-config",
        "target": str(target),
        "device": "meta",
        "files": [str(entry.directory / "config.json")],
    }
    assert report["notes"][0] == f"built {PUBLISHED[name][2]} from {entry.directory / 'config.json'} on meta"
    if name not in MOE_PUBLISHED:
        assert report["totals"]["active_params"] is None
        assert all(row["active_params"] is None for row in report["modules"])


def test_gpt2_head_is_tied_and_counted_once(
    capsys: pytest.CaptureFixture[str], published: dict[str, Published]
) -> None:
    report = paramscope.inspect(str(published["gpt2"].directory))
    wte = report.tensor("lm_head.weight")
    assert (wte.name, wte.aliases, wte.shape) == ("transformer.wte.weight", ("lm_head.weight",), (50257, 768))
    assert report.totals.params == 124_439_808


def test_config_dtype_is_used(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = transformers.LlamaConfig(**TINY_LLAMA, architectures=["LlamaForCausalLM"], dtype="bfloat16")
    path = write_config(tmp_path, config)
    model = meta_build(transformers.LlamaForCausalLM, config)
    report = run_json(capsys, path)
    assert report["by_dtype"] == {"bfloat16": {"params": numel(model), "bytes": 2 * numel(model)}}
    assert report["notes"][:2] == [
        f"built LlamaForCausalLM from {path} on meta",
        "parameters in bfloat16, the dtype config.json gives",
    ]


def by_dtype(model: nn.Module) -> dict[str, dict[str, int]]:
    """The parameters and their bytes per dtype, as torch holds them (the JSON report's ``by_dtype``)."""
    expected: dict[str, dict[str, int]] = {}
    for parameter in model.parameters():
        entry = expected.setdefault(str(parameter.dtype).removeprefix("torch."), {"params": 0, "bytes": 0})
        entry["params"] += parameter.numel()
        entry["bytes"] += parameter.numel() * parameter.element_size()
    return expected


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_config_dtype_keeps_the_modules_transformers_keeps_in_float32(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dtype: str
) -> None:
    # T5 keeps its feed-forward output layers (wo) in float32 when transformers loads it in float16 (and only then):
    # built in float16 from the config, they were counted at 2 bytes
    sizes = {"vocab_size": 32, "d_model": 16, "d_kv": 8, "d_ff": 32, "num_layers": 2, "num_heads": 2}
    config = transformers.T5Config(**sizes, architectures=["T5ForConditionalGeneration"])
    transformers.T5ForConditionalGeneration(config).save_pretrained(tmp_path)
    edit_config(tmp_path / "config.json", dtype=dtype)
    loaded = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path)  # as transformers loads it
    expected = by_dtype(loaded)
    assert (dtype == "float16") == ("float32" in expected)  # the test's premise: wo is kept in float16 alone
    capsys.readouterr()  # transformers' progress bars
    report = run_json(capsys, tmp_path / "config.json")
    assert report["by_dtype"] == expected
    kept = [name for name, parameter in loaded.named_parameters() if parameter.dtype == torch.float32]
    notes = [note for note in report["notes"] if "kept in float32" in note]
    said = (
        f"{len(kept)} tensor(s) kept in float32 ({', '.join(kept[:3])} and {len(kept) - 3} more), as transformers "
        "loads the model in float16 (the class's _keep_in_fp32_modules)"
    )
    assert notes == ([said] if kept else [])


def test_subprocess_config_without_dtype_keeps_stderr_clean(published: dict[str, Published]) -> None:
    directory = published["llama-2-7b"].directory
    assert "dtype" not in json.loads((directory / "config.json").read_text())
    env = {key: value for key, value in os.environ.items() if key not in {"COLUMNS", "FORCE_COLOR"}}
    env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "paramscope.cli", "inspect", str(directory), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=env,
    )
    assert result.returncode == 0
    assert json.loads(result.stdout)["totals"]["params"] == 6_738_415_616
    assert result.stderr == ""


# ---------------------------------------------------------------------------------------------------------------------
# 2. which class is built


def test_architectures_names_the_class_and_its_head(
    capsys: pytest.CaptureFixture[str], published: dict[str, Published]
) -> None:
    entry = published["llama-2-7b"]
    base = meta_build(transformers.LlamaModel, entry.config)
    with_head = run_json(capsys, entry.directory)["totals"]["params"]
    overridden = run_json(capsys, entry.directory, "--model-class", "LlamaModel")
    assert overridden["totals"]["params"] == numel(base) == 6_738_415_616 - 32000 * 4096
    assert with_head - overridden["totals"]["params"] == 32000 * 4096  # the untied LM head, vocab × hidden
    assert overridden["notes"][0] == f"built LlamaModel from {entry.directory / 'config.json'} on meta"


def test_no_architectures_builds_automodel(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = transformers.LlamaConfig(**LLAMA_2_7B)
    path = write_config(tmp_path, config)
    assert json.loads(path.read_text()).get("architectures") is None
    report = run_json(capsys, tmp_path)
    assert report["totals"]["params"] == numel(meta_build(transformers.LlamaModel, config))
    assert report["notes"][0] == f"built AutoModel (config.json names no architecture) from {path} on meta"
    assert [row["type"] for row in report["modules"] if row["path"] == ""] == ["LlamaModel"]


def test_a_model_class_whose_name_starts_with_auto_is_not_an_auto_class(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Autoformer's classes are model classes (built with _from_config), not Auto classes (from_config): building
    # AutoformerForPrediction raised AttributeError with a traceback
    sizes = {"d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32,
             "encoder_attention_heads": 2, "decoder_attention_heads": 2, "lags_sequence": [1, 2, 3]}  # fmt: skip
    config = transformers.AutoformerConfig(
        **sizes, prediction_length=4, context_length=8, architectures=["AutoformerForPrediction"]
    )
    path = write_config(tmp_path, config)
    report = run_json(capsys, tmp_path)
    assert report["totals"]["params"] == numel(meta_build(transformers.AutoformerForPrediction, config))
    assert report["notes"][0] == f"built AutoformerForPrediction from {path} on meta"
    report = run_json(capsys, tmp_path, "--model-class", "AutoformerModel")
    assert report["totals"]["params"] == numel(meta_build(transformers.AutoformerModel, config))


def test_model_class_overrides_a_config_without_architectures(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = transformers.LlamaConfig(**TINY_LLAMA)
    write_config(tmp_path, config)
    report = run_json(capsys, tmp_path, "--model-class", "LlamaForCausalLM")
    assert report["totals"]["params"] == numel(meta_build(transformers.LlamaForCausalLM, config))


def test_unknown_model_class(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_config(tmp_path, transformers.LlamaConfig(**TINY_LLAMA, architectures=["LlamaForCausalLM"]))
    assert_error(
        run(capsys, "inspect", str(tmp_path), "--model-class", "NoSuchModel"),
        f"transformers {transformers.__version__} has no class 'NoSuchModel'",
    )


@pytest.mark.parametrize("name", ["", " "])
def test_an_empty_model_class_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str) -> None:
    # from the CLI fuzz: --model-class '' built the config's architecture, as if none was given
    write_config(tmp_path, transformers.LlamaConfig(**TINY_LLAMA, architectures=["LlamaForCausalLM"]))
    assert_error(run(capsys, "inspect", str(tmp_path), "--model-class", name), f"--model-class {name!r} names no class")


def test_a_model_class_misspelt_names_the_close_ones(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # from review: the hint said to pass --model-class, which the user had passed
    write_config(tmp_path, transformers.LlamaConfig(**TINY_LLAMA, architectures=["LlamaForCausalLM"]))
    close = ("LlamaForCausalLM", "Llama4ForCausalLM", "MllamaForCausalLM")
    assert all(isinstance(getattr(transformers, name), type) for name in close)
    assert_error(
        run(capsys, "inspect", str(tmp_path), "--model-class", "LlamaForCasualLM"),
        f"transformers {transformers.__version__} has no class 'LlamaForCasualLM' (close names: {', '.join(close)})",
    )


def test_unknown_architecture_in_the_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_config(tmp_path, transformers.LlamaConfig(**TINY_LLAMA, architectures=["LlamaForTimeTravel"]))
    assert_error(
        run(capsys, "inspect", str(tmp_path)),
        f"transformers {transformers.__version__} has no class 'LlamaForTimeTravel' (use --model-class NAME)",
    )


def test_model_class_that_is_not_a_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_config(tmp_path, transformers.LlamaConfig(**TINY_LLAMA, architectures=["LlamaForCausalLM"]))
    code, out, err = run(capsys, "inspect", str(tmp_path), "--model-class", "LlamaConfig")
    assert (code, out) == (2, "")
    assert err.startswith("paramscope: error: ")
    assert err.count("\n") == 1
    assert "LlamaConfig" in err


def transformers_reason(error: BaseException) -> str:
    """How a one-line error quotes an exception of transformers: its type and first line, with the next line when the
    first only introduces it (huggingface_hub's strict dataclasses: ``Validation error for field 'x':``)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    shown = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]
    return f"{type(error).__name__}: {shown}"


# config.json values transformers refuses while it parses the config (each with a reason of its own)
MALFORMED_VALUES = {
    "hidden-size-not-an-int": {"hidden_size": "abc"},
    "no-attention-heads": {"num_attention_heads": 0},  # head_dim = hidden_size // 0
    "quantization-config-not-an-object": {"quantization_config": "x"},
    "torch-dtype-auto": {"dtype": None, "torch_dtype": "auto"},  # the older key, read when dtype is unset
    "dtype-auto": {"dtype": "auto"},
}


def tiny_llama_config(directory: Path, **changes: Any) -> Path:
    """A tiny Llama config.json in ``directory``, with ``changes`` written over its values."""
    path = write_config(directory, transformers.LlamaConfig(**TINY_LLAMA, architectures=["LlamaForCausalLM"]))
    edit_config(path, **changes)
    return path


@pytest.mark.parametrize("case", list(MALFORMED_VALUES))
def test_malformed_config_value_is_one_line(capsys: pytest.CaptureFixture[str], tiny_llama: Saved, case: str) -> None:
    directory = tiny_llama.directory  # beside weights: --check and --from-config build the config too
    path = directory / "config.json"
    edit_config(path, **MALFORMED_VALUES[case])
    with pytest.raises(Exception) as caught:  # noqa: PT011 -- whatever transformers raises is the reason quoted
        transformers.AutoConfig.from_pretrained(directory)
    message = f"{path}: not a config transformers can read ({transformers_reason(caught.value)})"
    for argv in ([str(path)], [str(directory), "--from-config"], [str(directory), "--check"]):
        assert_error(run(capsys, "inspect", *argv), message)


def test_malformed_config_value_reason_is_transformers_own(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tiny_llama_config(tmp_path, hidden_size="abc")
    assert_error(
        run(capsys, "inspect", str(path)),
        f"{path}: not a config transformers can read (StrictDataclassFieldValidationError: Validation error for field "
        "'hidden_size': TypeError: Field 'hidden_size' expected int, got str (value: 'abc'))",
    )


class _Spy(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def transformers_log() -> Iterator[_Spy]:
    """A handler beside transformers' own on its loggers' root: whatever transformers logs there, it sees."""
    logger = logging.getLogger("transformers")
    spy = _Spy()
    logger.addHandler(spy)
    yield spy
    logger.removeHandler(spy)


def test_transformers_warnings_about_a_config_are_notes_not_printed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, transformers_log: _Spy
) -> None:
    path = tiny_llama_config(tmp_path, bos_token_id=100, eos_token_id=70)
    logger = logging.getLogger("transformers")
    handlers, once = logger.handlers[:], vars(logging.Logger)["warning_once"]
    expected = [
        f"transformers warned: Model config: {name} must be `None` or an integer within the vocabulary (between 0 and "
        f"{TINY_LLAMA['vocab_size'] - 1}), got {value}. This may result in unexpected behavior."
        for name, value in (("bos_token_id", 100), ("eos_token_id", 70))
    ]
    # twice: transformers says each of these once a process, the report every time
    for _ in range(2):
        code, out, err = run(capsys, "inspect", str(path), "--format", "json")
        assert (code, err) == (0, "")
        assert json.loads(out)["notes"][-2:] == expected
    assert transformers_log.messages == []
    assert (logger.handlers, vars(logging.Logger)["warning_once"]) == (handlers, once)
    logger.warning("after paramscope")  # its logging works as before
    assert transformers_log.messages == ["after paramscope"]


def test_builds_in_two_threads_keep_their_own_warnings_and_put_logging_back(transformers_log: _Spy) -> None:
    # from a review: each build saved and put back transformers' handlers on its own, so two builds that overlap
    # (a enters, b enters, a leaves, b leaves) left a keeper of a's as transformers' only handler, for good, and b's
    # warnings went to a's notes or were printed
    from paramscope.sources._logged import logged

    logger = logging.getLogger("transformers")
    before = (logger.handlers[:], logger.propagate, vars(logging.Logger)["warning_once"])
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    notes: dict[str, list[str]] = {}

    def build(name: str, enter: threading.Event, wait: threading.Event, leave: threading.Event | None) -> None:
        with logged("transformers") as kept:
            enter.set()
            assert wait.wait(10)
            logging.getLogger(f"transformers.{name}").warning("from %s", name)
        notes[name] = kept.notes("transformers")
        if leave is not None:
            leave.set()

    first = threading.Thread(target=build, args=("a", a_in, b_in, a_out))
    first.start()
    assert a_in.wait(10)
    second = threading.Thread(target=build, args=("b", b_in, a_out, None))
    second.start()
    logging.getLogger("transformers.elsewhere").warning("outside any build")  # this thread keeps nothing
    for thread in (first, second):
        thread.join(10)
    assert notes == {"a": ["transformers warned: from a"], "b": ["transformers warned: from b"]}
    assert transformers_log.messages == ["outside any build"]
    assert (logger.handlers, logger.propagate, vars(logging.Logger)["warning_once"]) == before


def test_transformers_warnings_before_a_failed_build_end_the_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, transformers_log: _Spy
) -> None:
    path = tiny_llama_config(tmp_path, rope_parameters={"rope_type": "yarn", "factor": "x", "rope_theta": 10000.0})
    assert_error(
        run(capsys, "inspect", str(path)),
        f"{path}: building LlamaForCausalLM on meta failed in LlamaRotaryEmbedding.__init__: TypeError: '<=' not "
        "supported between instances of 'str' and 'int' (transformers warned: `rope_parameters`'s factor field must "
        "be a float or int >= 1, got x)",
    )
    assert transformers_log.messages == []


@pytest.mark.parametrize(
    ("config", "field"),
    [(transformers.LlamaConfig(**TINY_LLAMA, architectures=["LlamaForCausalLM"]), "num_hidden_layers"),
     (transformers.GPT2Config(n_embd=8, n_head=2, architectures=["GPT2LMHeadModel"]), "n_layer")],
    ids=["llama", "gpt2"],
)  # fmt: skip
def test_config_with_more_layers_than_any_model_is_not_built(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, config: Any, field: str
) -> None:
    path = write_config(tmp_path, config)
    for layers in (10**12, 10_001):  # built, they would make modules for hours, or a minute and a GB
        edit_config(path, **{field: layers})
        message = f"{path}: {field} {layers:,} is more layers than any model has (at most 10,000)"
        for command in (["inspect"], ["summary", "--input-size", "1,4", "--input-dtype", "long"]):
            assert_error(run(capsys, command[0], str(path), *command[1:]), message)


@pytest.mark.parametrize(
    ("config", "field", "layers"),
    [
        # Funnel's blocks, a layer count each, added up: 3 × 4,000 layers in all
        ({"architectures": ["FunnelModel"], "model_type": "funnel", "block_sizes": [4_000, 4_000, 4_000],
          "block_repeats": [1, 1, 1], "d_model": 8, "n_head": 2, "d_head": 4, "d_inner": 8, "vocab_size": 16},
         "block_sizes", 12_000),
        ({"architectures": ["LlamaForCausalLM"], "model_type": "llama", **TINY_LLAMA, "num_hidden_layers": -1},
         "num_hidden_layers", -1),
    ],
    ids=["funnel-blocks", "negative-layers"],
)  # fmt: skip
def test_other_stacks_and_negative_layer_counts_are_not_built(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, config: dict[str, Any], field: str, layers: int
) -> None:
    # from review: Funnel's block_sizes [30000, 1, 1] built for 53 s and 2.4 GB; num_hidden_layers -1 built a model
    # of no layers, exit 0
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    what = "is more layers than any model has (at most 10,000)" if layers > 0 else "is not a number of layers"
    assert_error(run(capsys, "inspect", str(path)), f"{path}: {field} {layers:,} {what}")


def test_a_config_asking_for_flash_attention_is_built_with_transformers_default(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # from review: transformers refuses to build a model whose config.json asks for FlashAttention where its package
    # is not installed (any CPU machine); attention holds no parameters
    config = transformers.LlamaConfig(**TINY_LLAMA, architectures=["LlamaForCausalLM"])
    expected = numel(meta_build(transformers.LlamaForCausalLM, config))
    path = write_config(tmp_path, config)
    for key in ("_attn_implementation", "attn_implementation"):
        for asked in ("flash_attention_2", "kernels-community/flash-attn"):
            data = json.loads(path.read_text())
            data.pop("_attn_implementation", None), data.pop("attn_implementation", None)
            path.write_text(json.dumps({**data, key: asked}))
            report = run_json(capsys, path)
            assert report["totals"]["params"] == expected
            assert (f"config.json asks for {asked} attention, which needs its kernels and a GPU: built with "
                    "transformers' default attention, which holds the same parameters") in report["notes"]  # fmt: skip


def test_an_architecture_of_another_model_type_builds_the_class_of_the_config_s(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # from review: a Mixtral config naming MistralForCausalLM built a dense Mistral of it (34,976 parameters, its
    # experts gone); transformers' AutoModelForCausalLM builds MixtralForCausalLM (72,096)
    config = transformers.MixtralConfig(**TINY_LLAMA, num_local_experts=4, architectures=["MistralForCausalLM"])
    path = write_config(tmp_path, config)
    built = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.from_pretrained(tmp_path))
    assert type(built).__name__ == "MixtralForCausalLM"
    report = run_json(capsys, path)
    assert report["totals"]["params"] == numel(built)
    assert report["notes"][0] == (
        f"built MixtralForCausalLM (config.json's architectures names MistralForCausalLM, a model of type mistral; "
        f"transformers' Auto classes build MixtralForCausalLM for model type mixtral) from {path} on meta"
    )
    # where no Auto class maps the type: refused, not built from another model's config
    vit = transformers.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                                 architectures=["MistralForCausalLM"])  # fmt: skip
    path = write_config(tmp_path / "vit", vit)
    assert_error(
        run(capsys, "inspect", str(path)),
        f"{path}: architectures names MistralForCausalLM, a model of type mistral, but model_type is 'vit'; pass "
        "--model-class with a class of that type",
    )


def test_an_architecture_of_another_model_type_keeps_its_task_and_its_parts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # from review: the first table listing the class, pre-training's, built BertForPreTraining (a pooler and a
    # next-sentence head more) where AutoModelForMaskedLM, RobertaForMaskedLM's Auto class, builds BertForMaskedLM
    bert = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=16, architectures=["RobertaForMaskedLM"])  # fmt: skip
    path = write_config(tmp_path / "bert", bert)
    expected = transformers.AutoModelForMaskedLM.from_config(transformers.AutoConfig.from_pretrained(path.parent))
    assert type(expected).__name__ == "BertForMaskedLM"
    assert run_json(capsys, path)["totals"]["params"] == numel(expected)
    # a Llava config naming its language model's class (its parts declared as AutoConfig): built from text_config,
    # not refused as another model type
    text = transformers.LlamaConfig(**TINY_LLAMA)
    vision = transformers.CLIPVisionConfig(hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=8, patch_size=4)  # fmt: skip
    llava = transformers.LlavaConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                                     architectures=["LlamaForCausalLM"])  # fmt: skip
    report = run_json(capsys, write_config(tmp_path / "llava", llava))
    assert report["totals"]["params"] == numel(meta_build(transformers.LlamaForCausalLM, text))
    assert ("LlamaForCausalLM is built from the config's text_config (LlamaConfig), as transformers' Auto classes "
            "build it") in report["notes"]  # fmt: skip


def test_a_config_without_a_dtype_says_float32_is_torch_s_default(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # from review: float32 was taken without a word, where transformers' from_pretrained takes the weights' dtype
    config = transformers.LlamaConfig(**TINY_LLAMA, architectures=["LlamaForCausalLM"])
    path = write_config(tmp_path, config)
    data = json.loads(path.read_text())
    data.pop("dtype", None), data.pop("torch_dtype", None)
    path.write_text(json.dumps(data))
    report = run_json(capsys, path)
    assert set(report["by_dtype"]) == {"float32"}
    assert ("config.json gives no dtype: parameters in torch's default, float32 (transformers' from_pretrained takes "
            "the dtype of the weights it loads)") in report["notes"]  # fmt: skip


TINY_STACKS = {"d_model": 8, "encoder_attention_heads": 1, "decoder_attention_heads": 1, "encoder_ffn_dim": 8,
               "decoder_ffn_dim": 8, "vocab_size": 10}  # fmt: skip


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"architectures": ["BartModel"], "model_type": "bart", "encoder_layers": 0, "decoder_layers": 1,
          **TINY_STACKS}, "encoder_layers"),
        ({"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "num_layers": 0,
          "num_decoder_layers": 1, "d_model": 8, "d_kv": 4, "d_ff": 8, "num_heads": 1, "vocab_size": 10}, "num_layers"),
        ({"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
          "text_config": {"model_type": "llama", "num_hidden_layers": 1, "hidden_size": 8, "intermediate_size": 8,
                          "num_attention_heads": 1, "num_key_value_heads": 1, "vocab_size": 10},
          "vision_config": {"model_type": "clip_vision_model", "num_hidden_layers": 0, "hidden_size": 8,
                            "intermediate_size": 8, "num_attention_heads": 1, "image_size": 8, "patch_size": 4}},
         "vision_config.num_hidden_layers"),
    ],
    ids=["bart-encoder", "t5-encoder", "llava-vision"],
)  # fmt: skip
def test_a_stack_besides_the_decoder_with_more_layers_than_any_model_is_not_built(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, config: dict[str, Any], field: str
) -> None:
    # from a review: the cap read the decoder's count alone; a BART of a million encoder layers grew past 1.5 GB
    path = tmp_path / "config.json"
    *parents, key = field.split(".")
    for layers, refused in ((2, False), (10_001, True)):
        holder = config
        for parent in parents:
            holder = holder[parent]
        holder[key] = layers
        path.write_text(json.dumps(config))
        if refused:
            message = f"{path}: {field} {layers:,} is more layers than any model has (at most 10,000)"
            assert_error(run(capsys, "inspect", str(path)), message)
        else:  # the same config, of a size models have, is built
            assert run_json(capsys, path)["totals"]["params"] > 0


@pytest.mark.parametrize("method", ["bitsandbytes", "gptq", "not-one-transformers-knows"])
def test_quantisation_a_config_declares_is_said_not_to_be_applied(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, method: str
) -> None:
    config = transformers.LlamaConfig(**TINY_LLAMA, architectures=["LlamaForCausalLM"])
    path = write_config(tmp_path, config)
    edit_config(path, quantization_config={"quant_method": method, "load_in_4bit": True, "bits": 4})
    report = run_json(capsys, path)
    model = meta_build(transformers.LlamaForCausalLM, config)
    assert report["totals"]["params"] == numel(model)
    assert report["totals"]["param_bytes"] == sum(p.numel() * p.element_size() for p in model.parameters())
    assert (
        f"config.json declares quantisation ({method}), which building from a config does not apply: the counts are "
        "the model's, the bytes those of unquantised weights; inspect the checkpoint for its stored bytes"
    ) in report["notes"]


def test_config_under_another_name_is_read_itself(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = transformers.LlamaConfig(**TINY_LLAMA, architectures=["LlamaForCausalLM"])
    path = write_config(tmp_path, config).rename(tmp_path / "llama.json")
    report = run_json(capsys, path)
    assert report["totals"]["params"] == numel(meta_build(transformers.LlamaForCausalLM, config))
    assert report["notes"][0] == f"built LlamaForCausalLM from {path} on meta"


ARCHITECTURES = {
    "a-number": ([123], "[123]"),
    "an-object": ({"a": 1}, '{"a": 1}'),
    "a-string": ("LlamaForCausalLM", '"LlamaForCausalLM"'),
    "an-empty-name": ([""], '[""]'),
}


@pytest.mark.parametrize("case", list(ARCHITECTURES))
def test_architectures_must_be_a_list_of_class_names(
    capsys: pytest.CaptureFixture[str], tiny_llama: Saved, case: str
) -> None:
    value, shown = ARCHITECTURES[case]
    directory = tiny_llama.directory
    path = directory / "config.json"
    edit_config(path, architectures=value)
    message = (
        f'{path}: architectures is {shown}, not a list of model class names such as ["LlamaForCausalLM"]; name the '
        "class to build with --model-class NAME"
    )
    for argv in ([str(path)], [str(directory), "--from-config"], [str(directory), "--check"]):
        assert_error(run(capsys, "inspect", *argv), message)
    # the class named on the command line is built whatever architectures says
    report = run_json(capsys, path, "--model-class", "LlamaForCausalLM")
    assert report["totals"]["params"] == numel(tiny_llama.model)


def test_a_long_architectures_value_is_shortened(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tiny_llama_config(tmp_path, architectures={"x" * 100: 1})
    shown = json.dumps({"x" * 100: 1})[:57] + "..."
    assert_error(
        run(capsys, "inspect", str(path)),
        f'{path}: architectures is {shown}, not a list of model class names such as ["LlamaForCausalLM"]; name the '
        "class to build with --model-class NAME",
    )


ABSTRACT_END = (
    ", an abstract base class of transformers with no weights of its own (it would count 0 parameters); pass the "
    "model class to build with --model-class NAME (such as LlamaForCausalLM)"
)


@pytest.mark.parametrize("name", ["PreTrainedModel", "LlamaPreTrainedModel"])
def test_an_abstract_base_class_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str) -> None:
    config = transformers.LlamaConfig(**TINY_LLAMA)
    if name != "PreTrainedModel":  # the family's base builds, with nothing in it: what would be reported
        assert numel(meta_build(getattr(transformers, name), config)) == 0
    path = tiny_llama_config(tmp_path, architectures=[name])
    assert_error(run(capsys, "inspect", str(path)), f"{path}: architectures names {name}{ABSTRACT_END}")
    assert_error(run(capsys, "inspect", str(path), "--model-class", name), f"--model-class {name}{ABSTRACT_END}")
    report = run_json(capsys, path, "--model-class", "LlamaForCausalLM")
    assert report["totals"]["params"] == numel(meta_build(transformers.LlamaForCausalLM, config)) > 0


def test_a_model_class_is_not_mistaken_for_an_abstract_one(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # MistralForSequenceClassification has no __init__ of its own: it inherits a generic head's, with weights
    config = transformers.MistralConfig(**TINY_LLAMA, architectures=["MistralForSequenceClassification"])
    write_config(tmp_path, config)
    report = run_json(capsys, tmp_path)
    assert report["totals"]["params"] == numel(meta_build(transformers.MistralForSequenceClassification, config)) > 0


def test_a_text_model_class_named_with_a_multimodal_config_gets_its_text_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Qwen3_5ForCausalLM built from the whole Qwen3_5Config raised (it has no vocab_size); transformers' Auto classes
    # give it the config's text_config
    text = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "layer_types": ["linear_attention",
            "full_attention"], "linear_num_value_heads": 4, "linear_num_key_heads": 2, "linear_key_head_dim": 8,
            "linear_value_head_dim": 8}  # fmt: skip
    vision = {"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": 32}
    config = transformers.Qwen3_5Config(text_config=text, vision_config=vision, architectures=["Qwen3_5ForCausalLM"])
    path = write_config(tmp_path, config)
    with pytest.raises(AttributeError, match="vocab_size"):
        meta_build(transformers.Qwen3_5ForCausalLM, config)
    with torch.device("meta"):
        truth = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.from_pretrained(tmp_path))
    assert type(truth) is transformers.Qwen3_5ForCausalLM
    report = run_json(capsys, tmp_path)
    assert report["totals"]["params"] == numel(truth)
    assert report["notes"][:2] == [
        f"built Qwen3_5ForCausalLM from {path} on meta",
        "Qwen3_5ForCausalLM is built from the config's text_config (Qwen3_5TextConfig), as transformers' Auto "
        "classes build it",
    ]
    # the language model's own config is used as it is
    write_config(tmp_path / "text", transformers.Qwen3_5TextConfig(**text, architectures=["Qwen3_5ForCausalLM"]))
    report = run_json(capsys, tmp_path / "text")
    assert report["totals"]["params"] == numel(truth)
    assert not [note for note in report["notes"] if "text_config" in note]


@pytest.mark.parametrize(("dtype", "vision_dtype"), [(None, None), ("bfloat16", None), ("bfloat16", "float16")])
def test_a_model_class_of_one_part_is_built_from_that_parts_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dtype: str | None, vision_dtype: str | None
) -> None:
    # --model-class SiglipVisionModel with a SigLIP config.json: transformers' from_pretrained reads the vision_config
    # (SiglipVisionConfig.base_config_key) in its own dtype; paramscope built the class from the whole config, which
    # raised ('SiglipConfig' object has no attribute 'hidden_size')
    layers = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = transformers.SiglipConfig(
        text_config={**layers, "vocab_size": 50}, vision_config={**layers, "image_size": 32, "patch_size": 8}
    )
    transformers.SiglipModel(config).save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data.pop("dtype", None)
    data["vision_config"].pop("dtype", None)
    data.update({"dtype": dtype} if dtype else {})
    data["vision_config"].update({"dtype": vision_dtype} if vision_dtype else {})
    (tmp_path / "config.json").write_text(json.dumps(data))
    loaded = transformers.SiglipVisionModel.from_pretrained(tmp_path)  # as transformers loads it
    expected = by_dtype(loaded)
    capsys.readouterr()  # transformers' progress bars and load report
    report = run_json(capsys, tmp_path / "config.json", "--model-class", "SiglipVisionModel")
    assert report["by_dtype"] == expected
    assert report["totals"]["params"] == numel(loaded)
    assert report["notes"][1] == (
        "SiglipVisionModel is built from the config's vision_config (SiglipVisionConfig), as transformers loads it"
    )


def test_a_text_model_class_named_with_a_multimodal_config_keeps_the_config_dtype(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # the dtype of config.json is the multimodal config's; its text_config has none of its own, and the text model was
    # built in float32: twice the bytes of the bfloat16 weights
    text = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8}  # fmt: skip
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = transformers.Llama4Config(text_config=text, vision_config=vision, architectures=["Llama4ForCausalLM"])
    path = write_config(tmp_path, config)
    edit_config(path, dtype="bfloat16")
    assert "dtype" not in json.loads(path.read_text())["text_config"]
    with torch.device("meta"):
        truth = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    assert type(truth) is transformers.Llama4ForCausalLM
    report = run_json(capsys, tmp_path)
    assert report["by_dtype"] == {"bfloat16": {"params": numel(truth), "bytes": 2 * numel(truth)}}
    assert report["totals"]["param_bytes"] == sum(p.numel() * p.element_size() for p in truth.parameters())
    assert "parameters in bfloat16, the dtype config.json gives" in report["notes"]
    # a dtype of the text_config's own is the one its model is built in, as transformers loads it
    edit_config(path, text_config={**json.loads(path.read_text())["text_config"], "dtype": "float16"})
    assert run_json(capsys, tmp_path)["by_dtype"] == {"float16": {"params": numel(truth), "bytes": 2 * numel(truth)}}


def test_build_failure_of_an_int_dtype_has_no_meta_hint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tiny_llama_config(tmp_path, dtype="int8")
    config = transformers.AutoConfig.from_pretrained(tmp_path)
    with torch.device("meta"), pytest.raises(ValueError, match="floating-point") as caught:
        transformers.LlamaForCausalLM._from_config(config, dtype=torch.int8)
    assert_error(
        run(capsys, "inspect", str(path)),
        f"{path}: building LlamaForCausalLM on meta failed: {transformers_reason(caught.value)}",
    )


def test_build_failure_of_a_wrong_config_class_has_no_meta_hint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tiny_llama_config(tmp_path)
    with pytest.raises(AttributeError) as caught:
        meta_build(transformers.BertModel, transformers.AutoConfig.from_pretrained(tmp_path))
    assert_error(
        run(capsys, "inspect", str(path), "--model-class", "BertModel"),
        f"{path}: building BertModel on meta failed in BertEmbeddings.__init__: {transformers_reason(caught.value)}",
    )


def test_build_failure_of_a_missing_package_has_no_meta_hint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if transformers.is_timm_available():
        pytest.skip("timm is installed: TimmWrapperModel builds")
    config = transformers.TimmWrapperConfig(architectures=["TimmWrapperModel"])
    path = write_config(tmp_path, config)
    with pytest.raises(ImportError) as caught:
        meta_build(transformers.TimmWrapperModel, config)
    assert_error(
        run(capsys, "inspect", str(path)),
        f"{path}: building TimmWrapperModel on meta failed in TimmWrapperModel.__init__: "
        f"{transformers_reason(caught.value)}",
    )


def test_a_model_class_whose_library_is_missing_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # without torchaudio, transformers exports a stand-in for the class that raises ImportError on any attribute:
    # looking at the class, before building it, was a traceback (exit 1)
    if transformers.utils.is_torchaudio_available():
        pytest.skip("torchaudio is installed: HiggsAudioV2TokenizerModel is the real class")
    config = transformers.HiggsAudioV2TokenizerConfig(architectures=["HiggsAudioV2TokenizerModel"])
    path = write_config(tmp_path, config)
    with pytest.raises(ImportError) as caught:
        transformers.HiggsAudioV2TokenizerModel.from_config  # noqa: B018
    expected = f"{path}: building HiggsAudioV2TokenizerModel failed: {transformers_reason(caught.value)}"
    assert_error(run(capsys, "inspect", str(path)), expected)
    assert_error(run(capsys, "inspect", str(path), "--model-class", "HiggsAudioV2TokenizerModel"), expected)


def test_malformed_hf_endpoint_with_a_local_config(tmp_path: Path) -> None:
    """huggingface_hub parses HF_ENDPOINT when transformers first imports it: a fresh process, to reach that import."""
    path = tiny_llama_config(tmp_path)
    env = {key: value for key, value in os.environ.items() if key not in {"COLUMNS", "FORCE_COLOR"}}
    env |= {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://[::1"}
    result = subprocess.run(
        [sys.executable, "-m", "paramscope.cli", "inspect", str(path)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=env,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "paramscope: error: HF_ENDPOINT is 'http://[::1', not a valid URL (Invalid IPv6 URL); set it to the Hub's "
        "address, such as https://huggingface.co, or unset it\n"
    )


# ---------------------------------------------------------------------------------------------------------------------
# 3. mixture of experts: active parameters per token


def test_mixtral_active_params(capsys: pytest.CaptureFixture[str], published: dict[str, Published]) -> None:
    entry = published["mixtral-8x7b"]
    config = entry.config
    experts = routed(entry.model)
    # the routed experts, written out: per layer 8 experts × (w1, w3: 14336 × 4096; w2: 4096 × 14336)
    assert experts == config.num_hidden_layers * 8 * 3 * 4096 * 14336
    active = expected_active(entry.model, top_k=2, experts=8)
    assert active == entry.count - experts * Fraction(6, 8) == 12_879_925_248
    report = run_json(capsys, entry.directory)
    assert report["totals"]["params"] == 46_702_792_704
    assert report["totals"]["active_params"] == active
    assert any(note.startswith("mixture of experts, 2 of 8 experts per token") for note in report["notes"])
    rows = layer_rows(report)
    assert len(rows) == config.num_hidden_layers
    for index, layer in enumerate(entry.model.model.layers):
        row = rows[f"model.layers.{index}"]
        layer_experts = routed(layer)
        assert row["params"] == numel(layer)
        assert row["active_params"] == numel(layer) - layer_experts * Fraction(6, 8)
    root = next(row for row in report["modules"] if row["path"] == "")
    assert root["active_params"] == active


def test_longcat_flash_zero_experts_slices_are_not_active(tmp_path: Path) -> None:
    # LongCat-Flash's gate_up_proj stacks a slice for each zero expert too, which its forward never reads (a zero
    # expert passes the token through): the active count had taken them as routed experts, over the most any token uses
    config = transformers.LongcatFlashConfig(vocab_size=64, hidden_size=32, num_layers=2, ffn_hidden_size=64,
                                             num_attention_heads=2, n_routed_experts=4, zero_expert_num=2, moe_topk=2,
                                             expert_ffn_hidden_size=16, kv_lora_rank=16, q_lora_rank=16,
                                             qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8,
                                             architectures=["LongcatFlashForCausalLM"])  # fmt: skip
    with torch.device("meta"):
        model = transformers.LongcatFlashForCausalLM(config)
    experts = [module for module in model.modules() if type(module).__name__ == "LongcatFlashExperts"]
    assert [module.gate_up_proj.shape[0] for module in experts] == [4 + 2] * config.num_layers
    total = sum(p.numel() for p in model.parameters())
    # per token at most moe_topk of the 4 real experts, each a slice of gate_up_proj and of down_proj
    routed = sum(module.gate_up_proj.numel() + module.down_proj.numel() for module in experts)
    used = sum(2 * (module.gate_up_proj[0].numel() + module.down_proj[0].numel()) for module in experts)
    report = paramscope.inspect(str(write_config(tmp_path, config)))
    assert report.totals.params == total
    assert report.totals.active_params == total - routed + used
    idle = sum(module.gate_up_proj[4:].numel() for module in experts)
    note = next(note for note in report.notes if note.startswith("mixture"))
    assert note.endswith(f"; {idle:,} in slices of stacked expert tensors past the 4 routed experts, which no token "
                         "uses (LongCat-Flash's zero experts))")  # fmt: skip


@pytest.mark.parametrize("zero", [-2, 0])
def test_a_zero_expert_count_below_one_is_not_taken_for_zero_experts(tmp_path: Path, zero: int) -> None:
    # a negative zero_expert_num made the stacked tensor of 4 - 2 slices look like 4 experts and -2 zero experts:
    # every parameter active, "routed experts 256" of 208 parameters and "-128 in slices"
    experts, embedding = torch.zeros(2, 8, 8), torch.zeros(10, 8)
    safetensors.torch.save_file({"model.layers.0.mlp.experts.gate_up_proj": experts,
                                 "model.embed_tokens.weight": embedding}, tmp_path / "model.safetensors")  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps({"num_local_experts": 4, "num_experts_per_tok": 2,
                                                      "zero_expert_num": zero}))  # fmt: skip
    report = paramscope.inspect(str(tmp_path))
    assert report.totals.params == experts.numel() + embedding.numel()
    assert report.totals.active_params == embedding.numel() + experts.numel() * Fraction(2, 4)
    note = next(note for note in report.notes if note.startswith("mixture"))
    assert note.endswith(f"(routed experts {experts.numel():,} × 2/4; shared experts, routers, attention, norms and "
                         "embeddings always)")  # fmt: skip


def test_stacked_tensors_of_per_expert_modules_are_not_taken_for_zero_expert_slices() -> None:
    # a conv weight (16, 16, 3) of one of 4 experts: its first dimension is no expert count, and the config has no
    # zero experts; it had been counted as 12 idle slices
    class Expert(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(16, 16, 3, bias=False)

    class Experts(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gate = nn.Linear(16, 4, bias=False)
            self.experts = nn.ModuleList(Expert() for _ in range(4))

    model = Experts()
    report = with_active_params(paramscope.inspect(model), {"num_local_experts": 4, "num_experts_per_tok": 2})
    expert = sum(p.numel() for p in model.experts[0].parameters())
    assert report.totals.active_params == model.gate.weight.numel() + 2 * expert


def _qwen2_moe() -> tuple[Any, str, int, int]:
    config = transformers.Qwen2MoeConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, moe_intermediate_size=16,
        shared_expert_intermediate_size=40, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        num_experts=4, num_experts_per_tok=2, mlp_only_layers=[1], architectures=["Qwen2MoeForCausalLM"],
    )  # fmt: skip
    return config, "Qwen2MoeForCausalLM", 2, 4


def _qwen3_moe() -> tuple[Any, str, int, int]:
    config = transformers.Qwen3MoeConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_experts=6, num_experts_per_tok=3,
        mlp_only_layers=[0], architectures=["Qwen3MoeForCausalLM"],
    )  # fmt: skip
    return config, "Qwen3MoeForCausalLM", 3, 6


def _deepseek_v3() -> tuple[Any, str, int, int]:
    config = transformers.DeepseekV3Config(
        vocab_size=64, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
        first_k_dense_replace=1, q_lora_rank=16, kv_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4,
        v_head_dim=8, n_group=2, topk_group=1, architectures=["DeepseekV3ForCausalLM"],
    )  # fmt: skip
    return config, "DeepseekV3ForCausalLM", 2, 8


@pytest.mark.parametrize("make", [_qwen2_moe, _qwen3_moe, _deepseek_v3], ids=["qwen2-moe", "qwen3-moe", "deepseek-v3"])
def test_moe_with_shared_experts_and_dense_layers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, make: Any
) -> None:
    config, architecture, top_k, experts = make()
    write_config(tmp_path, config)
    model = meta_build(getattr(transformers, architecture), config)
    names = [name for name, _ in model.named_parameters()]
    # the shapes the test relies on: some layers dense, shared experts outside "experts"
    dense_layers = [
        i for i, layer in enumerate(model.model.layers) if not any(is_routed(n) for n, _ in layer.named_parameters())
    ]
    assert dense_layers  # mlp_only_layers / first_k_dense_replace
    if architecture != "Qwen3MoeForCausalLM":
        assert any(".shared_expert" in name for name in names)  # always active
    report = run_json(capsys, tmp_path)
    active = expected_active(model, top_k, experts)
    assert report["totals"]["params"] == numel(model)
    assert report["totals"]["active_params"] == active < numel(model)
    rows = layer_rows(report)
    for index, layer in enumerate(model.model.layers):
        row = rows[f"model.layers.{index}"]
        assert row["active_params"] == numel(layer) - routed(layer) + routed(layer) * Fraction(top_k, experts)
        if index in dense_layers:
            assert row["active_params"] == row["params"]


@dataclass(frozen=True)
class MoeCase:
    """A tiny MoE config whose experts-per-token key is not Mixtral's, and the figures to count its experts by hand."""

    config_class: str
    arguments: dict[str, Any]
    architecture: str
    key: str
    """The config key that holds the experts per token."""
    experts: int
    top_k: int
    moe_layers: int
    hidden: int
    expert_width: int


SMALL = {"vocab_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2}
MOE_CASES = {
    "ernie-4.5-moe": MoeCase("Ernie4_5_MoeConfig", {**SMALL, "hidden_size": 32, "intermediate_size": 48,
                             "moe_intermediate_size": 16, "moe_num_experts": 4, "moe_k": 2, "moe_layer_start_index": 1,
                             "moe_num_shared_experts": 1}, "Ernie4_5_MoeForCausalLM", "moe_k", 4, 2, 1, 32, 16),
    # DBRX nests its MoE settings in ffn_config
    "dbrx": MoeCase("DbrxConfig", {"d_model": 32, "n_heads": 4, "n_layers": 2, "vocab_size": 64, "max_seq_len": 64,
                    "ffn_config": {"ffn_hidden_size": 16, "moe_num_experts": 4, "moe_top_k": 2},
                    "attn_config": {"kv_n_heads": 2, "rope_theta": 10000.0}}, "DbrxForCausalLM", "moe_top_k", 4, 2, 2,
                    32, 16),
    "gemma-4": MoeCase("Gemma4TextConfig", {**SMALL, "hidden_size": 32, "intermediate_size": 48,
                       "moe_intermediate_size": 16, "head_dim": 8, "global_head_dim": 8, "num_experts": 4,
                       "top_k_experts": 2, "enable_moe_block": True, "hidden_size_per_layer_input": 16,
                       "vocab_size_per_layer_input": 64, "layer_types": ["sliding_attention", "full_attention"]},
                       "Gemma4ForCausalLM", "top_k_experts", 4, 2, 2, 32, 16),
    "kimi-linear": MoeCase("KimiLinearConfig", {**SMALL, "hidden_size": 32, "intermediate_size": 48,
                           "moe_intermediate_size": 16, "num_experts": 4, "num_experts_per_token": 2, "pad_token_id": 0,
                           "bos_token_id": 0, "eos_token_id": 0}, "KimiLinearForCausalLM", "num_experts_per_token", 4,
                           2, 1, 32, 16),
}  # fmt: skip


@pytest.mark.parametrize("name", list(MOE_CASES))
def test_moe_settings_under_other_keys(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str) -> None:
    case = MOE_CASES[name]
    config_class = getattr(transformers, case.config_class, None)
    if config_class is None:
        pytest.skip(f"transformers {transformers.__version__} has no {case.config_class}")
    config = config_class(**case.arguments, architectures=[case.architecture])
    path = write_config(tmp_path, config)
    saved = json.loads(path.read_text())
    assert saved.get(case.key, saved.get("ffn_config", {}).get(case.key)) == case.top_k  # the key under test is used
    model = meta_build(getattr(transformers, case.architecture), config)
    # by hand: each MoE layer's experts are gate, up and down projections, hidden × expert width each
    by_hand = case.moe_layers * case.experts * 3 * case.hidden * case.expert_width
    assert routed(model) == by_hand
    active = numel(model) - by_hand + by_hand * Fraction(case.top_k, case.experts)
    assert active == expected_active(model, case.top_k, case.experts)
    report = run_json(capsys, path)
    assert report["totals"]["params"] == numel(model)
    assert report["totals"]["active_params"] == active
    assert any(
        note.startswith(f"mixture of experts, {case.top_k} of {case.experts} experts per token ({case.key}, ")
        for note in report["notes"]
    )


def test_jetmoe_active_params_count_its_experts_by_module_type(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # JetMoE's MLP experts are mlp.input_linear and mlp.output_linear (JetMoeParallelExperts, not under a module
    # named "experts"), and its attention experts' module (self_attention.experts) also holds the router and an output
    # bias that every token uses: 45,696 of 49,952 were said to be active, where 27,424 are
    config = transformers.JetMoeConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_key_value_heads=2,
                                       kv_channels=8, intermediate_size=48, num_local_experts=4, num_experts_per_tok=2,
                                       architectures=["JetMoeForCausalLM"])  # fmt: skip
    write_config(tmp_path, config)
    model = meta_build(transformers.JetMoeForCausalLM, config)
    # by hand, per layer: the MLP's experts 4 × (2 × 48) × 32 in and 4 × 32 × 48 out; the attention's 4 × (2 × 8) × 32
    # in and 4 × 32 × (2 × 8) out
    per_layer = 4 * 96 * 32 + 4 * 32 * 48 + 4 * 16 * 32 + 4 * 32 * 16
    experts = (".input_linear.weight", ".output_linear.weight")
    assert 2 * per_layer == sum(p.numel() for name, p in model.named_parameters() if name.endswith(experts))
    active = numel(model) - 2 * per_layer + 2 * per_layer * Fraction(2, 4)
    assert active == 27_424
    report = run_json(capsys, tmp_path)
    assert report["totals"]["params"] == numel(model) == 49_952
    assert report["totals"]["active_params"] == active
    rows = layer_rows(report)
    assert [rows[f"model.layers.{i}"]["active_params"] for i in (0, 1)] == [
        numel(model.model.layers[0]) - per_layer // 2
    ] * 2


def test_a_norm_the_experts_share_is_always_active(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Muse Spark's experts module holds one post_expert_norm that every expert's output goes through
    config = transformers.MuseSparkTextConfig(vocab_size=64, hidden_size=32, intermediate_size=48,
                                              moe_intermediate_size=16, moe_hidden_size=16, num_hidden_layers=2,
                                              num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                              num_local_experts=4, num_experts_per_tok=2)  # fmt: skip
    write_config(tmp_path, config)
    model = meta_build(transformers.MuseSparkTextModel, config)
    assert model.layers[0].mlp.experts.post_expert_norm.weight.shape == (16,)
    routed_by_hand = 2 * (4 * 32 * 16 + 4 * 16 * 16)  # per layer: gate_up_proj 4 × 32 × 16, down_proj 4 × 16 × 16
    report = run_json(capsys, tmp_path)
    assert report["totals"]["params"] == numel(model)
    assert report["totals"]["active_params"] == numel(model) - routed_by_hand // 2


TOP_K_KEYS = ("num_experts_per_tok, num_experts_per_token, moe_topk, moe_top_k, moe_k, top_k_experts, "
              "num_selected_experts, top_k")  # fmt: skip


@pytest.mark.parametrize("top_k", [None, 0, 5], ids=["missing", "zero", "more-than-the-experts"])
def test_experts_without_a_usable_top_k_are_said(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_mixtral: tuple[Path, nn.Module], top_k: int | None
) -> None:
    directory = tmp_path / "mixtral"
    shutil.copytree(tiny_mixtral[0], directory)
    config = json.loads((directory / "config.json").read_text())
    del config["num_experts_per_tok"]
    if top_k is not None:
        config["num_experts_per_tok"] = top_k
    (directory / "config.json").write_text(json.dumps(config))
    report = run_json(capsys, directory)
    assert report["totals"]["params"] == numel(tiny_mixtral[1])
    assert report["totals"]["active_params"] is None
    assert all(row["active_params"] is None for row in report["modules"])
    assert report["notes"][-1] == (
        "the config describes a mixture of 4 experts (num_local_experts) but no number of experts used per token "
        f"that paramscope knows ({TOP_K_KEYS}), so active parameters per token are not computed"
    )


@pytest.fixture(scope="module")
def tiny_mixtral(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    """A tiny random Mixtral saved by transformers (safetensors) with its config.json."""
    directory = tmp_path_factory.mktemp("tiny-mixtral")
    config = transformers.MixtralConfig(
        vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, architectures=["MixtralForCausalLM"],
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.MixtralForCausalLM(config)
    model.save_pretrained(directory)
    assert (directory / "model.safetensors").is_file()
    assert (directory / "config.json").is_file()
    return directory, model


def test_moe_checkpoint_active_params(capsys: pytest.CaptureFixture[str], tiny_mixtral: tuple[Path, nn.Module]) -> None:
    directory, model = tiny_mixtral
    report = run_json(capsys, directory)
    assert report["source"]["kind"] == "safetensors"
    assert report["totals"]["params"] == numel(model)
    assert report["totals"]["active_params"] == expected_active(model, 2, 4)
    rows = layer_rows(report)
    for index, layer in enumerate(model.model.layers):
        row = rows[f"model.layers.{index}"]
        assert row["params"] == numel(layer)
        assert row["active_params"] == numel(layer) - routed(layer) * Fraction(2, 4)
    # the same figures as the config built on meta
    built = run_json(capsys, directory, "--from-config")
    assert built["totals"]["active_params"] == report["totals"]["active_params"]


def test_check_accepts_a_moe_checkpoint_saved_by_transformers(
    capsys: pytest.CaptureFixture[str], tiny_mixtral: tuple[Path, nn.Module]
) -> None:
    directory, _ = tiny_mixtral
    _, info = transformers.MixtralForCausalLM.from_pretrained(directory, output_loading_info=True)
    assert info["missing_keys"] == info["unexpected_keys"] == info["mismatched_keys"] == set()
    capsys.readouterr()  # transformers' own progress bar while loading
    code, out, err = run(capsys, "inspect", str(directory), "--check", "--format", "json", "--quiet")
    assert json.loads(out)["check"]["ok"] is True
    assert (code, err) == (0, "")


# ---------------------------------------------------------------------------------------------------------------------
# 4. --exclude-embeddings


def test_exclude_embeddings_untied_llama(capsys: pytest.CaptureFixture[str], published: dict[str, Published]) -> None:
    entry = published["llama-3-8b"]
    report = run_json(capsys, entry.directory, "--exclude-embeddings")
    embedding = 128256 * 4096
    expected = 8_030_261_248 - 2 * embedding  # input embedding and the untied head
    assert report["totals"]["non_embedding_params"] == expected
    assert report["totals"]["params"] == 8_030_261_248
    assert report["notes"][-1] == (
        f"without embeddings: {expected:,} parameters (left out: model.embed_tokens.weight {embedding:,}, "
        f"lm_head.weight {embedding:,})"
    )


def test_exclude_embeddings_tied_gpt2_matches_transformers(
    capsys: pytest.CaptureFixture[str], published: dict[str, Published]
) -> None:
    entry = published["gpt2"]
    wte, wpe = 50257 * 768, 1024 * 768
    expected = entry.model.num_parameters(exclude_embeddings=True)
    assert expected == 124_439_808 - wte - wpe  # the tied head is wte, left out once; positions too
    report = run_json(capsys, entry.directory / "config.json", "--exclude-embeddings")
    assert report["totals"]["non_embedding_params"] == expected
    assert report["notes"][-1] == (
        f"without embeddings: {expected:,} parameters (left out: transformer.wte.weight {wte:,}, "
        f"transformer.wpe.weight {wpe:,})"
    )
    code, out, err = run(capsys, "inspect", str(entry.directory), "--exclude-embeddings", "--quiet")
    assert (code, err) == (0, "")
    assert "without embeddings" in out
    assert f"{expected:,}" in out


def test_exclude_embeddings_bert_matches_transformers(published: dict[str, Published]) -> None:
    entry = published["bert-base-uncased"]
    report = paramscope.inspect(str(entry.directory), exclude_embeddings=True)
    assert report.totals.non_embedding_params == entry.model.num_parameters(exclude_embeddings=True)
    assert report.totals.params == 109_482_240


def _opt() -> tuple[Any, str]:
    config = transformers.OPTConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, ffn_dim=32,
                                    num_attention_heads=4, word_embed_proj_dim=16, max_position_embeddings=32,
                                    bos_token_id=0, eos_token_id=0, pad_token_id=1)  # fmt: skip
    return config, "OPTForCausalLM"  # OPTLearnedPositionalEmbedding


def _bart() -> tuple[Any, str]:
    config = transformers.BartConfig(vocab_size=100, d_model=16, encoder_layers=1, decoder_layers=1,
                                     encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=4,
                                     decoder_attention_heads=4, max_position_embeddings=32)  # fmt: skip
    return config, "BartForConditionalGeneration"  # BartScaledWordEmbedding, BartLearnedPositionalEmbedding


def _gemma3() -> tuple[Any, str]:
    config = transformers.Gemma3TextConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                           num_attention_heads=4, num_key_value_heads=2, head_dim=4)  # fmt: skip
    return config, "Gemma3ForCausalLM"  # Gemma3TextScaledWordEmbedding


@pytest.mark.parametrize("make", [_opt, _bart, _gemma3], ids=["opt", "bart", "gemma3"])
def test_exclude_embeddings_of_embedding_subclasses_matches_transformers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, make: Any
) -> None:
    config, architecture = make()
    config.architectures = [architecture]
    write_config(tmp_path, config)
    model = meta_build(getattr(transformers, architecture), config)
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    subclassed = {type(m).__name__ for m in model.modules() if isinstance(m, nn.Embedding)} - {"Embedding"}
    assert subclassed  # what the test is about: no plain nn.Embedding among them
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied: transformers agrees
    expected = model.num_parameters(exclude_embeddings=True)
    left_out = [(name, p.numel()) for name, p in model.named_parameters() if id(p) in embeddings]
    assert expected == numel(model) - sum(count for _, count in left_out) < numel(model)
    report = run_json(capsys, tmp_path, "--exclude-embeddings")
    assert report["totals"]["non_embedding_params"] == expected
    listed = ", ".join(f"{name} {count:,}" for name, count in left_out)
    assert report["notes"][-1] == f"without embeddings: {expected:,} parameters (left out: {listed})"


def test_exclude_embeddings_leaves_out_only_an_embeddings_weight() -> None:
    class PositionEmbedding(nn.Module):  # named like an embedding, holding a gate of its own and a table
        def __init__(self) -> None:
            super().__init__()
            self.gate = nn.Parameter(torch.zeros(4))
            self.table = nn.Embedding(10, 4)

    class ScaledEmbedding(nn.Embedding):
        pass

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tokens = ScaledEmbedding(50, 4)
            self.positions = PositionEmbedding()
            self.proj = nn.Linear(4, 4)

    model = Model()
    report = paramscope.inspect(model, exclude_embeddings=True)
    # transformers' rule (num_parameters): the weight of every nn.Embedding, and nothing else
    embedding_weights = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Embedding)}
    expected = sum(p.numel() for name, p in model.named_parameters() if name not in embedding_weights)
    assert report.totals.non_embedding_params == expected == 4 + 4 * 4 + 4


def test_exclude_embeddings_tells_a_live_models_embeddings_by_class_not_name() -> None:
    # from review: a subclass of nn.Embedding named otherwise was counted, a patch embedding's own weight left out
    class TokenTable(nn.Embedding):
        pass

    class PatchEmbedding(nn.Module):  # a projection of patches, held as a weight of its own: no lookup table
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(64, 48))

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok, self.patch, self.proj = TokenTable(1000, 16), PatchEmbedding(), nn.Linear(16, 16)
            self.bag = nn.EmbeddingBag(10, 16)

    model = Model()
    report = paramscope.inspect(model, exclude_embeddings=True)
    tables = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))}
    assert report.totals.non_embedding_params == sum(
        p.numel() for name, p in model.named_parameters() if name not in tables
    )
    assert report.notes[-1] == "without embeddings: 3,344 parameters (left out: tok.weight 16,000, bag.weight 160)"


def test_exclude_embeddings_keeps_the_blocks_output_layers_of_rwkv() -> None:
    # RWKV names each block's attention out-projection ``output`` (rwkv.blocks.0.attention.output); its head is
    # ``head``: nothing but the embedding is left out, as transformers counts it
    config = transformers.RwkvConfig(vocab_size=100, hidden_size=16, num_hidden_layers=3, attention_hidden_size=16,
                                     intermediate_size=32, context_length=32)  # fmt: skip
    model = meta_build(transformers.RwkvForCausalLM, config)
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight  # untied, not "output"
    expected = model.num_parameters(exclude_embeddings=True)
    assert expected == numel(model) - 100 * 16
    report = paramscope.inspect(model, exclude_embeddings=True)
    assert report.totals.non_embedding_params == expected
    assert report.notes[-1] == f"without embeddings: {expected:,} parameters (left out: rwkv.embeddings.weight 1,600)"


def test_exclude_embeddings_leaves_out_the_head_named_output_not_the_blocks(tmp_path: Path) -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.output = nn.Linear(8, 8)  # an attention's out-projection, named as the head is

    class Model(nn.Module):  # as Meta's Llama code names its untied head
        def __init__(self) -> None:
            super().__init__()
            self.tok_embeddings = nn.Embedding(50, 8)
            self.layers = nn.ModuleList([Block(), Block()])
            self.output = nn.Linear(8, 50, bias=False)

    model = Model()
    expected = sum(p.numel() for p in model.layers.parameters())
    assert expected == 2 * (8 * 8 + 8)
    safetensors.torch.save_model(model, str(tmp_path / "model.safetensors"))
    for target in (model, str(tmp_path / "model.safetensors")):
        report = paramscope.inspect(target, exclude_embeddings=True)
        assert report.totals.non_embedding_params == expected
        assert report.notes[-1] == (
            f"without embeddings: {expected:,} parameters (left out: tok_embeddings.weight 400, output.weight 400)"
        )


@pytest.mark.parametrize("wrap", [lambda lm: lm, nn.Sequential, lambda lm: nn.ModuleList([lm])],
                         ids=["bare", "sequential", "modulelist"])  # fmt: skip
def test_exclude_embeddings_finds_an_lm_head_in_a_wrapped_model(wrap: Callable[[nn.Module], nn.Module]) -> None:
    class LM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed_tokens = nn.Embedding(10, 4)
            self.body = nn.Linear(4, 4)
            self.lm_head = nn.Linear(4, 10, bias=False)

    lm = LM()
    report = paramscope.inspect(wrap(lm), exclude_embeddings=True)
    assert report.totals.non_embedding_params == sum(p.numel() for p in lm.body.parameters())


def test_exclude_embeddings_leaves_out_an_embedding_tied_to_a_layer_registered_before_it() -> None:
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = nn.Linear(4, 50, bias=False)  # met first: the tied tensor is counted under its name
            self.body = nn.Linear(4, 4)
            self.embed = nn.Embedding(50, 4)
            self.embed.weight = self.decoder.weight

    model = Model()
    report = paramscope.inspect(model, exclude_embeddings=True)
    expected = sum(p.numel() for p in model.body.parameters())
    assert expected == 20
    assert report.totals.non_embedding_params == expected
    assert report.notes[-1] == "without embeddings: 20 parameters (left out: decoder.weight 200)"


def test_exclude_embeddings_in_a_checkpoint_of_custom_code(tmp_path: Path) -> None:
    class Custom(nn.Module):  # names outside transformers' conventions, stored without module types
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(50, 8)
            self.pos_emb = nn.Embedding(16, 8)
            self.block = nn.Linear(8, 8)

    model = Custom()
    safetensors.torch.save_model(model, str(tmp_path / "model.safetensors"))
    report = paramscope.inspect(str(tmp_path / "model.safetensors"), exclude_embeddings=True)
    assert report.totals.non_embedding_params == sum(p.numel() for p in model.block.parameters())


def _t5() -> tuple[Any, str]:
    config = transformers.T5Config(vocab_size=100, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4)
    return config, "T5ForConditionalGeneration"  # relative_attention_bias


def _clip_text() -> tuple[Any, str]:
    config = transformers.CLIPTextConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=4, max_position_embeddings=16, bos_token_id=0,
                                         eos_token_id=1)  # fmt: skip
    return config, "CLIPTextModel"  # token_embedding, position_embedding


def _mamba() -> tuple[Any, str]:
    config = transformers.MambaConfig(vocab_size=100, hidden_size=16, state_size=4, num_hidden_layers=2)
    return config, "MambaForCausalLM"  # embeddings


def _deberta_v2() -> tuple[Any, str]:
    config = transformers.DebertaV2Config(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                                          intermediate_size=32, relative_attention=True, max_position_embeddings=32,
                                          position_buckets=8)  # fmt: skip
    return config, "DebertaV2Model"  # rel_embeddings


def _layoutlm() -> tuple[Any, str]:
    config = transformers.LayoutLMConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                                         intermediate_size=32, max_2d_position_embeddings=32)  # fmt: skip
    return config, "LayoutLMModel"  # x_, y_, h_ and w_position_embeddings


def _gemma3n() -> tuple[Any, str]:
    config = transformers.Gemma3nTextConfig(vocab_size=100, vocab_size_per_layer_input=100, hidden_size=16,
                                            hidden_size_per_layer_input=4, intermediate_size=32, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2, head_dim=4, laurel_rank=4,
                                            altup_num_inputs=2, num_kv_shared_layers=0,
                                            activation_sparsity_pattern=[0.0, 0.0],
                                            layer_types=["sliding_attention", "full_attention"])  # fmt: skip
    return config, "Gemma3nForCausalLM"  # embed_tokens_per_layer


def _vit() -> tuple[Any, str]:
    config = transformers.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=4, intermediate_size=32,
                                    image_size=8, patch_size=4)  # fmt: skip
    return config, "ViTModel"  # embeddings.cls_token and embeddings.position_embeddings: parameters, not tables


@pytest.mark.parametrize(
    "make", [_t5, _clip_text, _mamba, _deberta_v2, _layoutlm, _gemma3n, _vit],
    ids=["t5", "clip-text", "mamba", "deberta-v2", "layoutlm", "gemma3n", "vit"],
)  # fmt: skip
def test_exclude_embeddings_in_a_checkpoint_leaves_out_what_the_model_does(tmp_path: Path, make: Any) -> None:
    # a checkpoint has no module types: the names transformers gives its nn.Embedding layers tell them
    config, architecture = make()
    torch.manual_seed(0)
    model = getattr(transformers, architecture)(config)
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    untied_head = 0 if head is None or head.weight is embedding.weight else head.weight.numel()
    expected = model.num_parameters(exclude_embeddings=True) - untied_head  # paramscope leaves an untied head out too
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_model(model, str(path))
    assert paramscope.inspect(model, exclude_embeddings=True).totals.non_embedding_params == expected
    report = paramscope.inspect(str(path), exclude_embeddings=True)
    assert report.totals.params == numel(model)
    assert report.totals.non_embedding_params == expected


# ---------------------------------------------------------------------------------------------------------------------
# 5. a directory with a config and weights: --from-config, --check


@dataclass
class Saved:
    directory: Path
    model: nn.Module
    config: transformers.LlamaConfig


def save_tiny_llama(directory: Path, *, tied: bool = False) -> Saved:
    config = transformers.LlamaConfig(**TINY_LLAMA, tie_word_embeddings=tied, architectures=["LlamaForCausalLM"])
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(directory)
    return Saved(directory, model, config)


@pytest.fixture(scope="module")
def tiny_llama_saved(tmp_path_factory: pytest.TempPathFactory) -> Saved:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def tiny_llama(tmp_path: Path, tiny_llama_saved: Saved) -> Saved:
    """A fresh copy of the saved tiny Llama, free to edit."""
    directory = tmp_path / "tiny-llama"
    shutil.copytree(tiny_llama_saved.directory, directory)
    return Saved(directory, tiny_llama_saved.model, tiny_llama_saved.config)


def stored_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    with safe_open(path, "pt") as handle:
        return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118


def test_weights_are_read_by_default(capsys: pytest.CaptureFixture[str], tiny_llama: Saved) -> None:
    report = run_json(capsys, tiny_llama.directory)
    assert report["source"]["kind"] == "safetensors"
    # the files read: the weights and the config.json beside them (its model_type names the layout)
    assert report["source"]["files"] == [
        str(tiny_llama.directory / name) for name in ("model.safetensors", "config.json")
    ]
    assert report["totals"]["params"] == numel(tiny_llama.model)
    assert {t["name"]: tuple(t["shape"]) for t in report["tensors"]} == stored_shapes(
        tiny_llama.directory / "model.safetensors"
    )


def test_from_config_builds_the_config(capsys: pytest.CaptureFixture[str], tiny_llama: Saved) -> None:
    report = run_json(capsys, tiny_llama.directory, "--from-config")
    assert report["source"]["kind"] == "hf-config"
    assert report["source"]["files"] == [str(tiny_llama.directory / "config.json")]
    assert report["totals"]["params"] == numel(tiny_llama.model)
    assert report["totals"]["trainable"] == numel(tiny_llama.model)  # a built model knows trainability


def test_check_on_a_matching_pair(capsys: pytest.CaptureFixture[str], tiny_llama: Saved) -> None:
    report = run_json(capsys, tiny_llama.directory, "--check")
    assert report["source"]["kind"] == "safetensors"
    assert report["check"] == {
        "against": str(tiny_llama.directory / "config.json"),
        "ok": True,
        "missing": [],
        "unexpected": [],
        "mismatched": [],
    }


BUILD_OPTIONS_UNUSED = "--from-config to build it from config.json, or --check to compare the two"


def test_model_class_on_weights_read_from_their_headers_is_refused(
    capsys: pytest.CaptureFixture[str], tiny_llama: Saved
) -> None:
    # the report would be of the weights, not of the class asked for, with nothing to say so
    assert_error(
        run(capsys, "inspect", str(tiny_llama.directory), "--model-class", "LlamaModel"),
        f"{tiny_llama.directory}: --model-class is for a model built from a config.json; a checkpoint is read from "
        f"its weights: add {BUILD_OPTIONS_UNUSED}",
    )
    # a permission, not a request: where no model is built, no code runs
    assert run_json(capsys, tiny_llama.directory, "--trust-remote-code")["totals"]["params"] == numel(tiny_llama.model)


def test_model_class_on_weights_without_a_config_says_there_is_none(
    capsys: pytest.CaptureFixture[str], tiny_llama: Saved
) -> None:
    # from a README review: the hint offered --from-config, which then fails for want of a config.json
    (tiny_llama.directory / "config.json").unlink()
    weights = tiny_llama.directory / "model.safetensors"
    for target in (weights, tiny_llama.directory):
        assert_error(
            run(capsys, "inspect", str(target), "--model-class", "LlamaModel"),
            f"{target}: --model-class is for a model built from a config.json; a checkpoint is read from its "
            "weights: there is no config.json beside it to build a model from",
        )


def test_model_class_with_check_or_from_config_builds_that_class(
    capsys: pytest.CaptureFixture[str], tiny_llama: Saved
) -> None:
    base = numel(meta_build(transformers.LlamaModel, tiny_llama.config))
    built = run_json(capsys, tiny_llama.directory, "--from-config", "--model-class", "LlamaModel")
    assert built["totals"]["params"] == base < numel(tiny_llama.model)
    checked = run_json(capsys, tiny_llama.directory, "--check", "--model-class", "LlamaModel", code=1)
    assert checked["totals"]["params"] == numel(tiny_llama.model)  # the weights, checked against the base model
    assert checked["check"]["unexpected"] == ["lm_head.weight"]


@pytest.mark.parametrize("command", [["inspect"], ["summary", "--input-size", "1,4"], ["memory"]])
def test_model_class_on_model_code_is_refused(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    target = "paramscope.examples:resnet18"
    assert_error(
        run(capsys, command[0], target, *command[1:], "--model-class", "LlamaModel"),
        f"{target}: --model-class is for a model built from a config.json; model code builds its own model",
    )


def test_memory_of_weights_runs_its_forward_on_the_class_named(
    capsys: pytest.CaptureFixture[str], tiny_llama: Saved
) -> None:
    # the weights are read from their headers, and the config beside them builds the model whose forward is measured
    def activations(*options: str) -> tuple[int, int]:
        argv = ["memory", str(tiny_llama.directory), "--train", "--seq", "8", "--format", "json", *options]
        code, out, err = run(capsys, *argv)
        assert (code, err) == (0, "")
        report = json.loads(out)
        assert (
            report["notes"][0]
            == f"built {options[-1] if options else 'LlamaForCausalLM'} from "
            + str(tiny_llama.directory / "config.json")
            + " on meta"
        )
        items = {item["name"]: item["total_bytes"] for item in report["memory"]["items"]}
        return report["totals"]["params"], items["activations"]

    (params, with_head), (base_params, base) = activations(), activations("--model-class", "LlamaModel")
    assert params == base_params == numel(tiny_llama.model)
    assert with_head > base  # the head's logits and loss are not in the base model's forward
    unused = f"{tiny_llama.directory}: --model-class names the class of the model a forward runs on, built from the "
    assert_error(
        run(capsys, "memory", str(tiny_llama.directory), "--model-class", "LlamaModel"),
        f"{unused}config.json beside the weights; give --context (or --seq) to run one",
    )
    (tiny_llama.directory / "config.json").write_text("{bad")  # read without it, and without the class asked for
    assert_error(
        run(capsys, "memory", str(tiny_llama.directory), "--seq", "8", "--model-class", "LlamaModel"),
        f"{unused}config.json beside the weights; there is none here that can be read",
    )


@pytest.mark.parametrize("side", ["code", "checkpoint"])
def test_diff_gives_the_model_class_to_the_side_built_from_a_config(
    capsys: pytest.CaptureFixture[str], tiny_llama: Saved, side: str
) -> None:
    # the other side, model code or weights, is read as it is without the option
    base = numel(meta_build(transformers.LlamaModel, tiny_llama.config))
    other = str(tiny_llama.directory / "model.safetensors") if side == "checkpoint" else "paramscope.examples:resnet18"
    argv = ["diff", other, str(tiny_llama.directory / "config.json"), "--model-class", "LlamaModel", "--format", "json"]
    code, out, err = run(capsys, *argv)
    assert (code, err) == (1, "")
    found = json.loads(out)
    assert found["totals"]["params"]["b"] == base
    if side == "checkpoint":  # the weights, read as stored: the causal LM's, head and all
        assert found["totals"]["params"]["a"] == numel(tiny_llama.model) > base
        assert "lm_head.weight" in found["only_in_a"]


def test_diff_with_a_model_class_and_no_side_built_from_a_config_is_refused(
    capsys: pytest.CaptureFixture[str], tiny_llama: Saved
) -> None:
    assert_error(
        run(capsys, "diff", str(tiny_llama.directory), str(tiny_llama.directory), "--model-class", "LlamaModel"),
        "--model-class is for a model built from a config.json, and neither side is one: add --from-config to build "
        "each checkpoint from the config.json beside it",
    )
    code, _, _ = run(capsys, "diff", str(tiny_llama.directory), str(tiny_llama.directory), "--from-config",
                       "--model-class", "LlamaModel")  # fmt: skip
    assert code == 0


def test_check_tied_head_is_not_missing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    saved = save_tiny_llama(tmp_path, tied=True)
    assert "lm_head.weight" not in stored_shapes(tmp_path / "model.safetensors")
    assert "lm_head.weight" in dict(saved.model.named_parameters(remove_duplicate=False))
    capsys.readouterr()  # transformers' own progress bar while saving
    report = run_json(capsys, tmp_path, "--check")
    assert report["check"]["ok"] is True
    assert report["totals"]["params"] == numel(saved.model)


@pytest.mark.parametrize("rows", [0, -1], ids=["same-shape", "one-row-less"])
def test_check_compares_a_tied_head_the_checkpoint_stores_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, rows: int
) -> None:
    """A tied model's checkpoint that stores the head as well: its shape is compared as load_state_dict and
    transformers compare every key (a head of another shape was passed as ok, the embedding's shape compared alone)."""
    saved = save_tiny_llama(tmp_path, tied=True)
    capsys.readouterr()  # transformers' own progress bar while saving
    path = tmp_path / "model.safetensors"
    tensors = safetensors.torch.load_file(path)
    vocab, hidden = tensors["model.embed_tokens.weight"].shape
    tensors["lm_head.weight"] = torch.zeros(vocab + rows, hidden)
    safetensors.torch.save_file(tensors, path, metadata={"format": "pt"})
    wanted = {name: list(p.shape) for name, p in saved.model.named_parameters(remove_duplicate=False)}
    stored = {name: list(shape) for name, shape in stored_shapes(path).items()}
    expected = [(name, wanted[name], stored[name]) for name in sorted(wanted) if wanted[name] != stored[name]]
    assert len(expected) == (1 if rows else 0)
    report = run_json(capsys, tmp_path, "--check", code=1 if rows else 0)
    check = report["check"]
    assert (check["ok"], check["missing"], check["unexpected"]) == (not rows, [], [])
    assert [(m["name"], m["model_shape"], m["checkpoint_shape"]) for m in check["mismatched"]] == expected


def _expected_check(directory: Path) -> dict[str, Any]:
    """What ``load_state_dict`` would say, from the edited config's model (built here) and the stored shapes."""
    config = transformers.AutoConfig.from_pretrained(directory)
    model = meta_build(transformers.LlamaForCausalLM, config)
    wanted = {name: tuple(p.shape) for name, p in model.named_parameters()}
    stored = stored_shapes(directory / "model.safetensors")
    return {
        "missing": sorted(set(wanted) - set(stored)),
        "unexpected": sorted(set(stored) - set(wanted)),
        "mismatched": sorted(
            (name, list(wanted[name]), list(stored[name]))
            for name in set(wanted) & set(stored)
            if wanted[name] != stored[name]
        ),
    }


def _more_layers(directory: Path) -> None:
    edit_config(directory / "config.json", num_hidden_layers=3)


def _wider_mlp(directory: Path) -> None:
    edit_config(directory / "config.json", intermediate_size=40)


def _drop_tensor(directory: Path) -> None:
    path = directory / "model.safetensors"
    tensors = safetensors.torch.load_file(path)
    del tensors["model.norm.weight"]
    safetensors.torch.save_file(tensors, path, metadata={"format": "pt"})


def _extra_tensor(directory: Path) -> None:
    path = directory / "model.safetensors"
    tensors = safetensors.torch.load_file(path)
    tensors["model.extra.weight"] = torch.zeros(3, 2)
    safetensors.torch.save_file(tensors, path, metadata={"format": "pt"})


CHECK_CASES = {
    "more-layers": (_more_layers, "missing", 9),  # layer 2: 4 attention, 3 MLP, 2 norms
    "wider-mlp": (_wider_mlp, "mismatched", 6),  # gate/up/down of both layers
    "dropped-tensor": (_drop_tensor, "missing", 1),
    "extra-tensor": (_extra_tensor, "unexpected", 1),
}


@pytest.mark.parametrize("case", list(CHECK_CASES))
def test_check_on_a_mismatched_pair(capsys: pytest.CaptureFixture[str], tiny_llama: Saved, case: str) -> None:
    edit, field, count = CHECK_CASES[case]
    edit(tiny_llama.directory)
    expected = _expected_check(tiny_llama.directory)
    assert len(expected[field]) == count
    assert [key for key in ("missing", "unexpected", "mismatched") if expected[key]] == [field]
    report = run_json(capsys, tiny_llama.directory, "--check", code=1)
    check = report["check"]
    assert check["ok"] is False
    assert check["against"] == str(tiny_llama.directory / "config.json")
    assert sorted(check["missing"]) == expected["missing"]
    assert sorted(check["unexpected"]) == expected["unexpected"]
    mismatched = sorted((m["name"], m["model_shape"], m["checkpoint_shape"]) for m in check["mismatched"])
    assert mismatched == expected["mismatched"]
    assert report["source"]["kind"] == "safetensors"  # the report is still the checkpoint's


def test_check_mismatch_exit_code_with_table_output(capsys: pytest.CaptureFixture[str], tiny_llama: Saved) -> None:
    _drop_tensor(tiny_llama.directory)
    code, out, err = run(capsys, "inspect", str(tiny_llama.directory), "--check", "--quiet")
    assert (code, err) == (1, "")
    assert "model.norm.weight" in out


def test_check_mismatch_with_csv_output_says_so_on_stderr(
    capsys: pytest.CaptureFixture[str], tiny_llama: Saved
) -> None:
    # CSV rows are modules: the check's findings have no place there, and exit 1 alone would not say why
    _drop_tensor(tiny_llama.directory)
    code, out, err = run(capsys, "inspect", str(tiny_llama.directory), "--check", "--format", "csv", "--quiet")
    config = tiny_llama.directory / "config.json"
    message = (
        f"paramscope: check failed: 1 missing, 0 unexpected, 0 of another shape against {config} (--format table or "
        "json lists them)\n"
    )
    assert (code, err) == (1, message)
    assert out.startswith("path,type,depth,params")
    # the formats the line names are formats, and list the finding
    for fmt in ("table", "json"):
        code, out, err = run(capsys, "inspect", str(tiny_llama.directory), "--check", "--format", fmt, "--quiet")
        assert (code, err) == (1, "")
        assert "model.norm.weight" in out


@pytest.mark.parametrize("output", ["table", "json", "csv"])
def test_check_mismatch_with_a_budget_exceeded_says_both_on_stderr(
    capsys: pytest.CaptureFixture[str], tiny_llama: Saved, output: str
) -> None:
    # exit 3 is the budget's: the failed check, otherwise only in the report, is said on stderr too
    _drop_tensor(tiny_llama.directory)
    code, out, err = run(capsys, "inspect", str(tiny_llama.directory), "--check", "--format", output, "--quiet",
                         "--max-params", "10")  # fmt: skip
    config = tiny_llama.directory / "config.json"
    check = f"paramscope: check failed: 1 missing, 0 unexpected, 0 of another shape against {config}"
    lines = err.splitlines()
    assert code == 3
    assert lines[0] == check + (" (--format table or json lists them)" if output == "csv" else "")
    assert lines[1].startswith("paramscope: budget exceeded: ")
    assert len(lines) == 2
    assert out


def test_check_mismatch_with_a_budget_undecided_says_both_on_stderr(
    capsys: pytest.CaptureFixture[str], tiny_llama: Saved, monkeypatch: pytest.MonkeyPatch
) -> None:
    # exit 2 speaks for the budget (lower bounds that fit: lazy tensors), as exit 3 does when exceeded
    def undecided(*args: object, **kwargs: object) -> None:
        raise paramscope.IncompleteCountError("the budget cannot be decided")

    monkeypatch.setattr("paramscope._budget.check_budget", undecided)
    _drop_tensor(tiny_llama.directory)
    code, out, err = run(capsys, "inspect", str(tiny_llama.directory), "--check", "--format", "json", "--quiet",
                         "--max-params", "10")  # fmt: skip
    config = tiny_llama.directory / "config.json"
    assert code == 2
    assert err.splitlines() == [
        f"paramscope: check failed: 1 missing, 0 unexpected, 0 of another shape against {config}",
        "paramscope: error: the budget cannot be decided",
    ]
    assert json.loads(out)["check"]["ok"] is False


def test_check_and_from_config_need_a_config(capsys: pytest.CaptureFixture[str], tiny_llama: Saved) -> None:
    (tiny_llama.directory / "config.json").unlink()
    for flag in ("--check", "--from-config"):
        assert_error(
            run(capsys, "inspect", str(tiny_llama.directory), flag),
            f"{tiny_llama.directory}: {flag} needs a config.json beside the weights, and there is none",
        )


def test_check_needs_weights_and_excludes_from_config(capsys: pytest.CaptureFixture[str], tiny_llama: Saved) -> None:
    directory = tiny_llama.directory
    assert_error(
        run(capsys, "inspect", str(directory), "--check", "--from-config"),
        f"{directory}: --check compares the weights with the model config.json describes, and --from-config leaves "
        "the weights out: pass one of them",
    )
    for path in directory.glob("*.safetensors"):
        path.unlink()
    for target in (directory, directory / "config.json"):  # a config alone: nothing to compare it with
        assert_error(
            run(capsys, "inspect", str(target), "--check"),
            f"{target}: --check compares weights with the model config.json describes, and there are no weights",
        )


def test_check_through_the_api(tiny_llama: Saved) -> None:
    _extra_tensor(tiny_llama.directory)
    report = paramscope.inspect(str(tiny_llama.directory), check=True)
    assert report.check is not None
    assert (report.check.ok, report.check.unexpected, report.check.missing) == (False, ("model.extra.weight",), ())


# base-model prefix: GPT2Model weights (``h.0…``) under GPT2LMHeadModel (``transformer.h.0…``) and the reverse

TINY_GPT2 = {"vocab_size": 64, "n_positions": 32, "n_embd": 16, "n_layer": 2, "n_head": 2, "bos_token_id": 0,
             "eos_token_id": 0}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny GPT-2 saved by transformers as a base model and as a model with a head (keys under ``transformer.``)."""
    root = tmp_path_factory.mktemp("tiny-gpt2")
    for name, cls in (("base", transformers.GPT2Model), ("head", transformers.GPT2LMHeadModel)):
        config = transformers.GPT2Config(**TINY_GPT2, architectures=[cls.__name__])
        torch.manual_seed(0)
        cls(config).save_pretrained(root / name)
    return {"base": root / "base", "head": root / "head"}


def _edit_weights(directory: Path, drop: tuple[str, ...] = (), add: tuple[str, ...] = ()) -> None:
    path = directory / "model.safetensors"
    tensors = safetensors.torch.load_file(path)
    for name in drop:
        del tensors[name]
    for name in add:
        tensors[name] = torch.zeros(64, 16) if name == "lm_head.weight" else torch.zeros(2)
    safetensors.torch.save_file(tensors, path, metadata={"format": "pt"})


# case: (the weights saved by, the class --check builds, tensors dropped, tensors added, the note on the prefix)
PREFIX_CASES: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...], str | None]] = {
    "base-into-head": ("base", "GPT2LMHeadModel", (), (), "added to 28"),
    "head-into-base": ("head", "GPT2Model", (), (), "removed from 28"),
    "base-into-head-layer-dropped": ("base", "GPT2LMHeadModel", ("h.1.ln_2.weight", "h.1.ln_2.bias"), (),
                                     "added to 26"),
    # outside the prefix: an untied head and stray tensors; h.0.attn.bias: GPT-2 ignores it (_keys_to_ignore_on_load_…)
    "head-with-extras-into-base": ("head", "GPT2Model", (), ("lm_head.weight", "transformer.extra.weight",
                                   "other.weight", "transformer.h.0.attn.bias"), "removed from 28"),
    "base-with-extras-into-head": ("base", "GPT2LMHeadModel", (), ("extra.weight", "transformer.other.weight",
                                   "h.0.attn.bias"), "added to 28"),
    "head-into-head": ("head", "GPT2LMHeadModel", (), (), None),
}  # fmt: skip


@pytest.mark.parametrize("case", list(PREFIX_CASES))
def test_check_adds_or_removes_the_base_model_prefix_as_transformers_does(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_gpt2: dict[str, Path], case: str
) -> None:
    saved, model_class, drop, add, prefix_note = PREFIX_CASES[case]
    directory = tmp_path / case
    shutil.copytree(tiny_gpt2[saved], directory)
    _edit_weights(directory, drop, add)
    _, info = getattr(transformers, model_class).from_pretrained(directory, output_loading_info=True)
    capsys.readouterr()  # transformers' own load report
    assert info["mismatched_keys"] == set()
    failed = bool(info["missing_keys"] or info["unexpected_keys"])
    assert failed == bool(drop or add)

    report = run_json(capsys, directory, "--check", "--model-class", model_class, code=1 if failed else 0)
    check = report["check"]
    assert (sorted(check["missing"]), sorted(check["unexpected"])) == (
        sorted(info["missing_keys"]),
        sorted(info["unexpected_keys"]),
    )
    assert (check["ok"], check["mismatched"]) == (not failed, [])
    notes = [note for note in report["notes"] if "base-model prefix" in note]
    if prefix_note is None:
        assert notes == []
    else:
        assert len(notes) == 1
        assert notes[0].startswith(f"--check: base-model prefix 'transformer.' {prefix_note} checkpoint tensor name")
        assert notes[0].endswith(f"into {model_class}")
    if "h.0.attn.bias" in " ".join(add):
        assert any("lists them as ignorable" in note and "h.0.attn.bias" in note for note in report["notes"])


def test_check_compares_each_tensor_two_names_load_into_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_gpt2: dict[str, Path]
) -> None:
    # from review: a tensor stored under its name and again without the base-model prefix, the second of the wrong
    # shape, went unchecked (exit 0); transformers loads both into one tensor and refuses the second
    directory = tmp_path / "twice"
    shutil.copytree(tiny_gpt2["head"], directory)
    path = directory / "model.safetensors"
    tensors = safetensors.torch.load_file(str(path))
    assert "transformer.h.0.mlp.c_fc.weight" in tensors
    tensors["h.0.mlp.c_fc.weight"] = torch.zeros(1, 1)
    safetensors.torch.save_file(tensors, str(path), metadata={"format": "pt"})
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        transformers.GPT2LMHeadModel.from_pretrained(directory)
    capsys.readouterr()
    check = run_json(capsys, directory, "--check", code=1)["check"]
    model_shape = list(tensors["transformer.h.0.mlp.c_fc.weight"].shape)
    assert check["mismatched"] == [{"name": "transformer.h.0.mlp.c_fc.weight", "model_shape": model_shape,
                                    "checkpoint_shape": [1, 1]}]  # fmt: skip


# quantised checkpoints: packed weights checked as the logical weights they encode

GPTQ_GROUP = 16


def _gptq_llama(directory: Path, *, drop: str | None = None, wrong_inputs: str | None = None) -> Saved:
    """A tiny Llama with every projection stored as GPTQ 4-bit (qweight, qzeros, scales, g_idx), the rest as fp16."""
    config = transformers.LlamaConfig(**TINY_LLAMA, architectures=["LlamaForCausalLM"])
    write_config(directory, config)
    quantization = {"quant_method": "gptq", "bits": 4, "group_size": GPTQ_GROUP, "desc_act": False, "sym": True}
    edit_config(directory / "config.json", quantization_config=quantization)
    model = meta_build(transformers.LlamaForCausalLM, config)
    tensors = {}
    for name, parameter in model.named_parameters():
        layer = name.rpartition(".")[0]
        if layer == drop:
            continue
        if not layer.endswith("_proj"):
            tensors[name] = torch.zeros(parameter.shape, dtype=torch.float16)
            continue
        out, inputs = parameter.shape
        inputs *= 2 if layer == wrong_inputs else 1
        tensors |= {
            f"{layer}.qweight": torch.zeros(inputs * 4 // 32, out, dtype=torch.int32),
            f"{layer}.qzeros": torch.zeros(inputs // GPTQ_GROUP, out * 4 // 32, dtype=torch.int32),
            f"{layer}.scales": torch.zeros(inputs // GPTQ_GROUP, out, dtype=torch.float16),
            f"{layer}.g_idx": torch.zeros(inputs, dtype=torch.int32),
        }
    safetensors.torch.save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    return Saved(directory, model, config)


def test_check_accepts_a_correct_gptq_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    saved = _gptq_llama(tmp_path)
    report = run_json(capsys, tmp_path, "--check")
    assert report["check"] == {
        "against": str(tmp_path / "config.json"),
        "ok": True,
        "missing": [],
        "unexpected": [],
        "mismatched": [],
    }
    assert report["totals"]["params"] == numel(saved.model)
    packed = sum(1 for name, _ in saved.model.named_parameters() if name.endswith("_proj.weight"))
    assert packed == 14
    assert (
        f"--check: {packed} packed quantised weight(s) compared as the weights they encode, by logical shape "
        "(model.layers.0.mlp.down_proj.qweight as model.layers.0.mlp.down_proj.weight and 13 more); their scale, "
        "zero and index tensors are not unexpected"
    ) in report["notes"]


def test_check_reports_a_missing_gptq_layer(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _gptq_llama(tmp_path, drop="model.layers.1.mlp.down_proj")
    report = run_json(capsys, tmp_path, "--check", code=1)
    check = report["check"]
    assert (check["missing"], check["unexpected"], check["mismatched"]) == (
        ["model.layers.1.mlp.down_proj.weight"],
        [],
        [],
    )


def test_check_reports_a_gptq_layer_of_the_wrong_logical_shape(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _gptq_llama(tmp_path, wrong_inputs="model.layers.0.self_attn.q_proj")
    report = run_json(capsys, tmp_path, "--check", code=1)
    check = report["check"]
    hidden = TINY_LLAMA["hidden_size"]
    assert (check["missing"], check["unexpected"]) == ([], [])
    assert check["mismatched"] == [
        {
            "name": "model.layers.0.self_attn.q_proj.weight",
            "model_shape": [hidden, hidden],
            "checkpoint_shape": [hidden, 2 * hidden],
        }
    ]


# ---------------------------------------------------------------------------------------------------------------------
# 6. custom code: never run without --trust-remote-code


@dataclass
class Remote:
    directory: Path
    markers: list[Path]


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Remote:
    """A config whose model_type transformers does not know, with an auto_map to code beside it that leaves a mark."""
    isolated_modules_cache(tmp_path, monkeypatch)
    directory = tmp_path / "remote_x"
    directory.mkdir()
    markers = [tmp_path / "configuration-ran", tmp_path / "modeling-ran"]
    for name, text in custom_code_files("paramscope-remote-x", (markers[0], markers[1])).items():
        (directory / name).write_text(text)
    return Remote(directory, markers)


def test_custom_code_is_not_run_without_the_flag(capsys: pytest.CaptureFixture[str], remote: Remote) -> None:
    code, out, err = run(capsys, "inspect", str(remote.directory))
    assert (code, out) == (2, "")
    assert err.startswith(f"paramscope: error: {remote.directory / 'config.json'}: ")
    assert err.count("\n") == 1
    assert not any(marker.exists() for marker in remote.markers)


def test_custom_code_error_says_to_pass_trust_remote_code(capsys: pytest.CaptureFixture[str], remote: Remote) -> None:
    assert_error(
        run(capsys, "inspect", str(remote.directory)),
        f"{remote.directory / 'config.json'}: the model is defined by custom code in its repository; pass "
        "--trust-remote-code to run that code (only for code you trust)",
    )
    assert not any(marker.exists() for marker in remote.markers)


def test_custom_model_class_of_a_known_model_type_needs_the_flag(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    marker = tmp_path / "modeling-ran"
    (tmp_path / "modeling_x.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = transformers.LlamaConfig(**TINY_LLAMA, architectures=["XForCausalLM"])
    path = write_config(tmp_path, config)
    edit_config(path, auto_map={"AutoModelForCausalLM": "modeling_x.XForCausalLM"})
    assert_error(
        run(capsys, "inspect", str(tmp_path)),
        "XForCausalLM is defined by custom code in the model's repository; pass --trust-remote-code to run it "
        "(only for code you trust)",
    )
    assert not marker.exists()


@pytest.mark.parametrize("named_by", ["architectures", "--model-class"])
def test_known_model_type_with_an_auto_class_mapped_to_custom_code_is_refused_whatever_the_answer(
    tmp_path: Path, named_by: str
) -> None:
    # transformers asks on the terminal whether to run an Auto class's custom code unless told not to: a "y" on
    # stdin ran it
    marker = tmp_path / "modeling-ran"
    (tmp_path / "modeling_x.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    architectures = ["AutoModelForCausalLM"] if named_by == "architectures" else None
    path = write_config(tmp_path, transformers.LlamaConfig(**TINY_LLAMA, architectures=architectures))
    edit_config(path, auto_map={"AutoModelForCausalLM": "modeling_x.XForCausalLM"})
    argv = ["inspect", str(tmp_path)] + (["--model-class", "AutoModelForCausalLM"] if architectures is None else [])
    env = {key: value for key, value in os.environ.items() if key not in {"COLUMNS", "FORCE_COLOR"}}
    env["PYTHONPATH"] = str(Path(paramscope.__file__).parents[1])
    done = subprocess.run([sys.executable, "-m", "paramscope.cli", *argv], input="y\n", capture_output=True,
                          text=True, env=env, timeout=120, check=False)  # fmt: skip
    assert_error(
        (done.returncode, done.stdout, done.stderr),
        f"{path}: AutoModelForCausalLM is mapped to custom code in the model's repository (modeling_x.XForCausalLM); "
        "pass --trust-remote-code to run it (only for code you trust)",
    )
    assert not marker.exists()


def test_trust_remote_code_runs_the_local_code(capsys: pytest.CaptureFixture[str], remote: Remote) -> None:
    report = run_json(capsys, remote.directory, "--trust-remote-code")
    assert report["totals"]["params"] == 8 * 3 + 3
    assert report["source"]["kind"] == "hf-config"
    assert report["notes"][0] == (
        f"built XModel (custom code, through AutoModel) from {remote.directory / 'config.json'} on meta"
    )
    assert all(marker.exists() for marker in remote.markers)


_CUSTOM_HEADS = """
import torch
from transformers import LlamaForCausalLM as _LM, LlamaForSequenceClassification as _Classifier, LlamaModel


class XModel(LlamaModel):
    pass


class XForSequenceClassification(_Classifier):
    def __init__(self, config):
        super().__init__(config)
        self.extra = torch.nn.Linear(config.hidden_size, 100)


class LlamaForCausalLM(_LM):  # the name of transformers' own class, as Phi-3's repository names its Phi3ForCausalLM
    def __init__(self, config):
        super().__init__(config)
        self.extra_head = torch.nn.Linear(config.hidden_size, 1000, bias=False)
"""


def _custom_classes(directory: Path, architecture: str, auto_map: dict[str, str]) -> Path:
    (directory / "modeling_x.py").write_text(_CUSTOM_HEADS)
    path = write_config(directory, transformers.LlamaConfig(**TINY_LLAMA, architectures=[architecture]))
    edit_config(path, auto_map=auto_map)
    return path


def _built_by_transformers(directory: Path, auto: str) -> nn.Module:
    """The model transformers' Auto class builds from the directory's config with trust_remote_code, on meta."""
    config = transformers.AutoConfig.from_pretrained(directory, trust_remote_code=True)
    with torch.device("meta"):
        return getattr(transformers, auto).from_config(config, trust_remote_code=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("architecture", "auto_map", "auto"),
    [
        # the auto_map entry that names the architecture, not AutoModel's nor AutoModelForCausalLM's
        ("XForSequenceClassification", {"AutoModel": "modeling_x.XModel",
                                        "AutoModelForSequenceClassification": "modeling_x.XForSequenceClassification"},
         "AutoModelForSequenceClassification"),
        ("XForSequenceClassification", {"AutoModelForCausalLM": "modeling_x.LlamaForCausalLM",
                                        "AutoModelForSequenceClassification": "modeling_x.XForSequenceClassification"},
         "AutoModelForSequenceClassification"),
        # the repository's class of the name of one of transformers' own
        ("LlamaForCausalLM", {"AutoModelForCausalLM": "modeling_x.LlamaForCausalLM"}, "AutoModelForCausalLM"),
    ],
    ids=["beside-AutoModel", "beside-AutoModelForCausalLM", "named-as-transformers-own"],
)  # fmt: skip
def test_trust_remote_code_builds_the_class_auto_map_gives_the_architecture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, architecture: str, auto_map: dict[str, str], auto: str
) -> None:
    # it built AutoModelForCausalLM's class where there was one, else AutoModel's, and named the architecture in the
    # note; and transformers' own class where it had one of the name
    isolated_modules_cache(tmp_path, monkeypatch)
    directory = tmp_path / "repo"
    directory.mkdir()
    path = _custom_classes(directory, architecture, auto_map)
    expected = _built_by_transformers(directory, auto)
    assert type(expected).__name__ == architecture
    report = paramscope.inspect(str(path), trust_remote_code=True)
    assert report.totals.params == sum(p.numel() for p in expected.parameters())
    assert report.modules[0].type == architecture
    assert report.notes[0] == f"built {architecture} (custom code, through {auto}) from {path} on meta"


def test_without_trust_remote_code_transformers_own_class_is_built_and_said(tmp_path: Path) -> None:
    path = _custom_classes(tmp_path, "LlamaForCausalLM", {"AutoModelForCausalLM": "modeling_x.LlamaForCausalLM"})
    report = paramscope.inspect(str(path))
    with torch.device("meta"):
        own = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY_LLAMA))
    assert report.totals.params == sum(p.numel() for p in own.parameters())
    assert report.notes[0] == (
        "built transformers' own LlamaForCausalLM (the repository maps it to custom code, "
        f"modeling_x.LlamaForCausalLM, which --trust-remote-code builds) from {path} on meta"
    )


def test_an_auto_class_mapped_to_another_class_than_the_architecture_is_said_and_built_when_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the architecture is transformers' own; the repository's AutoModelForSequenceClassification is its own class: the
    # note had said nothing of it, and an Auto class named was said to be built, not the class it builds
    isolated_modules_cache(tmp_path, monkeypatch)
    path = _custom_classes(
        tmp_path, "LlamaForCausalLM", {"AutoModelForSequenceClassification": "modeling_x.XForSequenceClassification"}
    )
    own = paramscope.inspect(str(path), trust_remote_code=True)
    assert own.notes[0] == (
        "built LlamaForCausalLM (transformers' own; auto_map maps AutoModelForSequenceClassification to "
        "modeling_x.XForSequenceClassification: --model-class AutoModelForSequenceClassification --trust-remote-code "
        f"builds that) from {path} on meta"
    )
    auto = "AutoModelForSequenceClassification"
    expected = _built_by_transformers(tmp_path, auto)
    named = paramscope.inspect(str(path), trust_remote_code=True, model_class=auto)
    assert named.totals.params == sum(p.numel() for p in expected.parameters())
    assert named.notes[0] == f"built XForSequenceClassification (custom code, through {auto}) from {path} on meta"


def test_an_auto_class_this_transformers_lacks_is_passed_over(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # transformers 5 has no AutoModelForVision2Seq, which repositories still map: it had raised an AttributeError
    assert not hasattr(transformers, "AutoModelForVision2Seq")
    path = write_config(tmp_path, transformers.LlamaConfig(**TINY_LLAMA, architectures=["LlamaForCausalLM"]))
    edit_config(path, auto_map={"AutoModelForVision2Seq": "modeling_x.LlamaForCausalLM"})
    code, out, err = run(capsys, "inspect", str(path), "--trust-remote-code", "--format", "json")
    assert (code, err) == (0, "")
    with torch.device("meta"):
        own = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY_LLAMA))
    assert json.loads(out)["totals"]["params"] == sum(p.numel() for p in own.parameters())


def test_an_auto_map_that_is_no_mapping_is_refused_where_custom_code_is_looked_for(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_config(tmp_path, transformers.LlamaConfig(**TINY_LLAMA, architectures=["LlamaForCausalLM"]))
    edit_config(path, auto_map="modeling_x.XModel")
    message = f"{path}: auto_map is str, not a mapping of Auto classes to the repository's classes"
    assert_error(run(capsys, "inspect", str(path), "--model-class", "AutoModelForCausalLM"), message)  # a traceback
    assert_error(run(capsys, "inspect", str(path), "--trust-remote-code"), message)
    assert paramscope.inspect(str(path)).totals.params > 0  # transformers' own class, as transformers builds it


# ---------------------------------------------------------------------------------------------------------------------
# 7. meta-device pitfalls: a module that needs real tensors while it is built


class ItemConfig(transformers.PretrainedConfig):
    model_type = "paramscope-test-item"

    def __init__(self, width: int = 4, **kwargs: Any) -> None:
        self.width = width
        super().__init__(**kwargs)


class Scaler(nn.Module):
    """Reads a tensor's value in ``__init__``: impossible on the meta device."""

    def __init__(self, width: int) -> None:
        super().__init__()
        factor = int(torch.full((1,), 2.0).item())
        self.proj = nn.Linear(width, width * factor)


class ItemModel(transformers.PreTrainedModel):
    config_class = ItemConfig

    def __init__(self, config: ItemConfig) -> None:
        super().__init__(config)
        self.scaler = Scaler(config.width)
        self.post_init()


@pytest.fixture(scope="module")
def registered() -> None:
    """ItemConfig/ItemModel known to the Auto classes, as a library that registers its own models makes them."""
    transformers.AutoConfig.register(ItemConfig.model_type, ItemConfig, exist_ok=True)
    transformers.AutoModel.register(ItemConfig, ItemModel, exist_ok=True)


@pytest.mark.usefixtures("registered")
def test_meta_pitfall_names_the_module_and_suggests_cpu(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_config(tmp_path, ItemConfig(width=4))
    with torch.device("meta"), pytest.raises(RuntimeError) as caught:
        torch.full((1,), 2.0).item()
    torch_message = str(caught.value).strip().splitlines()[0]
    assert_error(
        run(capsys, "inspect", str(tmp_path)),
        f"{tmp_path / 'config.json'}: building AutoModel (config.json names no architecture) on meta failed in "
        f"Scaler.__init__: RuntimeError: {torch_message}{META_HINT}",
    )


@pytest.mark.usefixtures("registered")
def test_meta_pitfall_builds_on_cpu(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_config(tmp_path, ItemConfig(width=4))
    report = paramscope.inspect(str(tmp_path), device="cpu")
    assert report.totals.params == 4 * 8 + 8
    assert report.source.kind == "hf-config"
    assert report.source.device == "cpu"
    code, out, err = run(capsys, "inspect", str(tmp_path), "--device", "cpu", "--quiet")
    assert (code, err) == (0, "")
    assert "Scaler" in out


@pytest.mark.usefixtures("registered")
def test_meta_pitfall_through_model_class(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # transformers swaps the lazy module in sys.modules for a new one on its first model import: patch the current one
    _ = transformers.LlamaForCausalLM
    monkeypatch.setattr(sys.modules["transformers"], "ItemModel", ItemModel, raising=False)
    write_config(tmp_path, ItemConfig(width=4, architectures=["ItemModel"]))
    with pytest.raises(paramscope.ParamscopeError) as caught:
        paramscope.inspect(str(tmp_path / "config.json"))
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'config.json'}: building ItemModel on meta failed in Scaler.__init__: ")
    assert message.endswith(META_HINT)
    assert paramscope.inspect(str(tmp_path / "config.json"), device="cpu").totals.params == math.prod((4, 8)) + 8


def test_cpu_build_has_no_meta_hint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_config(tmp_path, transformers.LlamaConfig(**TINY_LLAMA, architectures=["LlamaForCausalLM"]))
    code, out, err = run(capsys, "inspect", str(tmp_path), "--model-class", "BertModel", "--device", "cpu")
    assert (code, out) == (2, "")
    assert err.startswith(
        f"paramscope: error: {tmp_path / 'config.json'}: building BertModel on cpu failed in BertEmbeddings.__init__: "
    )
    assert "--device cpu" not in err
    assert err.count("\n") == 1


def test_configs_are_described_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "inspect", "--help")
    assert code == 0
    for option in ("--from-config", "--check", "--model-class", "--trust-remote-code", "--exclude-embeddings"):
        assert option in out
    assert "1 --check found differences" in " ".join(out.split())


@pytest.mark.parametrize(
    ("config", "hint"),
    [
        (transformers.TrOCRConfig(d_model=16, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32,
                                  vocab_size=32), "give --model-class TrOCRForCausalLM"),  # a head's class alone
        (transformers.BlipTextConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32),
         "give --model-class with the class to build"),  # a part's config
    ],
    ids=["head-only", "sub-model"],
)  # fmt: skip
def test_a_config_without_architecture_that_automodel_cannot_build_says_which_class_to_give(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, config: Any, hint: str
) -> None:
    write_config(tmp_path, config)
    assert "architectures" not in json.loads((tmp_path / "config.json").read_text())
    with pytest.raises(ValueError, match="Unrecognized configuration class"):
        transformers.AutoModel.from_config(config)  # what transformers says, naming no class
    assert_error(
        run(capsys, "inspect", str(tmp_path)),
        f"{tmp_path / 'config.json'}: config.json names no architecture, and transformers' AutoModel builds no model "
        f"of type {config.model_type!r}: {hint}",
    )
    if "TrOCR" in hint:
        model = transformers.TrOCRForCausalLM(config)
        report = paramscope.inspect(str(tmp_path), model_class="TrOCRForCausalLM")
        assert report.totals.params == sum(parameter.numel() for parameter in model.parameters())
