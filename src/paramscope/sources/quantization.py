"""Quantised checkpoints: packed weights count as the parameters they encode; scales and zeros are counted apart.

Today's tools count a GPTQ ``qweight`` (int32, eight 4-bit values each) as 1/8 of its parameters and its scales as
weights. Here each recognised layout turns its packed tensor into one record of the logical weight (shape, numel
and value dtype of the weight it encodes; bytes as stored) and its companions into ``quantization`` records.

Layouts: GPTQ and AWQ (``qweight``/``qzeros``/``scales``/``g_idx``), compressed-tensors (``weight_packed``, int32
words or NVFP4 uint8 pairs), bitsandbytes 4-bit (uint8 pairs, ``absmax``, ``quant_map``, ``quant_state``) and 8-bit
(``SCB``), FP8 and INT8 weights with scale tensors, NVIDIA ModelOpt NVFP4 (uint8 pairs, fp8 ``weight_scale``, fp32
``weight_scale_2``/``input_scale``) and MXFP4 (``*_blocks``/``*_scales``). The ``quantization_config`` of a
``config.json`` beside the checkpoint names the method and bit width when present; otherwise the tensor names and
shapes decide. A layer whose own tensors show its width (GPTQ's ``g_idx`` or zeros, AWQ's words per output) is
counted at that width, with a note where the config's bits say another or are no width. A ``quantization_config``
that paramscope does not know, or whose layout none of the tensors has, is said in a note: packed tensors are then
counted as stored.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import struct
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._report import TensorRecord
from .._units import format_bytes, format_count, listed
from ._json import loads as json_loads
from .checkpoint import StoredTensor, plain_records

_MAX_QUANT_STATE_BYTES = 64 * 2**10
_FP8_SCALES = ("weight_scale", "weight_scale_inv", "input_scale", "output_scale", "k_scale", "v_scale",
               "weight_zero_point", "input_zero_point")  # fmt: skip
# a quantised KV cache's scales, on the attention module (llm-compressor's kv_cache_scheme: self_attn.k_scale)
_ATTENTION_SCALES = ("k_scale", "v_scale", "q_scale", "prob_scale")
_NVFP4_SCALES = ("weight_scale", "weight_scale_2", "input_scale", "pre_quant_scale", "k_scale", "v_scale")
# quant_method values whose layouts are recognised below; ModelOpt only for the algorithms it stores that way
_KNOWN_METHODS = frozenset({"gptq", "awq", "bitsandbytes", "fp8", "fbgemm_fp8", "compressed-tensors", "mxfp4"})
_MODELOPT_ALGOS = frozenset({"NVFP4", "FP8"})


@dataclass
class _Scheme:
    """What was recognised, for the note: a label, the packed weights and the companion tensors."""

    label: str
    weights: list[TensorRecord] = field(default_factory=list)
    companions: list[TensorRecord] = field(default_factory=list)


@dataclass
class _Plan:
    config: dict[str, Any]
    by_name: dict[str, StoredTensor]
    records: dict[str, TensorRecord] = field(default_factory=dict)
    schemes: dict[str, _Scheme] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)
    """Tensors that looked quantised but fit no layout, by reason: counted as stored."""
    contradictions: dict[str, list[str]] = field(default_factory=dict)
    """Packed weights counted at the width their own tensors show, another than the config's, by reason."""
    unread_states: list[str] = field(default_factory=list)
    """bitsandbytes 4-bit weights whose quant_state (the weight's shape) could not be read."""
    sorted_names: list[str] | None = field(default=None, repr=False)

    def problem(self, name: str, reason: str) -> None:
        self.problems.setdefault(reason, []).append(name)

    def contradiction(self, name: str, reason: str) -> None:
        self.contradictions.setdefault(reason, []).append(name)

    def under(self, prefix: str) -> list[str]:
        """The names that start with ``prefix``: one run of the sorted names, found by bisection (not a scan)."""
        if self.sorted_names is None:
            self.sorted_names = sorted(self.by_name)
        names = self.sorted_names
        start = end = bisect_left(names, prefix)
        while end < len(names) and names[end].startswith(prefix):
            end += 1
        return names[start:end]

    def weight(self, scheme: str, stored: StoredTensor, shape: tuple[int, ...], dtype: str, packing: str) -> None:
        numel = 1
        for dim in shape:
            numel *= dim
        record = TensorRecord(
            stored.name, shape, numel, dtype, stored.nbytes, "parameter", None, None, stored.aliases, packing
        )
        self.records[stored.name] = record
        self.schemes.setdefault(scheme, _Scheme(scheme)).weights.append(record)

    def companion(self, scheme: str, name: str) -> None:
        stored = self.by_name.get(name)
        if stored is None or name in self.records:
            return
        record = TensorRecord(
            stored.name,
            stored.shape,
            stored.numel,
            stored.dtype,
            stored.nbytes,
            "quantization",
            None,
            None,
            stored.aliases,
        )
        self.records[name] = record
        self.schemes.setdefault(scheme, _Scheme(scheme)).companions.append(record)


# torch's quantized dtypes, and the names a checkpoint reader gives the scales and zero points a per-channel quantized
# tensor holds beside its values (torch.quantize_per_channel, torch.ao's packed weights): after the tensor's own
_TORCH_QUANTIZED = frozenset(("qint8", "quint8", "qint32", "quint4x2", "quint2x4"))
PER_CHANNEL_SCALES, PER_CHANNEL_ZERO_POINTS = "_per_channel_scales", "_per_channel_zero_points"


def per_channel_qparams(tensor: Any) -> list[tuple[str, Any]]:
    """The scales and zero points of ``tensor`` (a torch tensor) when it is quantized per channel, each with the
    suffix of its name after the tensor's (``w_per_channel_scales``): what :func:`quantized_records` counts as
    quantization tensors; none for any other tensor (a per-tensor quantized one keeps a scale and a zero point as two
    numbers)."""
    import torch

    per_channel = (torch.per_channel_affine, torch.per_channel_symmetric, torch.per_channel_affine_float_qparams)
    if not tensor.is_quantized or tensor.qscheme() not in per_channel:
        return []
    return [(PER_CHANNEL_SCALES, tensor.q_per_channel_scales()),
            (PER_CHANNEL_ZERO_POINTS, tensor.q_per_channel_zero_points())]  # fmt: skip


def _quantization_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    settings = (config or {}).get("quantization_config")
    return settings if isinstance(settings, dict) else {}


def _bit_width(value: Any) -> int | None:
    """``value`` when it is a width one value can be packed at: a whole number from 1 to 32 (an int32 word holds at
    least one), not a bool; else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 32 else None


def _configured_bits(settings: dict[str, Any]) -> tuple[int | None, str | None]:
    """The bit width the quantization config gives, and how its field reads in a note (``bits=4``): (None, None) when
    it gives none; (None, ``bits=64``) when what it gives is no bit width (0, negative, over 32, not an integer),
    which the tensors then tell."""
    for key in ("bits", "w_bit", "num_bits"):
        if settings.get(key) is not None:
            return _bit_width(settings[key]), _field(key, settings[key])
    for weights in _group_weights(settings):  # compressed-tensors: config_groups.<group>.weights.num_bits
        if weights.get("num_bits") is not None:
            return _bit_width(weights["num_bits"]), _field("num_bits", weights["num_bits"])
    return None, None


def _field(key: str, value: Any) -> str:
    text = "[…]" if isinstance(value, list) else "{…}" if isinstance(value, dict) else json.dumps(value)
    return f"{key}={text if len(text) <= 24 else text[:23] + '…'}"


def _says(configured: int | None, said: str | None) -> str:
    """What the config says, for a note: ``bits=8``, or ``bits=64, which is no bit width (…)``."""
    return f"{said}" if configured else f"{said}, which is no bit width (a whole number from 1 to 32)"


def _group_weights(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The weights' settings of each of compressed-tensors' config groups (``config_groups.<group>.weights``)."""
    groups = settings.get("config_groups")
    if not isinstance(groups, dict):
        return []
    weights = [group.get("weights") for group in groups.values() if isinstance(group, dict)]
    return [each for each in weights if isinstance(each, dict)]


def _targeted_bits(settings: dict[str, Any], layer: str) -> int | None:
    """The width of the compressed-tensors config group that targets ``layer``, found as compressed-tensors finds it:
    a group naming the layer itself first, then the first whose pattern matches it (``re:.*mlp.*``, from the start
    of the name), then those naming a class (``Linear``), which a checkpoint does not tell, so only where they all
    give one width; None where none of those tells it."""
    groups = settings.get("config_groups")
    targeted: list[tuple[list[Any], int | None]] = [
        (group["targets"], _bit_width(group["weights"].get("num_bits")))
        for group in (groups.values() if isinstance(groups, dict) else ())
        if isinstance(group, dict) and isinstance(group.get("targets"), list) and isinstance(group.get("weights"), dict)
    ]
    for targets, bits in targeted:
        if layer in targets:
            return bits
    for targets, bits in targeted:
        for target in targets:
            if isinstance(target, str) and target.startswith("re:"):
                with contextlib.suppress(re.error):
                    if re.match(target[3:], layer):
                        return bits
    by_class = {bits for targets, bits in targeted if any(map(_names_a_class, targets))}
    return by_class.pop() if len(by_class) == 1 else None


def _names_a_class(target: Any) -> bool:
    """Whether a compressed-tensors target is a class's name (``Linear``), not a layer's (``model.norm``)."""
    return isinstance(target, str) and target[:1].isupper() and "." not in target


def _group_bits(settings: dict[str, Any]) -> set[int | None]:
    """The widths compressed-tensors' config groups give (``config_groups.<group>.weights.num_bits``)."""
    return {_bit_width(weights.get("num_bits")) for weights in _group_weights(settings)}


def _gptq_bits(rows: int, out: int, g_idx: StoredTensor | None, qzeros: StoredTensor | None) -> tuple[int, str] | None:
    """The bit width a GPTQ layer's tensors show (its qweight is (in × bits/32, out)), and how: ``g_idx`` holds one
    group index per input, the zeros are packed along the outputs, (groups, out × bits/32); None when neither tells
    a width."""
    if g_idx is not None and g_idx.numel and (rows * 32) % g_idx.numel == 0:
        bits = _bit_width(rows * 32 // g_idx.numel)
        if bits:
            return bits, f"GPTQ: qweight's int32 rows × 32/{bits} = the inputs of its g_idx"
    if qzeros is not None and len(qzeros.shape) == 2 and (qzeros.shape[1] * 32) % out == 0:
        bits = _bit_width(qzeros.shape[1] * 32 // out)
        if bits:
            return bits, f"GPTQ: qzeros' int32 columns × 32/{bits} = the outputs of its scales"
    return None


def _dynamic_bits(settings: dict[str, Any]) -> set[Any]:
    """The widths GPTQModel's ``dynamic`` gives the layers it matches (``{"+:.*down.*": {"bits": 8}}``)."""
    dynamic = settings.get("dynamic")
    if not isinstance(dynamic, dict):
        return set()
    return {rule.get("bits") for rule in dynamic.values() if isinstance(rule, dict) and _bit_width(rule.get("bits"))}


def _packed_int_layer(plan: _Plan, prefix: str, qweight: StoredTensor) -> None:
    """GPTQ (packed along the input dimension) or AWQ (packed along the output dimension), int32 words."""
    settings = plan.config
    method = str(settings.get("quant_method", "")).lower()
    scales = plan.by_name.get(f"{prefix}.scales")
    g_idx = plan.by_name.get(f"{prefix}.g_idx")
    if len(qweight.shape) != 2 or qweight.dtype != "int32" or scales is None or len(scales.shape) != 2:
        plan.problem(qweight.name, "int32 (rows, cols) with scales expected for GPTQ/AWQ")
        return
    rows, cols = qweight.shape
    out = scales.shape[1]
    if not cols or not out:  # nothing packed, or no outputs: no packing to tell (nor to divide by)
        plan.problem(qweight.name, f"shape {qweight.shape} fits neither GPTQ nor AWQ packing of {out} outputs")
        return
    configured, said = _configured_bits(settings)
    told: tuple[int, str] | None = None  # the width the layer's own tensors show, and how
    if method == "awq" and str(settings.get("version", "")).lower() == "gemv":
        # AutoAWQ's GEMV kernels pack along the inputs: qweight (out, in × bits/32), scales (out, groups padded);
        # the padded scales tell no input count, so only the config's bits tell the width
        scheme = "AWQ"
        bits = configured
        out, inputs = rows, cols * 32 // bits if bits else None
    elif cols == out and method != "awq":  # GPTQ: qweight (in × bits/32, out)
        scheme = "GPTQ"
        # the layer's own tensors first: GPTQModel's `dynamic` gives some layers another width than the config's bits
        told = _gptq_bits(rows, out, g_idx, plan.by_name.get(f"{prefix}.qzeros"))
        bits = told[0] if told else configured
        inputs = rows * 32 // bits if bits else None
    elif out % cols == 0 or method == "awq":  # AWQ: qweight (in, out × bits/32), scales (in / group, out)
        scheme = "AWQ"
        bits = _bit_width(cols * 32 // out) if (cols * 32) % out == 0 else None
        if not bits:  # the words hold no whole width for the scales' outputs: neither tells the layer's size
            plan.problem(
                qweight.name,
                f"AWQ qweight of {cols} int32 columns holds no whole bit width (from 1 to 32) for the {out} outputs "
                "of its scales",
            )
            return
        told = bits, f"AWQ: qweight's int32 columns × 32/{bits} = the outputs of its scales"
        inputs = rows
    else:
        plan.problem(qweight.name, f"shape {qweight.shape} fits neither GPTQ nor AWQ packing of {out} outputs")
        return
    if not bits or inputs is None or (rows * 32 if scheme == "GPTQ" else cols * 32) % bits:
        reason = "the bit width cannot be told from the tensors or the config"
        if said and not configured:
            reason = "the bit width cannot be told from the tensors, and config.json's quantization_config says "
            reason += _says(configured, said)
        plan.problem(qweight.name, reason)
        return
    if told and said and told[0] != configured and told[0] not in _dynamic_bits(settings):
        plan.contradiction(
            qweight.name,
            f"config.json's quantization_config says {_says(configured, said)}, but the layer's own tensors say "
            f"{bits}-bit ({told[1]}): counted as {bits}-bit",
        )
    per_word = 32 // bits if 32 % bits == 0 else 32 / bits
    packing = f"{per_word:g} × {bits}-bit per int32 ({scheme})"
    plan.weight(scheme, qweight, (out, inputs), f"uint{bits}", packing)
    for suffix in ("qzeros", "scales", "g_idx"):
        plan.companion(scheme, f"{prefix}.{suffix}")


def _weight_shape(plan: _Plan, prefix: str) -> tuple[int, int] | None:
    """The (out, in) that compressed-tensors stores beside a packed weight (``weight_shape``: two integers), when its
    data can be read (a local file: not the Hub's headers)."""
    stored = plan.by_name.get(f"{prefix}.weight_shape")
    layouts = {"int64": "<2q", "int32": "<2i"}
    if stored is None or stored.read is None or stored.shape != (2,) or stored.dtype not in layouts:
        return None
    try:
        raw = stored.read(stored.nbytes)
    except OSError:
        return None
    if len(raw) != stored.nbytes:
        return None
    out, inputs = struct.unpack(layouts[stored.dtype], raw)
    return (out, inputs) if out >= 0 and inputs >= 0 else None


def _compressed_tensors_layer(plan: _Plan, prefix: str, packed: StoredTensor) -> None:
    """int32 words of ``bits``-bit integers (pack-quantized), or uint8 pairs of fp4 values (nvfp4-pack-quantized)."""
    configured, said = _configured_bits(plan.config)
    targeted = _targeted_bits(plan.config, prefix)
    if targeted is not None:  # a non-uniform scheme: the width of the group that names this layer
        configured, said = targeted, _field("num_bits", targeted)
    word = {"int32": 32, "uint8": 8}.get(packed.dtype)
    # NVFP4 keeps a per-tensor global scale beside the fp8 group scales; integer layouts have none. fp4 is 4-bit
    fp4 = packed.dtype == "uint8" and f"{prefix}.weight_global_scale" in plan.by_name
    # no num_bits: 4; a num_bits that is no width: only the weight's stored shape can tell
    bits = 4 if fp4 else configured or (None if said else 4)
    if len(packed.shape) != 2 or word is None or (bits and word % bits):
        shown = bits or "bits"
        plan.problem(
            packed.name, f"int32 (out, in × {shown}/32) or uint8 (out, in × {shown}/8) expected for compressed-tensors"
        )
        return
    out, words = packed.shape
    shape = (out, words * word // bits) if bits else None
    stored = None if fp4 else _weight_shape(plan, prefix)
    given = sorted(width for width in _group_bits(plan.config) if width is not None)
    if stored is None and targeted is None and len(given) > 1:
        plan.problem(packed.name, f"config.json's quantization_config gives its groups several bit widths "
                                  f"({', '.join(map(str, given))}), "
                                  "none of their targets tells this layer's, and its weight_shape cannot be read to "
                                  "tell it")  # fmt: skip
        return
    if stored is not None and stored[0] == out:
        # the weight's own shape, which a config group of another width than the first (a non-uniform scheme) or
        # inputs padded up to whole words change: the width whose words hold those inputs, the config's first
        widths = (bits, 2, 4, 8, 16)
        width = next((b for b in widths if b and word % b == 0 and -(-stored[1] // (word // b)) == words), None)
        if width is not None:
            bits, shape = width, stored
    if not bits or shape is None:  # a num_bits that is no width, and no weight_shape to tell it
        plan.problem(
            packed.name,
            "the bit width cannot be told from the tensors, and config.json's quantization_config says "
            + _says(configured, said),
        )
        return
    if said and bits not in _group_bits(plan.config) | {configured}:
        told = "an NVFP4 weight (a global scale beside it) is fp4" if fp4 else f"its weight_shape says {bits}-bit"
        plan.contradiction(
            packed.name,
            f"config.json's quantization_config says {_says(configured, said)}, but {told}: counted as "
            + ("fp4" if fp4 else f"{bits}-bit"),
        )
    dtype = "float4_e2m1fn" if fp4 else f"uint{bits}"
    plan.weight(
        "compressed-tensors",
        packed,
        shape,
        dtype,
        f"{word // bits} × {'fp4' if fp4 else f'{bits}-bit'} per {packed.dtype} (compressed-tensors)",
    )
    for suffix in (
        "weight_scale",
        "weight_zero_point",
        "weight_shape",
        "weight_g_idx",
        "weight_global_scale",
        "input_global_scale",
        "input_scale",  # static activation quantisation beside the packed weights (W4A8)
        "input_zero_point",
    ):
        plan.companion("compressed-tensors", f"{prefix}.{suffix}")


def _nvfp4_layer(plan: _Plan, prefix: str, weight: StoredTensor) -> None:
    """NVIDIA ModelOpt NVFP4: uint8 (out, in/2) holds two e2m1 values a byte along the input dimension; an e4m3 scale
    per group of 16 inputs (``weight_scale``, (out, in/16)), fp32 per-tensor ``weight_scale_2`` and ``input_scale``.
    """
    if len(weight.shape) < 2:
        plan.problem(weight.name, "uint8 (out, in/2) expected for NVFP4")
        return
    *outer, half = weight.shape
    scale = plan.by_name[f"{prefix}.weight_scale"]
    group = half * 2 // scale.shape[-1] if scale.shape and scale.shape[-1] and (half * 2) % scale.shape[-1] == 0 else 16
    plan.weight(
        "NVFP4",
        weight,
        (*outer, half * 2),
        "float4_e2m1fn",
        f"2 × fp4 per uint8, one fp8 scale per {group} values and a per-tensor fp32 scale (NVFP4)",
    )
    for suffix in _NVFP4_SCALES:
        plan.companion("NVFP4", f"{prefix}.{suffix}")


def _is_nvfp4(plan: _Plan, prefix: str, weight: StoredTensor) -> bool:
    """A uint8 weight with an fp8 group scale, a second-level ``weight_scale_2``, or a config that says NVFP4."""
    scale = plan.by_name.get(f"{prefix}.weight_scale")
    if weight.dtype != "uint8" or scale is None:
        return False
    algo = _modelopt_algos(plan.config)
    return scale.dtype.startswith("float8") or f"{prefix}.weight_scale_2" in plan.by_name or "NVFP4" in algo


def _bnb_quant_state(plan: _Plan, weight: StoredTensor) -> tuple[str, tuple[int, ...] | None]:
    """bitsandbytes keeps the 4-bit type and the weight's shape in a small JSON blob stored as a uint8 tensor."""
    for kind in ("nf4", "fp4"):
        state = plan.by_name.get(f"{weight.name}.quant_state.bitsandbytes__{kind}")
        if state is None:
            continue
        if state.read is None or state.nbytes > _MAX_QUANT_STATE_BYTES:
            return kind, None
        try:
            shape = json_loads(state.read(state.nbytes).decode("utf-8")).get("shape")
        except (OSError, ValueError, AttributeError):
            return kind, None
        if isinstance(shape, list) and all(isinstance(dim, int) and dim >= 0 for dim in shape):
            return kind, tuple(shape)
        return kind, None
    return "nf4", None


def _bnb4_layer(plan: _Plan, weight: StoredTensor) -> None:
    kind, shape = _bnb_quant_state(plan, weight)
    if shape is not None and -(-math.prod(shape) // 2) != weight.nbytes:
        plan.problem(
            weight.name, "a bitsandbytes quant_state whose shape its bytes do not hold (two 4-bit values a byte)"
        )
        return
    if shape is None:
        # two 4-bit values per byte, whatever the storage dtype (bnb_4bit_quant_storage=bfloat16 for FSDP: four per
        # element); the quant state with the real shape is unreadable
        shape = (weight.nbytes * 2,)
        plan.unread_states.append(weight.name)
    dtype = "nf4" if kind == "nf4" else "float4_e2m1fn"
    plan.weight("bitsandbytes 4-bit", weight, shape, dtype, f"2 × {kind} per uint8 (bitsandbytes 4-bit)")
    for name in plan.under(f"{weight.name}."):  # absmax, quant_map, nested_*, quant_state.*
        plan.companion("bitsandbytes 4-bit", name)


def _mxfp4_layer(plan: _Plan, prefix: str, blocks: StoredTensor) -> None:
    # gpt-oss style: <name>_blocks (..., groups, 16) uint8 holds 32 fp4 values per group; <name>_scales the e8m0 scales
    if blocks.dtype != "uint8" or len(blocks.shape) < 2:
        plan.problem(blocks.name, "uint8 (..., groups, 16) expected for MXFP4")
        return
    *outer, groups, width = blocks.shape
    plan.weight(
        "MXFP4",
        blocks,
        (*outer, groups * width * 2),
        "float4_e2m1fn",
        "2 × fp4 per uint8, one e8m0 scale per 32 values (MXFP4)",
    )
    plan.companion("MXFP4", f"{prefix}_scales")


_PACKED_SUFFIXES = ((".qweight", ".weight"), (".weight_packed", ".weight"), ("_blocks", ""))


def logical_name(name: str) -> str:
    """The name of the weight a packed tensor encodes: ``q_proj.qweight`` → ``q_proj.weight``.

    >>> logical_name("lm_head.qweight"), logical_name("experts.down_proj_blocks"), logical_name("norm.weight")
    ('lm_head.weight', 'experts.down_proj', 'norm.weight')
    """
    for stored, logical in _PACKED_SUFFIXES:
        if name.endswith(stored):
            return name[: -len(stored)] + logical
    return name


def quantized_records(
    tensors: Sequence[StoredTensor], config: dict[str, Any] | None
) -> tuple[list[TensorRecord], list[str]]:
    """Records for a checkpoint's tensors, quantised layouts recognised; and the notes that says what was found."""
    by_name = {tensor.name: tensor for tensor in tensors}
    plan = _Plan(_quantization_config(config), by_name)
    for tensor in tensors:
        name = tensor.name
        prefix, _, last = name.rpartition(".")
        if last == "qweight":
            _packed_int_layer(plan, prefix, tensor)
        elif last == "weight_packed":
            _compressed_tensors_layer(plan, prefix, tensor)
        elif last == "weight" and f"{name}.absmax" in by_name:
            _bnb4_layer(plan, tensor)
        elif last == "weight" and tensor.dtype == "int8" and f"{prefix}.SCB" in by_name:
            packing = "int8 with per-row scales (bitsandbytes 8-bit)"
            plan.weight("bitsandbytes 8-bit", tensor, tensor.shape, "int8", packing)
            for suffix in ("SCB", "weight_format"):
                plan.companion("bitsandbytes 8-bit", f"{prefix}.{suffix}")
        elif last == "weight" and _is_nvfp4(plan, prefix, tensor):
            _nvfp4_layer(plan, prefix, tensor)
        elif (
            last == "weight"
            and (tensor.dtype.startswith("float8") or tensor.dtype == "int8")
            and any(f"{prefix}.{scale}" in by_name for scale in _FP8_SCALES)
        ):
            scheme = "FP8" if tensor.dtype.startswith("float8") else "INT8"  # W8A8 int8 (compressed-tensors)
            plan.weight(scheme, tensor, tensor.shape, tensor.dtype, f"{tensor.dtype} with scale tensors ({scheme})")
            for scale in _FP8_SCALES:
                plan.companion(scheme, f"{prefix}.{scale}")
        elif name.endswith("_blocks") and f"{name[: -len('_blocks')]}_scales" in by_name:
            _mxfp4_layer(plan, name[: -len("_blocks")], tensor)
        elif tensor.dtype in _TORCH_QUANTIZED and f"{name}{PER_CHANNEL_SCALES}" in by_name:
            packing = f"{tensor.dtype} with a scale and a zero point per channel (torch.quantize_per_channel)"
            plan.weight("torch per-channel", tensor, tensor.shape, tensor.dtype, packing)
            for suffix in (PER_CHANNEL_SCALES, PER_CHANNEL_ZERO_POINTS):
                plan.companion("torch per-channel", f"{name}{suffix}")
    if plan.records:  # a quantised KV cache's scales on the attention modules, beside quantised weights
        for tensor in tensors:
            last = tensor.name.rpartition(".")[2]
            if last in _ATTENTION_SCALES and tensor.numel is not None and tensor.numel <= 1:
                plan.companion(next(iter(plan.schemes)), tensor.name)
    if not plan.records:  # nothing quantised, as in most checkpoints: every record is a plain one, in order
        records, notes = plain_records(tensors)
        return records, _scheme_notes(plan) + notes
    plain, notes = plain_records([tensor for tensor in tensors if tensor.name not in plan.records])
    plain_by_name = {record.name: record for record in plain}
    records = [plan.records.get(tensor.name) or plain_by_name[tensor.name] for tensor in tensors]
    return records, _scheme_notes(plan) + notes


def _modelopt_algos(settings: dict[str, Any]) -> set[str]:
    """The algorithms a ModelOpt ``quantization_config`` names: ``quant_algo``, at the top or under ``quantization``
    (hf_quant_config.json's shape), and per layer for ``MIXED_PRECISION``."""
    if str(settings.get("quant_method", "")).lower() != "modelopt":
        return set()
    nested = settings.get("quantization")
    algo = settings.get("quant_algo") or (nested.get("quant_algo") if isinstance(nested, dict) else None)
    algos = {str(algo).upper()} if algo else set()
    layers = settings.get("quantized_layers")
    if isinstance(layers, dict):
        algos.discard("MIXED_PRECISION")
        algos |= {str(layer.get("quant_algo")).upper() for layer in layers.values() if isinstance(layer, dict)}
    return algos


def _declared(settings: dict[str, Any]) -> tuple[str, bool]:
    """How a quantization_config reads in a note (``modelopt NVFP4``), and whether its layouts are recognised here."""
    method = str(settings.get("quant_method", "")).lower()
    algos = _modelopt_algos(settings)
    label = " ".join([method or "no quant_method", *sorted(algos)])
    known = method in _KNOWN_METHODS or (method == "modelopt" and bool(algos) and algos <= _MODELOPT_ALGOS)
    return label, known


def declared_quantization(config: Mapping[str, Any] | None) -> str | None:
    """How the quantisation a config declares reads in a note (``gptq``, ``modelopt NVFP4``); None when it declares
    none.

    >>> declared_quantization({"quantization_config": {"quant_method": "gptq", "bits": 4}}), declared_quantization({})
    ('gptq', None)
    """
    settings = _quantization_config(config)
    return _declared(settings)[0] if settings else None


def _scheme_notes(plan: _Plan) -> list[str]:
    notes = []
    label, known = _declared(plan.config) if plan.config else ("", False)
    source = f"config.json's quantization_config ({label})" if known else "the tensor names and shapes"
    for scheme in plan.schemes.values():
        logical = sum(record.numel or 0 for record in scheme.weights)
        stored = sum(record.bytes or 0 for record in scheme.weights)
        companions = sum(record.bytes or 0 for record in scheme.companions)
        weights, extra = format_count(len(scheme.weights)), format_count(len(scheme.companions))
        notes.append(
            f"quantised checkpoint: {scheme.label} recognised from {source}: {weights} packed weight(s) "
            f"hold {format_count(logical)} parameters in {format_bytes(stored)}; {extra} "
            f"scale/zero/index tensor(s) ({format_bytes(companions)}) are counted apart, as quantization tensors"
        )
    if plan.config and not known:
        found = f"the {', '.join(plan.schemes)} weights above are" if plan.schemes else "no tensor is"
        notes.append(
            f"config.json declares quantisation ({label}) that paramscope does not recognise: {found} counted as "
            "the weights they encode; other packed tensors are counted as stored (their stored elements, not the "
            "values they hold), and their scales as parameters"
        )
    elif plan.config and not plan.schemes and not plan.problems:  # a layer in a layout it cannot size says so
        notes.append(
            f"config.json declares quantisation ({label}) but no tensor is in a quantised layout paramscope "
            "recognises for it: every tensor is counted as stored (a packed tensor's stored elements, not the values "
            "it holds); weights a loader quantises when it loads are stored unquantised"
        )
    for reason, names in plan.contradictions.items():
        notes.append(f"{listed(names)}: {reason}")
    for reason, names in plan.problems.items():
        notes.append(f"{listed(names)}: {reason}: counted as stored")
    if plan.unread_states:
        names = plan.unread_states
        notes.append(
            f"bitsandbytes 4-bit: the quant_state of {format_count(len(names))} weight(s) ({listed(names)}) was "
            "absent or could not be read, so 2 values per byte are assumed and each weight's shape is given as one "
            "flat dimension"
        )
    return notes
