"""Quantised checkpoints count the parameters of the model they encode; scales and zeros are counted apart.

Each layout is built here, tensor by tensor, for the layers of a small unquantised model, and the logical counts are
checked against that model's own parameters.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import paramscope
from paramscope.sources.checkpoint import StoredTensor
from paramscope.sources.quantization import quantized_records

from .cli import run

IN, OUT, GROUP = 128, 64, 32


class Block(nn.Module):
    """What gets quantised: two Linear layers (with and without bias) beside a norm and an embedding that are not."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, IN)
        self.norm = nn.LayerNorm(IN)
        self.up = nn.Linear(IN, OUT)
        self.down = nn.Linear(IN, OUT, bias=False)


QUANTISED = ("up", "down")


def _reference() -> tuple[int, dict[str, int]]:
    model = Block()
    layers = {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in QUANTISED}
    return sum(p.numel() for p in model.parameters()), layers


def _unquantised_tensors() -> dict[str, torch.Tensor]:
    return {
        "embed.weight": torch.zeros(10, IN, dtype=torch.float16),
        "norm.weight": torch.zeros(IN, dtype=torch.float16),
        "norm.bias": torch.zeros(IN, dtype=torch.float16),
        "up.bias": torch.zeros(OUT, dtype=torch.float16),
    }


def _gptq(bits: int) -> dict[str, torch.Tensor]:
    tensors = {}
    for name in QUANTISED:
        tensors |= {
            f"{name}.qweight": torch.zeros(IN * bits // 32, OUT, dtype=torch.int32),
            f"{name}.qzeros": torch.zeros(IN // GROUP, OUT * bits // 32, dtype=torch.int32),
            f"{name}.scales": torch.zeros(IN // GROUP, OUT, dtype=torch.float16),
            f"{name}.g_idx": torch.zeros(IN, dtype=torch.int32),
        }
    return tensors


def _gptq_without_g_idx(bits: int) -> dict[str, torch.Tensor]:
    """GPTQ as some exporters write it, without g_idx: the zeros' packing tells the bit width."""
    return {name: tensor for name, tensor in _gptq(bits).items() if not name.endswith(".g_idx")}


def _awq(bits: int) -> dict[str, torch.Tensor]:
    tensors = {}
    for name in QUANTISED:
        tensors |= {
            f"{name}.qweight": torch.zeros(IN, OUT * bits // 32, dtype=torch.int32),
            f"{name}.qzeros": torch.zeros(IN // GROUP, OUT * bits // 32, dtype=torch.int32),
            f"{name}.scales": torch.zeros(IN // GROUP, OUT, dtype=torch.float16),
        }
    return tensors


def _awq_gemv(bits: int) -> dict[str, torch.Tensor]:
    """AutoAWQ's GEMV layout (WQLinear_GEMV): packed along the inputs, the groups' zeros and scales padded."""
    tensors = {}
    padded = math.ceil(math.ceil(IN // GROUP / 8) / 4) * 4  # its calculate_zeros_width for groups of 32
    for name in QUANTISED:
        tensors |= {
            f"{name}.qweight": torch.zeros(OUT, IN * bits // 32, dtype=torch.int32),
            f"{name}.qzeros": torch.zeros(OUT, padded, dtype=torch.int32),
            f"{name}.scales": torch.zeros(OUT, padded * 8, dtype=torch.float16),
        }
    return tensors


def _bnb4(kind: str = "nf4", blocksize: int = 64) -> dict[str, torch.Tensor]:
    tensors = {}
    for name in QUANTISED:
        state = json.dumps({"quant_type": kind, "blocksize": blocksize, "dtype": "float16", "shape": [OUT, IN]})
        tensors |= {
            f"{name}.weight": torch.zeros(OUT * IN // 2, 1, dtype=torch.uint8),
            f"{name}.weight.absmax": torch.zeros(OUT * IN // blocksize, dtype=torch.float32),
            f"{name}.weight.quant_map": torch.zeros(16, dtype=torch.float32),
            f"{name}.weight.quant_state.bitsandbytes__{kind}": torch.tensor(list(state.encode()), dtype=torch.uint8),
        }
    return tensors


def _bnb8() -> dict[str, torch.Tensor]:
    tensors = {}
    for name in QUANTISED:
        tensors |= {
            f"{name}.weight": torch.zeros(OUT, IN, dtype=torch.int8),
            f"{name}.SCB": torch.zeros(OUT, dtype=torch.float32),
            f"{name}.weight_format": torch.zeros((), dtype=torch.uint8),
        }
    return tensors


def _fp8(block_scales: bool) -> dict[str, torch.Tensor]:
    tensors = {}
    for name in QUANTISED:
        tensors[f"{name}.weight"] = torch.zeros(OUT, IN, dtype=torch.float8_e4m3fn)
        if block_scales:  # DeepSeek-V3: one inverse scale per 128 × 128 block
            tensors[f"{name}.weight_scale_inv"] = torch.zeros(math.ceil(OUT / 128), IN // 128, dtype=torch.float32)
        else:  # per-tensor weight and activation scales
            tensors[f"{name}.weight_scale"] = torch.zeros((), dtype=torch.float32)
            tensors[f"{name}.input_scale"] = torch.zeros((), dtype=torch.float32)
    return tensors


def _nvfp4(group: int = 16) -> dict[str, torch.Tensor]:
    """NVIDIA ModelOpt NVFP4 as vLLM's modelopt loader reads it: two e2m1 values per uint8 along the inputs, an e4m3
    scale per group of 16 inputs, fp32 per-tensor weight and activation scales."""
    tensors = {}
    for name in QUANTISED:
        tensors |= {
            f"{name}.weight": torch.zeros(OUT, IN // 2, dtype=torch.uint8),
            f"{name}.weight_scale": torch.zeros(OUT, IN // group, dtype=torch.float8_e4m3fn),
            f"{name}.weight_scale_2": torch.zeros((), dtype=torch.float32),
            f"{name}.input_scale": torch.zeros((), dtype=torch.float32),
        }
    return tensors


def _compressed_tensors_nvfp4() -> dict[str, torch.Tensor]:
    """compressed-tensors' nvfp4-pack-quantized format: the same packing under its own names."""
    tensors = {}
    for name in QUANTISED:
        tensors |= {
            f"{name}.weight_packed": torch.zeros(OUT, IN // 2, dtype=torch.uint8),
            f"{name}.weight_scale": torch.zeros(OUT, IN // 16, dtype=torch.float8_e4m3fn),
            f"{name}.weight_global_scale": torch.zeros(1, dtype=torch.float32),
            f"{name}.input_global_scale": torch.zeros(1, dtype=torch.float32),
        }
    return tensors


def _int8() -> dict[str, torch.Tensor]:
    """compressed-tensors W8A8 int8: the weight as stored, one scale per output."""
    tensors = {}
    for name in QUANTISED:
        tensors |= {
            f"{name}.weight": torch.zeros(OUT, IN, dtype=torch.int8),
            f"{name}.weight_scale": torch.zeros(OUT, 1, dtype=torch.bfloat16),
        }
    return tensors


def _compressed_tensors() -> dict[str, torch.Tensor]:
    tensors = {}
    for name in QUANTISED:
        tensors |= {
            f"{name}.weight_packed": torch.zeros(OUT, IN * 4 // 32, dtype=torch.int32),
            f"{name}.weight_scale": torch.zeros(OUT, IN // GROUP, dtype=torch.bfloat16),
            f"{name}.weight_shape": torch.tensor([OUT, IN], dtype=torch.int64),
        }
    return tensors


LAYOUTS = {
    "gptq-4bit-config": (_gptq(4), {"quant_method": "gptq", "bits": 4, "group_size": GROUP}, "GPTQ", "uint4"),
    "gptq-4bit-from-g_idx": (_gptq(4), None, "GPTQ", "uint4"),
    "gptq-8bit-from-qzeros": (_gptq_without_g_idx(8), None, "GPTQ", "uint8"),
    "gptq-8bit": (_gptq(8), {"quant_method": "gptq", "bits": 8, "group_size": GROUP}, "GPTQ", "uint8"),
    # a bit width that is no width (0, negative): the config does not say one, and the tensors do
    "gptq-4bit-config-bits-negative": (_gptq(4), {"quant_method": "gptq", "bits": -4}, "GPTQ", "uint4"),
    "gptq-8bit-config-bits-0": (_gptq_without_g_idx(8), {"quant_method": "gptq", "bits": 0}, "GPTQ", "uint8"),
    "awq-4bit-config": (_awq(4), {"quant_method": "awq", "bits": 4, "group_size": GROUP}, "AWQ", "uint4"),
    "awq-4bit-from-shapes": (_awq(4), None, "AWQ", "uint4"),
    "awq-4bit-gemv": (
        _awq_gemv(4),
        {"quant_method": "awq", "bits": 4, "group_size": GROUP, "version": "gemv"},
        "AWQ",
        "uint4",
    ),
    "bnb-nf4": (_bnb4("nf4"), {"quant_method": "bitsandbytes", "load_in_4bit": True}, "bitsandbytes 4-bit", "nf4"),
    "bnb-fp4": (_bnb4("fp4"), None, "bitsandbytes 4-bit", "float4_e2m1fn"),
    "bnb-int8": (_bnb8(), {"quant_method": "bitsandbytes", "load_in_8bit": True}, "bitsandbytes 8-bit", "int8"),
    "fp8-per-tensor": (_fp8(block_scales=False), {"quant_method": "fp8"}, "FP8", "float8_e4m3fn"),
    "fp8-blocks": (_fp8(block_scales=True), None, "FP8", "float8_e4m3fn"),
    "compressed-tensors": (
        _compressed_tensors(),
        {"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {"num_bits": 4}}}},
        "compressed-tensors",
        "uint4",
    ),
    "compressed-tensors-num_bits-negative": (
        _compressed_tensors(),
        {"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {"num_bits": -4}}}},
        "compressed-tensors",
        "uint4",
    ),
    "compressed-tensors-weights-not-an-object": (
        _compressed_tensors(),
        {"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": 4}}},
        "compressed-tensors",
        "uint4",
    ),
    "compressed-tensors-nvfp4": (
        _compressed_tensors_nvfp4(),
        {
            "quant_method": "compressed-tensors",
            "format": "nvfp4-pack-quantized",
            "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "float", "group_size": 16}}},
        },
        "compressed-tensors",
        "float4_e2m1fn",
    ),
    "int8-w8a8": (_int8(), {"quant_method": "compressed-tensors", "format": "int-quantized"}, "INT8", "int8"),
    "modelopt-nvfp4": (
        _nvfp4(),
        {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16},
        "NVFP4",
        "float4_e2m1fn",
    ),
    "modelopt-nvfp4-hf_quant_config-shape": (
        _nvfp4(),
        {"quant_method": "modelopt", "quantization": {"quant_algo": "NVFP4", "group_size": 16}},
        "NVFP4",
        "float4_e2m1fn",
    ),
    "nvfp4-from-names": (_nvfp4(), None, "NVFP4", "float4_e2m1fn"),
}


def _write(directory: Path, quantised: dict[str, torch.Tensor], quantization_config: dict | None) -> Path:
    path = directory / "model.safetensors"
    save_file({**_unquantised_tensors(), **quantised}, str(path))
    if quantization_config is not None:
        (directory / "config.json").write_text(json.dumps({"quantization_config": quantization_config}))
    return path


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_logical_parameters_equal_the_unquantised_model(tmp_path: Path, layout: str) -> None:
    quantised, config, scheme, value_dtype = LAYOUTS[layout]
    expected_params, per_layer = _reference()
    report = paramscope.inspect(str(_write(tmp_path, quantised, config)))

    assert report.totals.params == expected_params
    packed = [record for record in report.tensors if record.packing is not None]
    assert sorted(record.name.rpartition(".")[0] for record in packed) == sorted(QUANTISED)
    for record in packed:
        layer = record.name.split(".")[0]
        weight = per_layer[layer] - (OUT if layer == "up" else 0)  # the bias stays an ordinary tensor
        assert record.numel == weight
        assert record.shape == (OUT, IN)
        assert record.dtype == value_dtype
        assert scheme in record.packing
        assert record.bytes == quantised[record.name].untyped_storage().nbytes()  # as stored

    companions = {name: tensor for name, tensor in quantised.items() if name not in {r.name for r in packed}}
    assert {r.name for r in report.tensors if r.kind == "quantization"} == set(companions)
    assert report.totals.quantization == sum(tensor.numel() for tensor in companions.values())
    assert report.totals.quantization_bytes == sum(tensor.untyped_storage().nbytes() for tensor in companions.values())
    stored = sum(quantised[r.name].untyped_storage().nbytes() for r in packed)
    ordinary = sum(t.untyped_storage().nbytes() for t in _unquantised_tensors().values())
    assert report.totals.param_bytes == stored + ordinary
    assert any(note.startswith(f"quantised checkpoint: {scheme} recognised from") for note in report.notes)


def test_rows_of_a_quantised_checkpoint_add_up(tmp_path: Path) -> None:
    report = paramscope.inspect(str(_write(tmp_path, _gptq(4), None)))
    up = report.module("up")
    assert up.params == OUT * IN + OUT
    assert report.module("").params == sum(node.params for node in report.modules if node.depth == 1)


@pytest.mark.parametrize("g_idx", [True, False], ids=["g_idx", "qzeros"])
def test_gptq_layers_of_another_width_than_the_configs_bits(tmp_path: Path, g_idx: bool) -> None:
    # GPTQModel's `dynamic` quantises the layers it matches at their own width: `down` at 8 bits, the rest at 4
    tensors = {**_gptq(4), **{name: t for name, t in _gptq(8).items() if name.startswith("down.")}}
    if not g_idx:
        tensors = {name: t for name, t in tensors.items() if not name.endswith(".g_idx")}
    config = {"quant_method": "gptq", "bits": 4, "group_size": GROUP, "dynamic": {r"+:.*down.*": {"bits": 8}}}
    report = paramscope.inspect(str(_write(tmp_path, tensors, config)))
    assert report.totals.params == _reference()[0]
    for name, dtype in (("up", "uint4"), ("down", "uint8")):
        record = report.tensor(f"{name}.qweight")
        assert (record.shape, record.numel, record.dtype) == ((OUT, IN), OUT * IN, dtype)
        assert record.bytes == tensors[f"{name}.qweight"].untyped_storage().nbytes()
    assert not any("says bits=4" in note for note in report.notes)  # the dynamic widths are declared, no contradiction


def test_compressed_tensors_layers_read_their_weight_shape(tmp_path: Path) -> None:
    # a non-uniform scheme: `up` in a 4-bit config group, `down` in an 8-bit one; and a layer of 100 inputs, which
    # pack_to_int32 pads up to 13 words of eight 4-bit values
    odd = nn.Linear(100, OUT, bias=False)
    tensors = _compressed_tensors()
    tensors["down.weight_packed"] = torch.zeros(OUT, IN * 8 // 32, dtype=torch.int32)
    tensors |= {
        "odd.weight_packed": torch.zeros(OUT, math.ceil(100 * 4 / 32), dtype=torch.int32),
        "odd.weight_scale": torch.zeros(OUT, math.ceil(100 / GROUP), dtype=torch.bfloat16),
        "odd.weight_shape": torch.tensor(odd.weight.shape, dtype=torch.int64),
    }
    groups = {"group_0": {"targets": ["re:.*up.*", "re:.*odd.*"], "weights": {"num_bits": 4}},
              "group_1": {"targets": ["re:.*down.*"], "weights": {"num_bits": 8}}}  # fmt: skip
    config = {"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": groups}
    report = paramscope.inspect(str(_write(tmp_path, tensors, config)))
    assert report.totals.params == _reference()[0] + odd.weight.numel()
    for name, shape, dtype in (("up", (OUT, IN), "uint4"), ("down", (OUT, IN), "uint8"), ("odd", (OUT, 100), "uint4")):
        record = report.tensor(f"{name}.weight_packed")
        assert (record.shape, record.numel, record.dtype) == (shape, math.prod(shape), dtype)
        assert record.bytes == tensors[f"{name}.weight_packed"].untyped_storage().nbytes()


def _headers_of(tensors: dict[str, torch.Tensor]) -> list[StoredTensor]:
    """The tensors as a header gives them (a Hub file's, a .bin's): names, dtypes and shapes, no values to read."""
    return [StoredTensor(name, str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape),
                         tensor.untyped_storage().nbytes()) for name, tensor in tensors.items()]  # fmt: skip


def test_compressed_tensors_widths_of_their_groups_without_weight_shape() -> None:
    # from review: without weight_shape to read (a Hub file, a .bin), every layer was counted at the first group's
    # width, `down`'s 8-bit words as twice the 4-bit values, with no note; the group whose pattern names the layer
    # tells it
    tensors = _compressed_tensors()
    tensors["down.weight_packed"] = torch.zeros(OUT, IN * 8 // 32, dtype=torch.int32)
    tensors = {name: tensor for name, tensor in tensors.items() if not name.endswith("weight_shape")}
    groups = {"group_0": {"targets": ["re:.*up.*"], "weights": {"num_bits": 4}},
              "group_1": {"targets": ["re:.*down.*"], "weights": {"num_bits": 8}}}  # fmt: skip
    config = {"quantization_config": {"quant_method": "compressed-tensors", "config_groups": groups}}
    records, _ = quantized_records(_headers_of(tensors), config)
    by_name = {record.name: record for record in records}
    assert (by_name["up.weight_packed"].shape, by_name["up.weight_packed"].dtype) == ((OUT, IN), "uint4")
    assert (by_name["down.weight_packed"].shape, by_name["down.weight_packed"].dtype) == ((OUT, IN), "uint8")
    # from review: the usual recipe, a default group for every Linear and an override by pattern or by name, as
    # compressed-tensors resolves it (the layer's own name, then a pattern, then a class)
    for override in ("re:.*down.*", "down"):
        groups = {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4}},
                  "group_1": {"targets": [override], "weights": {"num_bits": 8}}}  # fmt: skip
        config = {"quantization_config": {"quant_method": "compressed-tensors", "config_groups": groups}}
        records, _ = quantized_records(_headers_of(tensors), config)
        by_name = {record.name: record for record in records}
        assert (by_name["up.weight_packed"].shape, by_name["up.weight_packed"].dtype) == ((OUT, IN), "uint4")
        assert (by_name["down.weight_packed"].shape, by_name["down.weight_packed"].dtype) == ((OUT, IN), "uint8")
        assert {by_name[f"{name}.weight_scale"].kind for name in QUANTISED} == {"quantization"}
    # groups naming the layers by class alone: the width cannot be told, and is said, not guessed
    groups = {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4}},
              "group_1": {"targets": ["Linear"], "weights": {"num_bits": 8}}}  # fmt: skip
    config = {"quantization_config": {"quant_method": "compressed-tensors", "config_groups": groups}}
    records, notes = quantized_records(_headers_of(tensors), config)
    assert not any(record.packing for record in records)  # counted as stored, as any layout not recognised
    assert notes == [
        "up.weight_packed, down.weight_packed: config.json's quantization_config gives its groups several bit widths "
        "(4, 8), none of their targets tells this layer's, and its weight_shape cannot be read to tell it: "
        "counted as stored"
    ]


@pytest.mark.parametrize(
    "case",
    ["fp8-kv-cache", "int8-asymmetric", "w4a8"],
)
def test_compressed_tensors_scales_and_zero_points_are_quantization_tensors(tmp_path: Path, case: str) -> None:
    # from review: a quantised KV cache's scales on the attention module, asymmetric int8's zero points and W4A8's
    # activation scales were counted as parameters
    if case == "fp8-kv-cache":
        tensors = _fp8(block_scales=False)
        extra = {
            "attn.k_scale": torch.ones((), dtype=torch.float32),
            "attn.v_scale": torch.ones((), dtype=torch.float32),
        }
        config = {"quant_method": "compressed-tensors", "format": "float-quantized",
                  "kv_cache_scheme": {"num_bits": 8, "type": "float"}}  # fmt: skip
    elif case == "int8-asymmetric":
        tensors = _int8()
        extra = {f"{name}.{point}": torch.zeros(OUT, 1, dtype=torch.int8)
                 for name in QUANTISED for point in ("weight_zero_point", "input_zero_point")}  # fmt: skip
        config = {"quant_method": "compressed-tensors", "format": "int-quantized"}
    else:
        tensors = _compressed_tensors()
        extra = {f"{name}.input_scale": torch.ones(1, dtype=torch.float32) for name in QUANTISED}
        config = {"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {"num_bits": 4}}}}
    report = paramscope.inspect(str(_write(tmp_path, {**tensors, **extra}, config)))
    assert report.totals.params == _reference()[0]
    assert {name for name in extra} <= {record.name for record in report.tensors if record.kind == "quantization"}


def test_bnb4_weights_without_quant_state_convert_as_weights_not_norms(tmp_path: Path) -> None:
    # from review: given flat (their shape unread), they were kept in float32 as 1-D norms are: --dtype Q4_K 5.9 times
    # the size; they are weights, at the format's rate, their rows (for llama.cpp's fallback) not known
    tensors = {name: tensor for name, tensor in _bnb4().items() if ".quant_state." not in name}
    path = _write(tmp_path, tensors, {"quant_method": "bitsandbytes", "load_in_4bit": True})
    plan = paramscope.memory(str(path), dtype="Q4_K").memory
    assert plan is not None
    weights = plan.item("weights")
    quantised = 2 * OUT * IN * 144 // 256  # Q4_K: 144 B a block of 256 values
    embedding = 10 * IN * 22 // 32  # rows of 128, no whole Q4_K block: Q5_0's 22 B a block of 32
    kept = (IN + IN + OUT) * 4  # the norm's weight and bias, up's bias: float32, as llama.cpp keeps 1-D tensors
    assert weights.per_device_bytes == quantised + embedding + kept
    assert f"({format(2 * OUT * IN, ',')} of them of weights whose rows cannot be read, all taken as whole blocks)" in (
        weights.formula
    )


def test_a_quantised_output_head_is_left_out_without_embeddings(tmp_path: Path) -> None:
    # from review: GPTQModel's lm_head.qweight (lm_head: true) was counted as a layer like any other
    tensors = {name.replace("up.", "lm_head.", 1): tensor for name, tensor in _gptq(4).items()}
    tensors = {name: tensor for name, tensor in tensors.items() if not name.startswith("down.")}
    path = tmp_path / "model.safetensors"
    save_file({"embed.weight": torch.zeros(10, IN, dtype=torch.float16), **tensors}, str(path))
    report = paramscope.inspect(str(path), exclude_embeddings=True)
    assert report.totals.non_embedding_params == 0
    assert report.notes[-1] == (
        f"without embeddings: 0 parameters (left out: embed.weight {10 * IN:,}, lm_head.qweight {OUT * IN:,})"
    )


def test_mxfp4_blocks_and_scales(tmp_path: Path) -> None:
    experts = 4
    path = tmp_path / "model.safetensors"
    save_file(
        {
            "mlp.experts.down_proj_blocks": torch.zeros(experts, OUT, IN // 32, 16, dtype=torch.uint8),
            "mlp.experts.down_proj_scales": torch.zeros(experts, OUT, IN // 32, dtype=torch.uint8),
            "mlp.experts.down_proj_bias": torch.zeros(experts, OUT, dtype=torch.bfloat16),
        },
        str(path),
    )
    report = paramscope.inspect(str(path))
    blocks = report.tensor("mlp.experts.down_proj_blocks")
    assert (blocks.numel, blocks.shape, blocks.dtype) == (experts * OUT * IN, (experts, OUT, IN), "float4_e2m1fn")
    assert report.totals.params == experts * OUT * IN + experts * OUT
    assert report.totals.quantization == experts * OUT * IN // 32


@pytest.mark.parametrize("state", [b"not json", b"[" * 30_000 + b"]" * 30_000], ids=["not-json", "nested-too-deeply"])
def test_unreadable_bnb_quant_state_is_said_once(tmp_path: Path, state: bytes) -> None:
    tensors = _bnb4("nf4")
    for name in QUANTISED:
        tensors[f"{name}.weight.quant_state.bitsandbytes__nf4"] = torch.tensor(list(state), dtype=torch.uint8)
    report = paramscope.inspect(str(_write(tmp_path, tensors, None)))
    assert report.tensor("up.weight").numel == OUT * IN  # two values per byte
    assert report.tensor("up.weight").shape == (OUT * IN,)
    assert [note for note in report.notes if "quant_state" in note] == [
        "bitsandbytes 4-bit: the quant_state of 2 weight(s) (down.weight, up.weight) was absent or could not be "
        "read, so 2 values per byte are assumed and each weight's shape is given as one flat dimension"
    ]


def test_bnb4_stored_in_bfloat16_without_a_readable_quant_state(tmp_path: Path) -> None:
    # bnb_4bit_quant_storage=torch.bfloat16 (QLoRA with FSDP): the same packed bytes, four 4-bit values per element
    tensors = _bnb4("nf4")
    for name in QUANTISED:
        tensors[f"{name}.weight"] = torch.zeros(OUT * IN // 4, 1, dtype=torch.bfloat16)
        tensors[f"{name}.weight.quant_state.bitsandbytes__nf4"] = torch.tensor(list(b"not json"), dtype=torch.uint8)
    report = paramscope.inspect(str(_write(tmp_path, tensors, None)))
    assert report.totals.params == _reference()[0]
    assert report.tensor("up.weight").numel == nn.Linear(IN, OUT).weight.numel()


def test_bnb_quant_state_shape_that_its_bytes_do_not_hold_is_counted_as_stored(tmp_path: Path) -> None:
    tensors = _bnb4("nf4")
    state = json.dumps({"quant_type": "nf4", "blocksize": 64, "dtype": "float16", "shape": [10**6, 10**6]})
    tensors["up.weight.quant_state.bitsandbytes__nf4"] = torch.tensor(list(state.encode()), dtype=torch.uint8)
    report = paramscope.inspect(str(_write(tmp_path, tensors, None)))
    up = report.tensor("up.weight")
    assert (up.numel, up.shape, up.dtype) == (OUT * IN // 2, (OUT * IN // 2, 1), "uint8")  # as stored
    assert report.tensor("down.weight").shape == (OUT, IN)  # its quant_state holds
    assert "up.weight: a bitsandbytes quant_state whose shape its bytes do not hold (two 4-bit values a byte): " \
           "counted as stored" in report.notes  # fmt: skip


def _bnb4_without_state(weights: int) -> list[StoredTensor]:
    """bitsandbytes 4-bit as the Hub's headers give it: the quant state's bytes cannot be read."""
    tensors = []
    for index in range(weights):
        name = f"layers.{index // 100}.experts.{index % 100}.weight"
        tensors += [
            StoredTensor(name, "uint8", (OUT * IN // 2, 1), OUT * IN // 2),
            StoredTensor(f"{name}.absmax", "float32", (OUT * IN // 64,), OUT * IN // 64 * 4),
            StoredTensor(f"{name}.quant_map", "float32", (16,), 64),
            StoredTensor(f"{name}.quant_state.bitsandbytes__nf4", "uint8", (100,), 100),
        ]
    return tensors


def test_many_bnb4_weights_without_quant_state_get_one_note() -> None:
    # timing is for benchmarks; the speed of this path (companions found by binary search) is not asserted here
    weights = 16_000
    records, notes = quantized_records(_bnb4_without_state(weights), None)
    assert sum(record.numel for record in records if record.kind == "parameter") == weights * OUT * IN
    assert sum(record.kind == "quantization" for record in records) == 3 * weights
    assert sum("quant_state" in note for note in notes) == 1
    assert "quant_state of 16,000 weight(s) (layers.0.experts.0.weight, layers.0.experts.1.weight, " in notes[-1]
    assert "and 15,997 more)" in notes[-1]


def test_nvfp4_group_size_is_read_from_the_scales(tmp_path: Path) -> None:
    report = paramscope.inspect(str(_write(tmp_path, _nvfp4(group=32), None)))
    assert report.tensor("up.weight").packing == (
        "2 × fp4 per uint8, one fp8 scale per 32 values and a per-tensor fp32 scale (NVFP4)"
    )


UNRECOGNISED = {
    "unknown-method": (
        {"quant_method": "hqq", "nbits": 4},
        "config.json declares quantisation (hqq) that paramscope does not recognise: no tensor is counted as the "
        "weights they encode; other packed tensors are counted as stored (their stored elements, not the values they "
        "hold), and their scales as parameters",
    ),
    "unknown-modelopt-algorithm": (
        {"quant_method": "modelopt", "quant_algo": "W4A8_AWQ"},
        "config.json declares quantisation (modelopt W4A8_AWQ) that paramscope does not recognise: no tensor is "
        "counted as the weights they encode; other packed tensors are counted as stored (their stored elements, not "
        "the values they hold), and their scales as parameters",
    ),
    "known-method-no-layout": (
        {"quant_method": "bitsandbytes", "load_in_4bit": True},
        "config.json declares quantisation (bitsandbytes) but no tensor is in a quantised layout paramscope "
        "recognises for it: every tensor is counted as stored (a packed tensor's stored elements, not the values it "
        "holds); weights a loader quantises when it loads are stored unquantised",
    ),
}


@pytest.mark.parametrize("case", list(UNRECOGNISED))
def test_unrecognised_quantization_config_is_said(tmp_path: Path, case: str) -> None:
    config, note = UNRECOGNISED[case]
    packed = {"up.weight": torch.zeros(OUT, IN // 2, dtype=torch.uint8)}
    report = paramscope.inspect(str(_write(tmp_path, packed, config)))
    assert report.tensor("up.weight").numel == OUT * IN // 2  # as stored
    assert note in report.notes


def test_unknown_method_with_a_recognised_layout_says_which_was_counted(tmp_path: Path) -> None:
    report = paramscope.inspect(str(_write(tmp_path, _fp8(block_scales=False), {"quant_method": "some_fp8_tool"})))
    assert report.totals.params == _reference()[0]
    assert any(note.startswith("quantised checkpoint: FP8 recognised from the tensor names") for note in report.notes)
    assert any(
        note.startswith("config.json declares quantisation (some_fp8_tool) that paramscope does not recognise: the "
                        "FP8 weights above are counted as the weights they encode")
        for note in report.notes
    )  # fmt: skip


def test_layouts_that_fit_no_layout_share_one_note(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({f"odd{index}.qweight": torch.zeros(5, 7, dtype=torch.int32) for index in range(5)}, str(path))
    report = paramscope.inspect(str(path))
    assert [note for note in report.notes if "GPTQ/AWQ" in note] == [
        "odd0.qweight, odd1.qweight, odd2.qweight and 2 more: int32 (rows, cols) with scales expected for GPTQ/AWQ: "
        "counted as stored"
    ]


def test_packed_tensor_that_fits_no_layout_is_counted_as_stored(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"odd.qweight": torch.zeros(5, 7, dtype=torch.int32), "odd.scales": torch.zeros(3, dtype=torch.float16)},
              str(path))  # fmt: skip
    report = paramscope.inspect(str(path))
    assert report.tensor("odd.qweight").numel == 35
    assert report.tensor("odd.qweight").packing is None
    assert any(note.startswith("odd.qweight: int32 (rows, cols) with scales expected") for note in report.notes)


@pytest.mark.parametrize(("qweight", "outputs"), [((4, 0), 8), ((4, 8), 0), ((0, 0), 0)])
def test_packed_int_layer_of_no_size_is_counted_as_stored(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, qweight: tuple[int, int], outputs: int
) -> None:
    # a qweight without columns, or scales without outputs, is no GPTQ or AWQ packing (and nothing to divide by)
    path = tmp_path / "model.safetensors"
    save_file({"odd.qweight": torch.zeros(qweight, dtype=torch.int32),
               "odd.scales": torch.zeros(1, outputs, dtype=torch.float16)}, str(path))  # fmt: skip
    report = paramscope.inspect(str(path))
    assert (report.tensor("odd.qweight").shape, report.tensor("odd.qweight").packing) == (qweight, None)
    assert (
        f"odd.qweight: shape {qweight} fits neither GPTQ nor AWQ packing of {outputs} outputs: counted as stored"
        in (report.notes)
    )
    code, out, err = run(capsys, "inspect", str(path), "--format", "json")
    assert (code, err) == (0, "")
    assert json.loads(out)["totals"]["params"] == math.prod(qweight) + outputs


NO_WIDTH = "which is no bit width (a whole number from 1 to 32)"
# a config's bits against a layer's tensors that pack 4-bit values: how the note says the config's field
CONTRADICTING_BITS = {
    "over-32": (64, f"bits=64, {NO_WIDTH}"),
    "another-width": (8, "bits=8"),
    "zero": (0, f"bits=0, {NO_WIDTH}"),
    "negative": (-4, f"bits=-4, {NO_WIDTH}"),
    "not-an-integer": (4.5, f"bits=4.5, {NO_WIDTH}"),
    "a-string": ("4", f'bits="4", {NO_WIDTH}'),
}


@pytest.mark.parametrize("case", list(CONTRADICTING_BITS))
def test_awq_layers_count_the_width_their_tensors_pack_not_the_configs(tmp_path: Path, case: str) -> None:
    # AWQ packs 32/bits values in each int32 along the outputs: qweight (in, out × bits/32) beside scales (groups,
    # out), so 8 columns for 64 outputs are 4-bit whatever the config says
    bits, said = CONTRADICTING_BITS[case]
    report = paramscope.inspect(str(_write(tmp_path, _awq(4), {"quant_method": "awq", "bits": bits})))
    assert report.totals.params == _reference()[0]
    for name in QUANTISED:
        record = report.tensor(f"{name}.qweight")
        assert (record.shape, record.dtype, record.packing) == ((OUT, IN), "uint4", "8 × 4-bit per int32 (AWQ)")
    assert (
        f"down.qweight, up.qweight: config.json's quantization_config says {said}, but the layer's own tensors say "
        "4-bit (AWQ: qweight's int32 columns × 32/4 = the outputs of its scales): counted as 4-bit"
    ) in report.notes


def test_awq_layer_of_the_fuzzer_with_bits_64(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # 2 inputs, 8 int32 columns of eight 4-bit values = the 64 outputs of its scales: 128 4-bit values in 64 bytes
    save_file({"l.qweight": torch.zeros(2, 8, dtype=torch.int32), "l.scales": torch.zeros(1, 64, dtype=torch.float16)},
              str(tmp_path / "model.safetensors"))  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "awq", "bits": 64}}))
    code, out, err = run(capsys, "inspect", str(tmp_path), "--format", "json")
    assert (code, err) == (0, "")
    record = next(tensor for tensor in json.loads(out)["tensors"] if tensor["name"] == "l.qweight")
    assert (record["shape"], record["numel"], record["dtype"], record["bytes"]) == ([64, 2], 128, "uint4", 64)


def test_awq_layer_whose_words_hold_no_width_for_its_outputs_is_counted_as_stored(tmp_path: Path) -> None:
    # 7 int32 columns hold 56 4-bit outputs (or 28 8-bit ones), not the 64 of the scales: 224 bits for 64 outputs is
    # no whole width, so neither the config's 4 bits nor the scales tell the layer's size
    tensors = _awq(4)
    tensors["up.qweight"] = torch.zeros(IN, 7, dtype=torch.int32)
    report = paramscope.inspect(str(_write(tmp_path, tensors, {"quant_method": "awq", "bits": 4})))
    up = report.tensor("up.qweight")
    assert (up.shape, up.numel, up.dtype, up.packing) == ((IN, 7), IN * 7, "int32", None)
    assert report.tensor("down.qweight").dtype == "uint4"
    assert (
        "up.qweight: AWQ qweight of 7 int32 columns holds no whole bit width (from 1 to 32) for the 64 outputs of its "
        "scales: counted as stored"
    ) in report.notes


def test_gptq_layer_whose_tensors_say_another_width_than_the_configs_bits_is_said(tmp_path: Path) -> None:
    # no GPTQModel `dynamic` declares it: 16 int32 rows for the 128 inputs of g_idx are 4-bit, not the config's 8
    report = paramscope.inspect(str(_write(tmp_path, _gptq(4), {"quant_method": "gptq", "bits": 8})))
    assert report.totals.params == _reference()[0]
    assert report.tensor("up.qweight").dtype == "uint4"
    assert (
        "down.qweight, up.qweight: config.json's quantization_config says bits=8, but the layer's own tensors say "
        "4-bit (GPTQ: qweight's int32 rows × 32/4 = the inputs of its g_idx): counted as 4-bit"
    ) in report.notes


def test_gptq_g_idx_that_gives_no_width_leaves_the_zeros_to_tell(tmp_path: Path) -> None:
    # a g_idx of 8 entries for 16 int32 rows would make 64-bit values; the zeros' 8 int32 columns for 64 outputs
    # are 4-bit, as the qweight's 16 rows for 128 inputs
    tensors = _gptq(4)
    tensors["up.g_idx"] = torch.zeros(IN * 4 // 64, dtype=torch.int32)
    report = paramscope.inspect(str(_write(tmp_path, tensors, None)))
    up = report.tensor("up.qweight")
    assert (up.shape, up.numel, up.dtype) == ((OUT, IN), OUT * IN, "uint4")


def test_gptq_layer_whose_width_only_a_config_of_no_width_gives_is_counted_as_stored(tmp_path: Path) -> None:
    # without g_idx or zeros, a GPTQ qweight (in × bits/32, out) tells its inputs only by the config's bits
    tensors = {name: t for name, t in _gptq(4).items() if not name.endswith((".g_idx", ".qzeros"))}
    report = paramscope.inspect(str(_write(tmp_path, tensors, {"quant_method": "gptq", "bits": 64})))
    up = report.tensor("up.qweight")
    assert (up.shape, up.dtype, up.packing) == ((IN * 4 // 32, OUT), "int32", None)
    assert (
        "down.qweight, up.qweight: the bit width cannot be told from the tensors, and config.json's "
        f"quantization_config says bits=64, {NO_WIDTH}: counted as stored"
    ) in report.notes
    # the layers are in GPTQ's layout, which the note above says cannot be sized: not "no tensor is in a layout"
    assert not any("no tensor is in a quantised layout" in note for note in report.notes)


def _compressed_tensors_config(num_bits: object) -> dict:
    return {"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {"num_bits": num_bits}}}}


@pytest.mark.parametrize(("num_bits", "said"), [(64, "num_bits=64"), (4.5, "num_bits=4.5")])
def test_compressed_tensors_num_bits_of_no_width(tmp_path: Path, num_bits: object, said: str) -> None:
    # the stored weight_shape (64, 128) tells the width: 16 int32 words for 128 inputs are 4-bit; without it, nothing
    tensors = _compressed_tensors()
    del tensors["down.weight_shape"]
    report = paramscope.inspect(str(_write(tmp_path, tensors, _compressed_tensors_config(num_bits))))
    up, down = report.tensor("up.weight_packed"), report.tensor("down.weight_packed")
    assert (up.shape, up.dtype) == ((OUT, IN), "uint4")
    assert (down.shape, down.dtype, down.packing) == ((OUT, IN * 4 // 32), "int32", None)
    assert list(report.notes[1:]) == [
        f"up.weight_packed: config.json's quantization_config says {said}, {NO_WIDTH}, but its weight_shape says "
        "4-bit: counted as 4-bit",
        "down.weight_packed: the bit width cannot be told from the tensors, and config.json's quantization_config "
        f"says {said}, {NO_WIDTH}: counted as stored",
    ]


def test_compressed_tensors_nvfp4_is_4_bit_whatever_num_bits_says(tmp_path: Path) -> None:
    # two e2m1 values a byte: (64, 64) uint8 hold a (64, 128) weight, not (64, 64) 8-bit ones
    config = {**_compressed_tensors_config(8), "format": "nvfp4-pack-quantized"}
    report = paramscope.inspect(str(_write(tmp_path, _compressed_tensors_nvfp4(), config)))
    assert report.totals.params == _reference()[0]
    assert (report.tensor("up.weight_packed").shape, report.tensor("up.weight_packed").dtype) == (
        (OUT, IN),
        "float4_e2m1fn",
    )
    assert (
        "down.weight_packed, up.weight_packed: config.json's quantization_config says num_bits=8, but an NVFP4 weight "
        "(a global scale beside it) is fp4: counted as fp4"
    ) in report.notes


def _per_channel_conv() -> nn.Module:
    """torch.ao's quantized Conv2d, its weight quantized per output channel (fbgemm's default qconfig)."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    model.qconfig = torch.ao.quantization.get_default_qconfig("fbgemm")
    prepared = torch.ao.quantization.prepare(model)
    prepared(torch.randn(1, 3, 8, 8))
    return torch.ao.quantization.convert(prepared)


def _qparams_bytes(tensor: torch.Tensor) -> int:
    scales, zero_points = tensor.q_per_channel_scales(), tensor.q_per_channel_zero_points()
    return scales.numel() * scales.element_size() + zero_points.numel() * zero_points.element_size()


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # torch.ao and its quantized dtypes
def test_per_channel_quantized_weights_count_their_scales_and_zero_points(tmp_path: Path) -> None:
    # from review: a checkpoint's per-channel qint8 tensor was 16 B of values, its 64 B of scales and zero points left
    # out with no word; torch.ao's packed weights of a live model too
    weight = torch.quantize_per_channel(
        torch.randn(4, 4), torch.rand(4), torch.zeros(4, dtype=torch.long), 0, torch.qint8
    )
    torch.save({"w": weight}, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=True)["w"]
    report = paramscope.inspect(str(tmp_path / "model.pt"))
    assert (report.totals.params, report.totals.param_bytes) == (16, 16)
    assert report.totals.quantization_bytes == _qparams_bytes(loaded) == 64
    assert [record.name for record in report.tensors if record.kind == "quantization"] == [
        "w_per_channel_scales", "w_per_channel_zero_points"
    ]  # fmt: skip
    live = paramscope.inspect(_per_channel_conv())
    conv_weight = _per_channel_conv()[0].weight()
    assert live.totals.quantization_bytes == _qparams_bytes(conv_weight)
    assert live.totals.params == conv_weight.numel() + 4  # and its bias


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch's quantized dtypes
def test_a_live_models_per_channel_tensors_count_their_scales_and_zero_points_as_its_checkpoint(
    tmp_path: Path,
) -> None:
    # from review: a live model's plain per-channel qint8 parameter or buffer left them out, its checkpoint did not
    def quantized(rows: int) -> torch.Tensor:
        return torch.quantize_per_channel(
            torch.randn(rows, 4), torch.rand(rows, dtype=torch.float64) + 0.1, torch.zeros(rows, dtype=torch.long), 0,
            torch.qint8,
        )  # fmt: skip

    model = nn.Module()
    model.weight = nn.Parameter(quantized(3), requires_grad=False)
    model.register_buffer("table", quantized(5))
    live = paramscope.inspect(model)
    assert live.totals.quantization_bytes == _qparams_bytes(model.weight) + _qparams_bytes(model.table) == 8 * 16
    torch.save(model.state_dict(), tmp_path / "model.pt")
    stored = paramscope.inspect(str(tmp_path / "model.pt"))
    assert sorted((r.name, r.bytes) for r in live.tensors if r.kind == "quantization") == sorted(
        (r.name, r.bytes) for r in stored.tensors if r.kind == "quantization"
    )


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch's quantized dtypes
def test_a_per_channel_tensor_leaves_the_notes_of_the_others_as_they_were(tmp_path: Path) -> None:
    # from review: its scales and zero points, listed after it, moved the tensors after it in the list the notes read
    zero_points = torch.zeros(6, dtype=torch.long)
    quantized = torch.quantize_per_channel(torch.randn(6, 4), torch.rand(6) + 0.1, zero_points, 0, torch.qint8)
    base = torch.zeros(100)
    torch.save({"q": quantized, "a": base[0:10], "b": base[5:20]}, tmp_path / "model.pt")
    notes = paramscope.inspect(str(tmp_path / "model.pt")).notes
    assert any(note.startswith("2 tensors are views of larger storages (a, b): counted at their own sizes, 100 B, "
                               "though the file holds 400 B for them") for note in notes), notes  # fmt: skip
