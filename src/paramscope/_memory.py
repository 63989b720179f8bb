"""The memory planner's arithmetic: what a model costs to store, serve and train, item by item, per device.

Every item carries a label: ``exact`` (counted from tensors), ``derived`` (a stated formula on exact counts) or
``estimate`` (a heuristic, named in its formula). Everything here works on a Report and the model's config; the
activation figures are measured elsewhere (``trace.py``) and passed in.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect as pyinspect
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, TypeVar

from . import dtypes as dtype_table
from ._cache_layers import (
    CROSS,
    REFERENCE,
    CacheLayer,
    config_class,
    language_model_config,
    size_of,
    text_config,
)
from ._checks import parsed
from ._errors import UsageError
from ._report import ModuleNode, Report, Sharding, TensorRecord
from ._units import Units, format_bytes, format_count, listed

Label = Literal["exact", "derived", "estimate"]
Where = Literal["device", "host"]
OPTIMIZERS: tuple[str, ...] = ("adamw", "adam", "sgd", "sgd-momentum", "adafactor", "adamw-8bit")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16-mixed", "fp16-mixed", "bf16-pure")

COMPUTE_FLOATS = ("float64", "float32", "float16", "bfloat16")
# Storage formats offered for conversion, after the plain dtypes of dtypes.COMMON.
_GGUF_FORMATS = ("Q8_0", "Q6_K", "Q5_K", "Q4_K", "Q4_0", "Q3_K", "Q2_K")
# bitsandbytes' 8-bit Adam keeps tensors under 4096 elements in 32 bits, and one float32 absmax per 256 values.
_BNB_MIN_8BIT_SIZE = 4096
_BNB_BLOCK = 256
_BNB_MAP = 256  # values of each of its two quantile maps (one per 8-bit code)
# The most devices (gpus, tp) a plan takes: about a hundred times the largest clusters built, far below int64.
_MAX_DEVICES = 2**24
# Values in one forward (batch × tokens): 2**48 token ids alone are 2 PiB, more than any device holds.
_MAX_VALUES = 2**48
_MAX_BYTES = 2**63 - 1  # as parse_bytes takes: a size in an int64, as torch keeps one
# Decoder layers in a config: the deepest models have a few hundred; the cache is worked out layer by layer.
MAX_LAYERS = 100_000
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")


@dataclass(frozen=True)
class MemoryItem:
    """One line of a budget: what it is, how sure, its bytes in all and on one device, and how it was worked out."""

    name: str
    label: Label
    total_bytes: int
    per_device_bytes: int
    formula: str
    where: Where = "device"


@dataclass(frozen=True)
class StorageRow:
    """What the weights take converted to one dtype or format."""

    format: str
    bits: float
    bytes: int
    label: Label
    formula: str


TRAINING_SETTINGS = ("optimizer", "precision", "grad_checkpointing", "zero", "offload_optimizer")
"""The :class:`MemorySettings` fields only a training plan uses (refused in an inference plan's settings)."""


@dataclass(frozen=True)
class MemorySettings:
    """What to plan for. ``batch``/``tokens`` describe one forward (per device); ``dtype`` the weights' dtype."""

    train: bool = False
    dtype: str | None = None
    kv_dtype: str | None = None
    batch: int = 1
    tokens: int | None = None
    optimizer: str = "adamw"
    precision: str = "bf16-mixed"
    grad_checkpointing: bool = False
    gpus: int = 1
    zero: int = 0
    tp: int = 1
    offload_optimizer: bool = False
    device_memory: int | None = None
    keep_fp32: tuple[str, ...] = ()

    def check(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.zero not in (0, 1, 2, 3):
            raise UsageError(f"ZeRO stage {self.zero} does not exist: 0, 1, 2 or 3")
        for name, value in (("tp", self.tp), ("gpus", self.gpus), ("batch", self.batch)):
            if value < 1:
                raise UsageError(f"{name} (--{name}) must be at least 1, not {value}")
        for name, value in (("tp", self.tp), ("gpus", self.gpus)):
            if value > _MAX_DEVICES:
                raise UsageError(f"{name} {value:,} is more devices than any cluster has (at most {_MAX_DEVICES:,})")
        if self.gpus % self.tp:
            raise UsageError(f"gpus (--gpus) {self.gpus:,} must be a multiple of tp (--tp) {self.tp:,}")
        for name, dtype, stored in (("dtype", self.dtype, "weights"), ("kv_dtype", self.kv_dtype, "a KV cache")):
            if dtype is not None and parsed(name, dtype_table.lookup, dtype).category in ("bool", "complex"):
                flag = name.replace("_", "-")
                raise UsageError(f"{name} (--{flag}) {dtype!r} is not a storage format for {stored}")
        cache = None if self.kv_dtype is None else dtype_table.lookup(self.kv_dtype)
        if cache is not None and cache.category == "block" and cache.name not in _CACHE_BLOCK_FORMATS:
            *first, last = _CACHE_BLOCK_FORMATS
            raise UsageError(
                f"kv_dtype (--kv-dtype) {self.kv_dtype!r} is a format of weights, not of a KV cache: "
                f"llama.cpp keeps one in {', '.join(first)} or {last} blocks, or in a float dtype"
            )
        if self.tokens is not None and self.tokens < 1:
            raise UsageError(f"the sequence length must be at least 1, not {self.tokens}")
        if self.tokens is not None and self.batch * self.tokens >= _MAX_VALUES:
            raise UsageError(f"{self.batch:,} × {self.tokens:,} tokens is more than any device could hold")
        if self.batch >= _MAX_VALUES:
            raise UsageError(f"batch {self.batch:,} is more than any device could hold")
        if self.device_memory is not None and self.device_memory <= 0:
            raise UsageError(f"device_memory (--device-memory) must be at least 1 byte, not {self.device_memory:,} (a "
                             "size is read in whole bytes, rounded down)")  # fmt: skip
        if self.device_memory is not None and self.device_memory > _MAX_BYTES:
            raise UsageError(f"device_memory (--device-memory) {self.device_memory:,} is too large (at most "
                             f"{_MAX_BYTES:,})")  # fmt: skip
        inference = [f"{name} (--{name.replace('_', '-')})" for name in ("dtype", "kv_dtype", "keep_fp32")
                     if getattr(self, name)]  # fmt: skip
        if self.train and inference:
            named = inference[0] if len(inference) == 1 else f"{', '.join(inference[:-1])} and {inference[-1]}"
            raise UsageError(
                f"{named} {'describes' if len(inference) == 1 else 'describe'} inference; training's bytes come from "
                "precision (--precision: fp32, bf16-mixed, fp16-mixed, bf16-pure)"
            )
        default = MemorySettings()
        given = [f"--{name.replace('_', '-')}" + ("" if isinstance(value, bool) else f" {value}")
                 for name in TRAINING_SETTINGS if (value := getattr(self, name)) != getattr(default, name)]  # fmt: skip
        if given and not self.train:  # the inference plan has no use for them: refused rather than ignored
            raise UsageError(f"{given[0]} applies to training: add --train (train=True) or leave it out")
        if self.offload_optimizer and not self.zero:
            raise UsageError("--offload-optimizer needs ZeRO stage 1, 2 or 3 (DeepSpeed offloads the optimizer only "
                             "under ZeRO): add --zero 1 (zero=1) or leave it out")  # fmt: skip
        if self.offload_optimizer and self.precision == "bf16-pure":
            raise UsageError("--offload-optimizer steps an fp32 copy of the parameters with fp32 states (DeepSpeed's "
                             "CPU optimizer), which bf16-pure training keeps none of: plan it with --precision "
                             "bf16-mixed (precision='bf16-mixed')")  # fmt: skip

    def compute_dtype(self, stored: str | None = None) -> str:
        """The dtype an inference forward computes in: the weights' when it is one models compute in (``dtype``, or
        without one the ``stored`` dtype of most of the weights: a float32 model computes in float32); bf16 for
        weight-only formats (int4, fp8, GGUF's), which are unpacked to it, and for a model without a compute dtype.

        >>> MemorySettings(dtype="fp8").compute_dtype(), MemorySettings().compute_dtype("float32")
        ('bfloat16', 'float32')
        """
        weights = self.dtype if self.dtype is not None else stored
        name = None if weights is None else dtype_table.lookup(weights).name
        return name if name in COMPUTE_FLOATS else "bfloat16"

    def cache_dtype(self, stored: str | None = None) -> str:
        """The KV cache's dtype: ``kv_dtype``, else the :meth:`compute_dtype` (of ``stored`` weights)."""
        return self.kv_dtype if self.kv_dtype is not None else self.compute_dtype(stored)


@dataclass(frozen=True)
class MemoryPlan:
    """A budget: the items, their sum on one device (and in host memory), and whether it fits."""

    scenario: Literal["inference", "training"]
    settings: MemorySettings
    items: tuple[MemoryItem, ...]
    storage: tuple[StorageRow, ...]
    per_device_bytes: int
    host_bytes: int
    fits: bool | None = None
    """With ``device_memory``: whether ``per_device_bytes`` fits in it; None without it, and when the model has
    tensors of unknown size (lazy) or the plan leaves out an item it was asked for (``left_out``) and the rest fits:
    it cannot be told."""
    left_out: tuple[str, ...] = ()
    """The items the settings ask for that could not be worked out: ``"activations"`` when the forward that measures
    them ran and failed, ``"KV cache"`` when the config cannot size it, ``"generation cache"`` for the hidden-state
    caches of Reformer and XLNet. The notes say why, and ``per_device_bytes`` is only a lower bound."""
    advice: tuple[str, ...] = ()
    """When it does not fit: by how much, and what to cut first."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    complete: bool = True
    """Whether ``per_device_bytes`` is the whole plan's: no tensors of unknown size, and nothing ``left_out``. When
    not, it is a lower bound (shown as ``≥``)."""

    def item(self, name: str) -> MemoryItem:
        """The item called ``name`` (``"weights"``, ``"KV cache"``, …). Raises ``KeyError`` when there is none."""
        for item in self.items:
            if item.name == name:
                return item
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, under a report's ``memory`` key."""
        settings = asdict(self.settings)
        settings["keep_fp32"] = list(self.settings.keep_fp32)
        if not self.settings.train:  # defaults an inference plan does not use: none of them planned for
            settings.update(dict.fromkeys(TRAINING_SETTINGS))
        return {
            "scenario": self.scenario,
            "settings": settings,
            "items": [asdict(item) for item in self.items],
            "per_device_bytes": self.per_device_bytes,
            "host_bytes": self.host_bytes,
            "fits": self.fits,
            "left_out": list(self.left_out),
            "advice": list(self.advice),
            "storage": [asdict(row) for row in self.storage],
            "notes": list(self.notes),
        }


# The block formats llama.cpp keeps a KV cache in (its --cache-type-k and --cache-type-v, blocks of 32 values, each
# head's row a whole number of them); its k-quants and other i-quants are formats of weights alone.
_CACHE_BLOCK_FORMATS = ("Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "IQ4_NL")


def _bytes_of(dtype: str) -> float:
    """Bytes per value of a dtype name or alias (``bf16``: 2, ``int4``: 0.5)."""
    return dtype_table.lookup(dtype).bits / 8


def _parameters(report: Report) -> list[TensorRecord]:
    return [record for record in report.tensors if record.kind == "parameter" and record.numel is not None]


def _kept(record: TensorRecord, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for name in (record.name, *record.aliases) for pattern in patterns)


def check_keep_fp32(report: Report, patterns: Sequence[str]) -> None:
    """Refuse a ``keep_fp32`` pattern that matches no parameter name: a typo (``'*nrom*'``) would keep nothing in
    float32, unseen."""
    params = [record for record in report.tensors if record.kind == "parameter"]
    for pattern in patterns:
        if not any(_kept(record, (pattern,)) for record in params):
            such = f" (parameter names look like {params[0].name!r})" if params else ""
            raise UsageError(f"keep_fp32 (--keep-fp32) {pattern!r} matches no parameter name{such}")


# llama.cpp quantises a tensor row by row (its last dimension): a type whose block does not divide the rows is
# replaced by this one (llama-quant.cpp's llama_tensor_get_type), or by F16 where that one's block does not divide
# them either, or where none is listed (llama-quantize refuses the tensor; convert_hf_to_gguf.py writes it in F16).
_GGUF_FALLBACK = {
    **dict.fromkeys(("TQ1_0", "TQ2_0"), "Q4_0"),
    **dict.fromkeys(
        ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M", "Q2_K", "Q3_K", "IQ4_XS"), "IQ4_NL"
    ),
    "Q4_K": "Q5_0",
    "Q5_K": "Q5_1",
    "Q6_K": "Q8_0",
}


def _gguf_type(dtype: dtype_table.DType, row: int) -> dtype_table.DType:
    """The GGUF block format llama.cpp stores a tensor of rows of ``row`` values in when asked for ``dtype`` (see
    above)."""
    if row % dtype.block_elements == 0:
        return dtype
    fallback = _GGUF_FALLBACK.get(dtype.name)
    entry = dtype_table.lookup(fallback) if fallback is not None else None
    return entry if entry is not None and row % entry.block_elements == 0 else dtype_table.lookup("float16")


def _transposed(report: Report) -> frozenset[str]:
    """The weights a model stores as (in, out), transformers' ``Conv1D`` (GPT-2's), which convert_hf_to_gguf.py
    transposes: llama.cpp's rows are their first dimension, not their last."""
    paths = {node.path for node in report.modules if node.type == "Conv1D"}
    return frozenset(
        record.name
        for record in _parameters(report)
        if any(name.endswith(".weight") and name.rpartition(".")[0] in paths for name in (record.name, *record.aliases))
    )


def converted(
    params: Sequence[TensorRecord], name: str, keep_fp32: Sequence[str] = (), flipped: frozenset[str] = frozenset()
) -> tuple[int, str]:
    """The bytes of ``params`` converted to dtype or format ``name``, and how: tensors matching ``keep_fp32`` stay
    in float32, and so do 1-D tensors (norms, biases) in the GGUF block formats, as llama.cpp keeps them; in those,
    a tensor whose rows (its last dimension; its first for the names in ``flipped``, see :func:`_transposed`) are not
    whole blocks takes llama.cpp's fallback type (Q4_K's is Q5_0) or F16. Integer and boolean tensors stay as stored
    in a plain dtype, as ``Module.to(dtype)`` and quantisers leave them (convert_hf_to_gguf.py casts every tensor)."""
    dtype = dtype_table.lookup(name)
    gguf = dtype.category == "block"
    values = kept = unknown_rows = 0
    fallen: dict[str, int] = {}  # values stored in a fallback type, by its name
    as_stored: dict[str, list[int]] = {}  # values and bytes of tensors left in their own dtype, by its name
    for record in params:
        numel = record.numel or 0
        # a quantised weight whose shape is given flat (its real one unread): its rows are not known
        flat_weight = gguf and record.packing is not None and record.shape is not None and len(record.shape) <= 1
        if not gguf and _left_as_stored(record):
            counted = as_stored.setdefault(record.dtype, [0, 0])
            counted[0] += numel
            counted[1] += record.bytes or 0
        elif _kept(record, keep_fp32) or (gguf and _one_dimensional(record)):
            kept += numel
        elif (
            gguf
            and record.shape is not None
            and not flat_weight  # at the format's own rate
            and (stored := _gguf_type(dtype, record.shape[0 if record.name in flipped else -1])) is not dtype
        ):
            fallen[stored.name] = fallen.get(stored.name, 0) + numel
            values += stored.nbytes(numel)
        else:
            values += dtype.nbytes(numel) if gguf else dtype.packed_nbytes(numel)
            unknown_rows += numel if flat_weight else 0
    left = sum(count for count, _ in as_stored.values())
    native = sum(r.numel or 0 for r in params) - kept - left - sum(fallen.values())
    terms = []
    if native or not (fallen or kept or left):  # none in the format itself: the terms below are all there is
        terms.append(f"{format_count(native)} values at {dtype.bits:g} bits")
        if dtype.category in ("int", "uint", "quantized") or dtype.name.startswith(("float8", "float4", "nf4")):
            terms[-1] += ", scales not included"  # a quantiser adds its own (per group, per channel; NF4's absmax)
        if unknown_rows:
            terms[-1] += (f" ({format_count(unknown_rows)} of them of weights whose rows cannot be read, all taken "
                          "as whole blocks)")  # fmt: skip
    terms += [f"{format_count(count)} in {stored}" for stored, count in fallen.items()]
    if fallen:
        terms[-1] += " (rows not whole blocks: llama.cpp's fallback)"
    if kept:
        terms.append(f"{format_count(kept)} kept in float32")
    terms += [f"{format_count(count)} left in {stored}" for stored, (count, _) in as_stored.items()]
    if as_stored:
        terms[-1] += " (not floating point: not converted)"
    return values + 4 * kept + sum(size for _, size in as_stored.values()), " + ".join(terms)


def _one_dimensional(record: TensorRecord) -> bool:
    """Whether a tensor is 1-D (a norm's, a bias), which llama.cpp keeps in float32: not a quantised weight whose
    shape is given flat because its real one cannot be read (bitsandbytes 4-bit without its quant_state)."""
    return record.shape is not None and len(record.shape) <= 1 and record.packing is None


def _left_as_stored(record: TensorRecord) -> bool:
    """Whether a conversion leaves a tensor in its own dtype: an integer or boolean one that is not a quantised weight
    (whose record describes the logical weight)."""
    return record.packing is None and _category(record) in ("int", "uint", "bool")


def storage_table(report: Report, keep_fp32: Sequence[str] = ()) -> tuple[StorageRow, ...]:
    """The weights converted to each common dtype and GGUF block format (see :func:`converted`)."""
    params, flipped = _parameters(report), _transposed(report)
    rows = []
    for name in (*dtype_table.COMMON, *_GGUF_FORMATS):
        size, formula = converted(params, name, keep_fp32, flipped)
        rows.append(StorageRow(name, dtype_table.lookup(name).bits, size, "derived", formula))
    return tuple(rows)


def _weights_bytes(
    params: Sequence[TensorRecord], dtype: str | None, keep_fp32: Sequence[str], flipped: frozenset[str] = frozenset()
) -> tuple[int, str]:
    if dtype is None:
        stored = sum(record.bytes or 0 for record in params)
        dtypes = ", ".join(dict.fromkeys(record.dtype for record in params if record.dtype))
        count = format_count(sum(r.numel or 0 for r in params))
        return stored, f"{count} parameters in their dtypes ({dtypes})" if dtypes else f"{count} parameters"
    size, formula = converted(params, dtype, keep_fp32, flipped)
    return size, f"{dtype}: {formula}"


# the decoder's positions: Whisper's max_target_positions (its max_source_positions are the encoder's)
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx", "max_target_positions")


def _positions(config: Mapping[str, Any] | None) -> tuple[str, int] | None:
    """The longest sequence a config declares, and the key it is under (None where it declares none).

    >>> _positions({"n_positions": 1024}), _positions({"rope_theta": 1e4})
    (('n_positions', 1024), None)
    """
    if not config:
        return None
    config = _language_config(config)
    for key in _POSITION_KEYS:
        value = size_of(config.get(key))
        if value is not None:
            return key, value
    return None


def main_dtype(report: Report) -> str | None:
    """The dtype that holds most of the parameters' bytes, as stored (None without parameters)."""
    by_dtype = report.by_dtype
    return max(by_dtype, key=lambda dtype: by_dtype[dtype].bytes) if by_dtype else None


# EncoderDecoderModel and its vision and speech kin pair any encoder with a generating decoder
_GENERATING = ("CausalLM", "LMHeadModel", "ForConditionalGeneration", "Seq2SeqLM", "EncoderDecoderModel")


def generates(config: Mapping[str, Any]) -> bool:
    """Whether a config describes a model that generates with a KV cache: a decoder, not an encoder such as BERT.

    >>> generates({"architectures": ["LlamaForCausalLM"]}), generates({"architectures": ["BertModel"]})
    (True, False)
    """
    model_type = config.get("model_type")
    text = text_config(config)
    if text is not None:  # a multimodal model: its language model generates
        # the model's own architectures, not its text config's (Fuyu's names none: it was taken for an encoder)
        config = {**config, **text, "architectures": config.get("architectures") or text.get("architectures")}
    architectures = config.get("architectures")
    if isinstance(architectures, list) and architectures:
        # transformers' classes only for a config of its own (a model type): a GGUF file's plan does not import it
        own = isinstance(config.get("model_type"), str)
        return any(_generating_class(str(name), own) for name in architectures)
    if isinstance(model_type, str) and model_type in _types_of_no_generating_model():
        return False  # a detector (D-FINE, DETR: is_encoder_decoder), an encoder with kv heads (EuroBERT)
    if config.get("is_decoder") or config.get("is_encoder_decoder"):
        return True
    if isinstance(model_type, str) and model_type in _types_of_decoder_only_lm():
        return True  # GPT-NeoX, OPT, Falcon: config.json saved by the config class, which writes no architectures
    return "num_key_value_heads" in config or "n_layer" in config  # Llama- and GPT-style configs without a class


@functools.lru_cache(maxsize=1)
def _types_of_decoder_only_lm() -> frozenset[str]:
    """The model types transformers builds a causal LM of and no masked LM (BERT's type has both, and BERT is an
    encoder unless its config says ``is_decoder``). Empty when transformers cannot be imported."""
    modeling_auto = _auto_mappings()
    if modeling_auto is None:
        return frozenset()
    causal = modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    return frozenset(map(str, causal)) - frozenset(map(str, modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES))


def _auto_mappings() -> Any:
    """transformers' module of auto mappings (model type to class names), or None where it cannot be imported: not
    installed, or an import that fails; no model type is then known to be of a kind."""
    try:
        from transformers.models.auto import modeling_auto
    except Exception:
        return None
    return modeling_auto


def _generating_class(name: str, transformers_class: bool = True) -> bool:
    """Whether a model class generates text: its name says so (``...ForCausalLM``), or, for a ``transformers_class``,
    transformers builds it as a causal or a sequence-to-sequence language model under a name that does not
    (BertGenerationDecoder, SeamlessM4TForTextToText).

    A masked LM is not one, whatever its name says (FlaubertWithLMHeadModel: its ``generate()`` passes its forward
    no cache, and each step runs the whole sequence again).

    >>> _generating_class("LlamaForCausalLM"), _generating_class("BertForMaskedLM")
    (True, False)
    """
    if transformers_class and name in _masked_lm_classes():
        return False
    return any(mark in name for mark in _GENERATING) or (transformers_class and name in _language_model_classes())


@functools.lru_cache(maxsize=1)
def _masked_lm_classes() -> frozenset[str]:
    """The classes transformers' AutoModelForMaskedLM builds and none of its generating auto classes does (XLM's
    head is both, and keeps a cache); empty when transformers cannot be imported."""
    try:
        from transformers.models.auto import modeling_auto
    except Exception:  # not installed, or an import that fails: the names alone tell
        return frozenset()
    masked = modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES.values()
    return frozenset(str(name) for names in masked for name in ([names] if isinstance(names, str) else names)
                     if str(name) not in _language_model_classes())  # fmt: skip


@functools.lru_cache(maxsize=1)
def _language_model_classes() -> frozenset[str]:
    """The classes transformers' AutoModelForCausalLM and AutoModelForSeq2SeqLM build, by name, and those of its
    other auto classes of models that generate text (``_GENERATING_MAPPINGS``: NemotronH_Omni_Reasoning_V3, which
    AutoModelForImageTextToText builds); empty when transformers cannot be imported."""
    try:
        from transformers.models.auto import modeling_auto
    except Exception:  # not installed, or an import that fails: the names alone tell
        return frozenset()
    mappings = [modeling_auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES, _causal_lm_classes(),
                *(getattr(modeling_auto, name, {}) for name in _GENERATING_MAPPINGS)]  # fmt: skip
    return frozenset(str(name) for mapping in mappings for names in mapping.values()
                     for name in ([names] if isinstance(names, str) else names))  # fmt: skip


# transformers' auto mappings of the models that generate text (beside the causal and sequence-to-sequence LMs)
_GENERATING_MAPPINGS = ("MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES", "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES",
                        "MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES", "MODEL_FOR_VISION_2_SEQ_MAPPING_NAMES")  # fmt: skip
# ...those of models that generate other tokens (ImageGPT's pixels, speech), whose fields are left to tell
_OTHER_GENERATING_MAPPINGS = (
    "MODEL_FOR_CAUSAL_IMAGE_MODELING_MAPPING_NAMES",
    "MODEL_FOR_TEXT_TO_WAVEFORM_MAPPING_NAMES",
    "MODEL_FOR_TEXT_TO_SPECTROGRAM_MAPPING_NAMES",
)
# ...and those of base models (a backbone, a multimodal model's text or vision model), which say no more than that
# transformers knows the model type
_BASE_MAPPINGS = ("MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES", "MODEL_FOR_IMAGE_MAPPING_NAMES",
                  "MODEL_FOR_BACKBONE_MAPPING_NAMES")  # fmt: skip


@functools.lru_cache(maxsize=1)
def _types_of_no_generating_model() -> frozenset[str]:
    """The model types transformers builds task models of (an ``AutoModelFor...`` mapping names it), none of which
    generates: detectors (D-FINE, DETR), masked LMs, classifiers. A type it builds a causal LM or any other generating
    model of, or only a base model of, is not one. Empty when transformers cannot be imported."""
    modeling_auto = _auto_mappings()
    if modeling_auto is None:
        return frozenset()
    found: set[str] = set()
    generating: set[str] = set()
    for name in dir(modeling_auto):
        mapping = getattr(modeling_auto, name)
        if not (name.startswith("MODEL_FOR_") and name.endswith("_MAPPING_NAMES") and isinstance(mapping, Mapping)):
            continue
        if name in _BASE_MAPPINGS:
            continue
        for model_type, classes in mapping.items():
            found.add(str(model_type))
            for cls in [classes] if isinstance(classes, str) else classes:
                if _generating_class(str(cls)) or name in (*_GENERATING_MAPPINGS, *_OTHER_GENERATING_MAPPINGS):
                    generating.add(str(model_type))
    return frozenset(found - generating)


def _language_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """A multimodal model's language model's config (``text_config``, without the outer config's fields: see
    :func:`language_model_config`); a composite encoder-decoder's (EncoderDecoderModel: an ``encoder`` and a
    ``decoder`` config of their own) with its decoder's, still an encoder-decoder of its own architectures."""
    if text_config(config) is not None:
        return language_model_config(config)
    decoder = _composite_part(config, "decoder")
    if decoder is not None:
        return {**config, **decoder, "is_encoder_decoder": True, "architectures": config.get("architectures")}
    return config


# The keys of a composite encoder-decoder's encoder and decoder configs: EncoderDecoderModel's, MusicGen's (a text
# encoder, beside its audio codec), Canary's and Dia's.
_COMPOSITE_KEYS = (("encoder", "decoder"), ("text_encoder", "decoder"), ("encoder_config", "decoder_config"))


def _composite_part(config: Mapping[str, Any], part: str) -> Mapping[str, Any] | None:
    """The ``encoder`` or ``decoder`` config of a composite encoder-decoder, which holds both; None for others."""
    for keys in _COMPOSITE_KEYS:
        encoder, decoder = (config.get(key) for key in keys)
        if isinstance(encoder, Mapping) and isinstance(decoder, Mapping):
            return encoder if part == "encoder" else decoder
    return None


# A flat encoder-decoder config's decoder fields under the names transformers' get_text_config(decoder=True) gives
# them (it strips the prefix of the others); T5's num_decoder_layers, which that leaves alone, is the decoder's too.
_DECODER_NAMES = {
    "decoder_layers": "num_hidden_layers",
    "decoder_attention_heads": "num_attention_heads",
    "num_decoder_layers": "num_hidden_layers",
    "num_decoder_attention_heads": "num_attention_heads",  # ProphetNet's
}


def _is_encoder_decoder(config: Mapping[str, Any]) -> bool:
    """Whether a config (its language model's) describes an encoder-decoder (T5, BART, Whisper): as it says, or as
    its transformers config class says by default."""
    config = _language_config(config)
    if "is_encoder_decoder" in config:
        return bool(config["is_encoder_decoder"])
    model_type = config.get("model_type")
    cls = config_class(model_type) if isinstance(model_type, str) else None
    return getattr(cls, "is_encoder_decoder", False) is True


def _decoder_of_an_encoder_decoder(fields: Mapping[str, Any]) -> bool:
    """Whether a config is an encoder-decoder's made a decoder alone: BartForCausalLM, ProphetNetForCausalLM and
    their kin set ``is_decoder`` (and clear ``is_encoder_decoder``) on the encoder-decoder's config and build its
    decoder, of ``decoder_layers`` (``num_decoder_layers``) layers with its own heads; the config's
    ``num_hidden_layers`` and ``num_attention_heads`` are still the encoder's.

    >>> _decoder_of_an_encoder_decoder({"is_decoder": True, "decoder_layers": 3}), _decoder_of_an_encoder_decoder({})
    (True, False)
    """
    return fields.get("is_decoder") is True and any(size_of(fields.get(key)) for key in _DECODER_NAMES)


def standard_fields(config: Mapping[str, Any], decoder: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """A config's fields (its language model's) with transformers' standard names added, and for each field the
    config's own key it was read from.

    A config class may keep a standard field under a name of its own and map the standard name to it
    (``attribute_map``): MPT's ``num_attention_heads`` is its ``n_heads``, T5's ``head_dim`` its ``d_kv``. Reading
    ``config.num_attention_heads`` goes through the map; ``to_dict()`` and config.json keep the class's own names,
    and the class's map adds the standard ones here. With ``decoder``, a flat encoder-decoder config (BART, T5)
    gives its decoder's fields, as transformers' ``get_text_config(decoder=True)`` reads them (``decoder_layers``
    as ``num_hidden_layers``, ``decoder_attention_heads`` as ``num_attention_heads``). Without transformers, or
    for a model type it does not know, the fields are as the config names them.

    >>> fields, sources = standard_fields({"is_encoder_decoder": True, "encoder_layers": 12, "decoder_layers": 6})
    >>> fields["num_hidden_layers"], sources["num_hidden_layers"]
    (6, 'decoder_layers')
    """
    fields = dict(_language_config(config))
    sources = {key: key for key in fields}
    model_type = fields.get("model_type")
    cls = config_class(model_type) if isinstance(model_type, str) else None
    aliases = getattr(cls, "attribute_map", None)
    aliases = {name: stored for name, stored in aliases.items() if isinstance(stored, str)} if isinstance(
        aliases, dict) else {}  # fmt: skip
    if decoder and (_is_encoder_decoder(config) or _decoder_of_an_encoder_decoder(fields)):
        for key, value in list(fields.items()):
            if value is not None and (key in _DECODER_NAMES or key.startswith("decoder_")):
                name = _DECODER_NAMES.get(key, key.removeprefix("decoder_"))
                stored = aliases.get(name, name)  # written where the class reads the name from, as transformers does
                fields[stored], sources[stored] = value, key
    for name, stored in aliases.items():
        if stored in fields:
            fields[name], sources[name] = fields[stored], sources[stored]
    return fields, sources


def attention_heads(config: Mapping[str, Any] | None) -> tuple[int, ...]:
    """The counts of attention heads per layer a transformer's config names (its language model's): one, or for an
    encoder-decoder its encoder's and its decoder's when they differ; empty when it names none.

    >>> attention_heads({"num_attention_heads": 32}), attention_heads({"n_head": 12}), attention_heads({})
    ((32,), (12,), ())
    """
    if not config:
        return ()
    counts = []
    encoder = _composite_part(config, "encoder")
    for decoder in (False, True):
        fields, _ = standard_fields(encoder if encoder is not None and not decoder else config, decoder)
        heads = size_of(fields.get("num_attention_heads") or fields.get("n_head"))
        if heads is not None and heads not in counts:
            counts.append(heads)
    return tuple(counts)


def decoder_layers(config: Mapping[str, Any], limit: int = MAX_LAYERS) -> int | None:
    """The layers of a decoder's config (its language model's; an encoder-decoder's decoder), ``None`` when it names
    none. A count beyond any model (over ``limit``, 100,000) is refused: the cache is worked out layer by layer.

    >>> decoder_layers({"num_hidden_layers": 32}), decoder_layers({"n_layer": 12}), decoder_layers({})
    (32, 12, None)
    """
    fields, sources = standard_fields(config)
    key = next((key for key in _LAYER_KEYS if fields.get(key)), None)
    layers = None if key is None else size_of(fields.get(key))
    if key is not None and layers is not None and layers > limit:
        raise UsageError(f"{sources[key]} {layers:,} is more layers than any model has (at most {limit:,})")
    return layers


def _kv_heads(config: Mapping[str, Any], heads: int) -> tuple[int, str]:
    """The key/value heads a layer caches, and a remark when the model caches other than it computes."""
    if config.get("new_decoder_architecture"):
        # transformers' FalconAttention (Falcon-40B, 180B) repeats its num_kv_heads key/value heads for every query
        # head before it caches them; llama.cpp caches num_kv_heads
        kv_heads = size_of(config.get("num_kv_heads"))
        if kv_heads is not None and kv_heads != heads:
            return heads, (f"transformers' Falcon caches its {kv_heads} key/value heads repeated for each of the "
                           f"{heads} query heads")  # fmt: skip
        return heads, ""
    if config.get("multi_query"):  # Falcon and GPT-BigCode: one key/value head, whatever num_kv_heads says
        return 1, ""
    for key in ("num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num"):
        value = size_of(config.get(key))
        if value is not None:
            return value, ""
    return heads, ""


def _check_kv_split(tp: int, kv_heads: int) -> None:
    """Refuse a tensor-parallel degree that splits the key/value heads as no engine does: vLLM and Megatron give each
    rank whole key/value heads (``tp`` dividing them) or one head copied to several ranks (``tp`` a multiple)."""
    if kv_heads % tp and tp % kv_heads:
        raise UsageError(
            f"tp ({tp}) and the model's {kv_heads} key/value heads divide neither the other: each device "
            "holds whole key/value heads, or a copy of one (vLLM and Megatron refuse the split)"
        )


def _kv_heads_per_layer(config: Mapping[str, Any], layers: int) -> list[int] | None:
    """Each layer's key/value heads, when the config gives a list of them (0 for a layer without attention).

    >>> _kv_heads_per_layer({"num_key_value_heads": [2, 4, 0]}, 3), _kv_heads_per_layer({"num_key_value_heads": 2}, 3)
    ([2, 4, 0], None)
    """
    counts = config.get("num_key_value_heads")
    if not isinstance(counts, list) or len(counts) != layers:
        return None
    none = [count for count in counts if size_of(count) is None]  # layers without attention count 0
    if len(none) == len(counts) or any(type(count) is not int or count != 0 for count in none):
        return None
    return [int(count) for count in counts]


def kv_cache(
    config: Mapping[str, Any] | None, batch: int, tokens: int, kv_dtype: str, *, states_counted: bool = False
) -> tuple[int, str, int] | None:
    """Bytes of the key/value cache for ``tokens`` tokens of ``batch`` sequences, from a decoder's config.

    2 × layers × kv_heads × head_dim × tokens × batch × bytes; GQA's key/value heads (and multi-query attention),
    an explicit ``head_dim``, each layer's cache as transformers' DynamicCache keeps it (sliding-window and chunked
    layers capped at their window; linear-attention and Mamba layers keep a recurrent state instead, named in the
    formula, as an item of its own when ``states_counted``; layers without a cache left out), and MLA's compressed
    latent (DeepSeek: kv_lora_rank + qk_rope_head_dim per token, once for keys and values) are taken into account.
    The fields are read under their standard names (:func:`standard_fields`: MPT's ``n_heads``, T5's ``d_kv``); an
    encoder-decoder's is the decoder's self-attention cache (:func:`cross_attention_cache` gives the rest); a GGUF
    file's, the cells llama.cpp allocates (:func:`llama_cpp_cells`). ``None`` when the config does not describe a
    decoder's attention; a UsageError for more layers than any model has (see :func:`decoder_layers`).
    """
    from ._cache_layers import cache_layers

    shape = _decoder_shape(config)
    if config is None or shape is None:
        return None
    fields, layers, heads, hidden = shape
    size = _bytes_of(kv_dtype)
    kinds = cache_layers(config, layers)
    prefix, remarks = _cached_prefix(fields)
    held = tokens + prefix  # the tokens each layer is given
    if isinstance(config.get("gguf_architecture"), str):  # a GGUF file: the cells llama.cpp allocates
        lengths, tokens_text = _llama_cpp_cells(kinds, tokens, remarks)
        span = _Span(llama_cpp_cells(tokens), tokens_text, "cells")
    else:
        lengths, tokens_text = [layer.tokens(held) for layer in kinds], _tokens_text(tokens, prefix)
        span = _Span(held, tokens_text, "tokens")
        capping = [layer for layer in kinds if layer.keeps_keys and layer.type != REFERENCE]
        windows = sorted({layer.window for layer in capping if layer.window and layer.window < held})
        for window in windows:
            capped = [layer for layer in capping if layer.window == window]
            names = sorted({layer.type.replace("_attention", "") for layer in capped})
            remarks.append(f"{len(capped)} {'/'.join(names)} layers capped at {format_count(window)} tokens")
        for window in sorted({layer.window or 0 for layer in kinds if layer.type == REFERENCE}):
            count = sum(1 for layer in kinds if layer.type == REFERENCE and (layer.window or 0) == window)
            last = f"the last {format_count(window)}" if window else "those"
            remarks.append(f"{count} reference_sliding layers keep every prompt token, and {last} generated after it: "
                           "counted at the full context, the most they hold")  # fmt: skip
    indexed = [layer for layer in kinds if layer.indexer and layer.keeps_keys]
    # sparse attention's indexer keys (one head, every token): added to each shape's total below
    indexer_size = size
    if fields.get("model_type") in ("dots3_note", "dots3_note_text") and size < 4:
        # Dots 3 computes its indexed layers' rotary embedding in float32 (transformers' Dots3NoteTextModel), which
        # promotes its indexer's keys: they are cached in float32 whatever the model computes in
        indexer_size = 4
    by_key: dict[int, list[int]] = {}  # the tokens each indexed layer holds, by the length of its indexer's key
    for layer, length in zip(kinds, lengths, strict=True):
        if layer.indexer and layer.keeps_keys:
            by_key.setdefault(layer.indexer, []).append(length)
    indexer_total = sum(key * sum(held) for key, held in by_key.items()) * batch * indexer_size / size
    extra = ""  # the formula's term for them
    if indexed:
        terms, once = span.grouped(by_key, lambda key: f"{key} indexer key")
        keys = terms[0] if len(terms) == 1 else f"({' + '.join(terms)})"
        extra = f" + {keys}{once} × {batch} × {indexer_size:g} B"
        remarks.append(f"{len(indexed)} indexed_attention layers' sparse-attention indexers keep a key per token"
                       + (", Dots 3's in float32" if indexer_size != size else ""))  # fmt: skip
    repeats = sum(1 for layer in kinds if layer.repeat)
    if repeats:
        remarks.append(f"{repeats} of them the caches of looped layers again, for the passes after the first")
    stateful = [layer for layer in kinds if layer.keeps_state]
    if stateful:
        names = sorted({layer.type for layer in stateful})
        counted = "the recurrent state item" if states_counted else "not counted"
        remarks.append(f"{len(stateful)} {'/'.join(names)} layers keep a fixed-size recurrent state, {counted}")
    crossing = sum(1 for layer in kinds if layer.type == CROSS)
    if crossing:
        remarks.append(f"{crossing} cross_attention layers keep the keys and values of the image's tokens instead, "
                       "not counted")  # fmt: skip
    empty = sum(1 for layer in kinds if not (layer.keeps_keys or layer.keeps_state or layer.type == CROSS))
    if empty:
        remarks.append(f"{empty} layers keep no cache (no attention, or another layer's cache)")
    unknown = _unknown_kinds(kinds)
    if unknown:
        remarks.append(f"{', '.join(unknown)} layers counted as full attention")
    if _is_encoder_decoder(config):
        remarks.append("the decoder's self-attention; its cross-attention cache is not included")
    latent = size_of(fields.get("kv_lora_rank"))
    if latent is not None:  # multi-head latent attention
        rope = size_of(fields.get("qk_rope_head_dim")) or 0
        groups: dict[tuple[int, int], list[int]] = {}  # each layer's latent and rotary key (Dots 3's sliding layers')
        total = 0
        for layer, length in zip(kinds, lengths, strict=True):
            # 0: none of its own (a NoPE layer's rotary key; a layer attending to another's latent), not the model's
            kept, key = layer.latent
            own = (latent if kept is None else kept, rope if key is None else key)
            total += length * batch * sum(own)
            if layer.keeps_keys and any(own):
                groups.setdefault(own, []).append(length)
        # llama.cpp's MLA cache: keys of the latent and the rotary key, values of the latent
        _refuse_partial_blocks(kv_dtype, [sum(own) for own in groups], [own[0] for own in groups])
        borrowing = sum(1 for layer in kinds if layer.keeps_keys and layer.latent == (0, 0))
        if borrowing:  # Mistral Large 4's kv_source_layers: counted once, in the layer that keeps it
            remarks.append(f"{borrowing} layers attend to an earlier layer's latent, keeping only their indexer's keys")
        remarks.insert(0, "MLA's compressed cache, as serving engines keep it")
        terms, once = span.grouped(groups, lambda own: f"({own[0]} + {own[1]})")
        each = f"{terms[0]} latent" if len(terms) == 1 else f"({' + '.join(terms)}) latent"
        formula = f"{each}{once} × {batch} × {size:g} B{extra}{_remark(remarks)}"
        return math.ceil((total + indexer_total) * size), formula, 1  # one latent for all heads: not split by TP
    head_dim, value_dim = _head_dims(fields, heads, hidden)
    key_lengths = [layer.head_dim or head_dim for layer in kinds if layer.keeps_keys]
    value_lengths = key_lengths if value_dim == head_dim else [value_dim] * len(key_lengths)
    _refuse_partial_blocks(kv_dtype, key_lengths, value_lengths)
    if any(layer.head_dim or layer.kv_heads for layer in kinds):  # layers of their own shapes (per_layer_config)
        size_found, formula, fewest = _heterogeneous_cache(fields, kinds, lengths, heads, (head_dim, value_dim),
                                                           batch, span, size, remarks, extra)  # fmt: skip
        return size_found + math.ceil(indexer_total * size), formula, fewest
    per_layer = _kv_heads_per_layer(fields, layers)
    if per_layer is not None:  # each layer's own count (OpenELM): summed layer by layer, at each layer's length
        total = sum(length * count for length, count in zip(lengths, per_layer, strict=True)) * (head_dim + value_dim)
        kv_heads = min(count for count in per_layer if count)  # the fewest any layer splits across devices
        by_count: dict[int, list[int]] = {}  # the layers of each count of kv heads, by the tokens each holds
        for layer, length, count in zip(kinds, lengths, per_layer, strict=True):
            if layer.keeps_keys and count:
                by_count.setdefault(count, []).append(length)
        terms, once = span.grouped(by_count, lambda count: f"{count} kv heads")
        heads_text = terms[0] if len(terms) == 1 else f"({' + '.join(terms)})"
        each = f"2 × {heads_text} × {head_dim}"
        if value_dim != head_dim:
            each = f"{heads_text} × ({head_dim} + {value_dim})"
        formula = f"{each}{once} × {batch} × {size:g} B{extra}{_remark(remarks)}"
        return math.ceil((total * batch + indexer_total) * size), formula, kv_heads
    kv_heads, why = _kv_heads(fields, heads)
    values = sum(lengths) * kv_heads * (head_dim + value_dim) * batch + indexer_total
    layers_text, held_text = span.of([length for layer, length in zip(kinds, lengths, strict=True) if layer.keeps_keys])
    if value_dim == head_dim:
        each = f"2 × {layers_text}{kv_heads} kv heads × {head_dim}"
    else:
        each = f"{layers_text}{kv_heads} kv heads × ({head_dim} + {value_dim})"
    formula = (f"{each} × {held_text} × {batch} × {size:g} B{extra}"
               f"{_remark([why] * bool(why) + remarks)}")  # fmt: skip
    return math.ceil(values * size), formula, int(kv_heads)


def _refuse_partial_blocks(kv_dtype: str, keys: Iterable[int], values: Iterable[int]) -> None:
    """Refuse a cache in a block format (Q8_0, Q4_0: blocks of 32 values) whose key or value of a head, ``keys`` and
    ``values`` long, is no whole number of blocks: llama.cpp quantises each head's row on its own, and refuses such a
    cache when it makes the context ("K cache type q4_0 with block size 32 does not divide n_embd_head_k=80").

    >>> _refuse_partial_blocks("Q4_0", [128], [128])
    >>> try:
    ...     _refuse_partial_blocks("Q8_0", [128], [80])
    ... except UsageError as error:
    ...     print(error)  # doctest: +NORMALIZE_WHITESPACE
    kv_dtype (--kv-dtype) 'Q8_0' keeps a cache in blocks of 32 values, and this model's values are 80 values a head:
    llama.cpp refuses such a cache; use a float dtype
    """
    entry = dtype_table.lookup(kv_dtype)
    if entry.category != "block":
        return
    for name, lengths in (("keys", keys), ("values", values)):
        partial = sorted({length for length in lengths if length % entry.block_elements})
        if partial:
            raise UsageError(
                f"kv_dtype (--kv-dtype) {kv_dtype!r} keeps a cache in blocks of {entry.block_elements} values, and "
                f"this model's {name} are {' or '.join(map(str, partial))} values a head: llama.cpp "
                "refuses such a cache; use a float dtype"
            )


_Key = TypeVar("_Key")


@dataclass(frozen=True)
class _Span:
    """How a KV cache formula writes the tokens its layers hold: ``full`` (the context's, as ``context`` says it)
    or fewer (a window's), in ``unit``; layers that hold different numbers each with their own, so that the formula
    multiplies out to the size."""

    full: int
    context: str
    unit: str

    def text(self, lengths: Sequence[int]) -> str:
        """The tokens each of layers holding ``lengths`` holds, when they all hold as many (the context's if none)."""
        length = lengths[0] if lengths else self.full
        return self.context if length == self.full else f"{format_count(length)} {self.unit}"

    def grouped(self, groups: Mapping[_Key, Sequence[int]], shape: Callable[[_Key], str]) -> tuple[list[str], str]:
        """A term for each group of layers (the tokens its layers hold, by its key): its layers, what ``shape``
        writes of its key and, when the groups hold different numbers of tokens, its own tokens; and the tokens'
        term written once after their sum when they hold as many (``" × 11 tokens"``), else ``""``."""
        if len({length for lengths in groups.values() for length in lengths}) <= 1:
            terms = [f"{len(lengths)} layers × {shape(key)}" for key, lengths in groups.items()]
            return terms, f" × {self.text(next(iter(groups.values()), []))}"
        terms = []
        for key, lengths in groups.items():
            layers, held = self.of(lengths)
            terms.append(f"{layers}{shape(key)} × {held}")
        return terms, ""

    def sum(self, lengths: Sequence[int]) -> str:
        """The tokens of layers holding ``lengths``: one number, or ``(1 layers × 64 tokens + 6 layers × 8 tokens)``."""
        counts = Counter(lengths)
        if len(counts) <= 1:
            return self.text(lengths)
        terms = [f"{count} layers × {self.text([length])}" for length, count in sorted(counts.items(), reverse=True)]
        return f"({' + '.join(terms)})"

    def of(self, lengths: Sequence[int]) -> tuple[str, str]:
        """The layers' term (``"4 layers × "``, empty when they hold different numbers) and their tokens' term."""
        if len(set(lengths)) <= 1:
            return f"{len(lengths)} layers × ", self.text(lengths)
        return "", self.sum(lengths)


def _unknown_kinds(kinds: Sequence[CacheLayer]) -> list[str]:
    """The layer types among ``kinds`` whose cache paramscope does not know how to size (counted as full attention)."""
    from ._cache_layers import KNOWN

    return sorted({layer.type for layer in kinds if layer.type not in KNOWN})


def unknown_cache_layers(config: Mapping[str, Any]) -> list[str]:
    """The layer types of a decoder's config that :func:`kv_cache` counts as full attention, not knowing their own
    cache (DeepSeek V4's compressed attention); empty when it knows them all."""
    from ._cache_layers import cache_layers

    shape = _decoder_shape(config)
    return [] if shape is None else _unknown_kinds(cache_layers(config, shape[1]))


LLAMA_CPP_PAD = 256
"""llama.cpp pads a context's cells, and a sliding-window cache's, to a multiple of 256 (``GGML_PAD``)."""
LLAMA_CPP_UBATCH = 512
"""llama.cpp's default ``n_ubatch``, the most tokens one step of its batch processes."""


def llama_cpp_cells(tokens: int, window: int | None = None) -> int:
    """The cells llama.cpp's KV cache gives a sequence of ``tokens`` tokens in a layer (each of ``-np`` sequences
    a stream of its own, as ``kv_unified`` off keeps them): ``llama_context`` pads its context to 256 cells; a
    sliding-window layer's cache (``llama_kv_cache_iswa``) holds the window and one ubatch (``n_ubatch``, 512 by
    default), padded to 256, and never more than the context's. (llama.cpp caps n_ubatch at a shorter context, whose
    cells the window and that many tokens never fall short of.)

    >>> llama_cpp_cells(1000), llama_cpp_cells(8192, window=1024), llama_cpp_cells(128, window=16)
    (1024, 1536, 256)
    """
    cells = -(-tokens // LLAMA_CPP_PAD) * LLAMA_CPP_PAD
    if window is None:
        return cells
    return min(cells, -(-(window + LLAMA_CPP_UBATCH) // LLAMA_CPP_PAD) * LLAMA_CPP_PAD)


def _llama_cpp_cells(kinds: Sequence[CacheLayer], tokens: int, remarks: list[str]) -> tuple[list[int], str]:
    """Each layer's cells in llama.cpp's KV cache for a GGUF model (see :func:`llama_cpp_cells`), the formula's text
    for the full-attention layers' cells, and a remark for each window's."""
    full = llama_cpp_cells(tokens)
    lengths = [llama_cpp_cells(tokens, layer.window) if layer.keeps_keys else 0 for layer in kinds]
    for window in sorted({layer.window for layer in kinds if layer.keeps_keys and layer.window}):
        cells = llama_cpp_cells(tokens, window)
        if cells < full:
            capped = [layer for layer in kinds if layer.keeps_keys and layer.window == window]
            names = sorted({layer.type.replace("_attention", "") for layer in capped})
            remarks.append(f"{len(capped)} {'/'.join(names)} layers hold {format_count(cells)} cells: the "
                           f"{format_count(window)}-token window + llama.cpp's {LLAMA_CPP_UBATCH}-token ubatch, "
                           f"padded to {LLAMA_CPP_PAD}")  # fmt: skip
    if full == tokens:  # in cells, as a window's layers are written: a formula sums one unit
        return lengths, f"{format_count(full)} cells"
    padded = f"{format_count(tokens)} tokens, padded to {LLAMA_CPP_PAD} by llama.cpp"
    return lengths, f"{format_count(full)} cells ({padded})"


def _cached_prefix(fields: Mapping[str, Any]) -> tuple[int, list[str]]:
    """Tokens a model puts before every input and caches with it, and a remark saying so (none for most models).

    CPM-Ant's forward (transformers' CpmAntModel) prepends ``prompt_length`` prompt tokens to the input ids, and its
    cache keeps their keys and values as it does the text's; no config field says so in general, hence its own case.

    >>> _cached_prefix({"model_type": "cpmant", "prompt_length": 32})
    (32, ['CPM-Ant prepends 32 prompt tokens to every input and caches them'])
    """
    prompt = size_of(fields.get("prompt_length"))
    if fields.get("model_type") != "cpmant" or prompt is None:
        return 0, []
    return prompt, [f"CPM-Ant prepends {prompt} prompt tokens to every input and caches them"]


def _tokens_text(tokens: int, prefix: int) -> str:
    return f"({format_count(tokens)} + {prefix}) tokens" if prefix else f"{format_count(tokens)} tokens"


def _heterogeneous_cache(
    fields: Mapping[str, Any],
    kinds: Sequence[CacheLayer],
    lengths: Sequence[int],
    heads: int,
    dims: tuple[int, int],
    batch: int,
    span: _Span,
    size: float,
    remarks: list[str],
    extra: str = "",
) -> tuple[int, str, int]:
    """:func:`kv_cache` of a decoder whose layers differ in their key/value heads or head length (transformers'
    ``per_layer_config``: Gemma 4's full-attention layers have keys twice as long as its sliding ones), layer by layer;
    in the formula, the caching layers grouped by their shape."""
    kv_heads, why = _kv_heads(fields, heads)
    head_dim, value_dim = dims
    groups: dict[tuple[int, int, int], list[int]] = {}
    total = 0
    for layer, length in zip(kinds, lengths, strict=True):
        own = layer.head_dim or head_dim
        shape = (layer.kv_heads or kv_heads, own, own if value_dim == head_dim else value_dim)
        total += length * shape[0] * (shape[1] + shape[2])
        if layer.keeps_keys:
            groups.setdefault(shape, []).append(length)
    same = all(keys == values for _, keys, values in groups)
    terms, once = span.grouped(
        groups, lambda shape: f"{shape[0]} kv heads × " + (str(shape[1]) if same else f"({shape[1]} + {shape[2]})")
    )
    each = " + ".join(terms) if len(terms) == 1 else f"({' + '.join(terms)})"
    each = f"2 × {each}" if same else each
    formula = f"{each}{once} × {batch} × {size:g} B{extra}{_remark([why] * bool(why) + remarks)}"
    fewest = min((kv for kv, _, _ in groups), default=kv_heads)  # the fewest any layer splits across devices
    return math.ceil(total * batch * size), formula, int(fewest)


def cross_attention_cache(config: Mapping[str, Any] | None, batch: int, kv_dtype: str) -> tuple[int, str] | None:
    """Bytes an encoder-decoder's generation cache adds per position of the encoder's output, and how: each decoder
    layer keeps the keys and values of the encoder's output for its cross-attention (transformers'
    ``EncoderDecoderCache``), with the decoder's heads; so does a decoder built with cross-attention
    (``add_cross_attention``: a VisionEncoderDecoder's). ``None`` for other models."""
    shape = _decoder_shape(config)
    if config is None or shape is None or not (_is_encoder_decoder(config) or _crosses_attention(config)):
        return None
    fields, layers, heads, hidden = shape
    kv_heads, _ = _kv_heads(fields, heads)
    head_dim, value_dim = _head_dims(fields, heads, hidden)
    size = _bytes_of(kv_dtype)
    dims = f"2 × {head_dim}" if value_dim == head_dim else f"({head_dim} + {value_dim})"
    formula = f"{layers} layers × {kv_heads} kv heads × {dims} × {batch} × {size:g} B"
    return math.ceil(layers * kv_heads * (head_dim + value_dim) * batch * size), formula


def _crosses_attention(config: Mapping[str, Any]) -> bool:
    """Whether a decoder's config has it built with cross-attention to encoder states it is given
    (``add_cross_attention``), which its cache keeps too."""
    return _language_config(config).get("add_cross_attention") is True


def _decoder_shape(config: Mapping[str, Any] | None) -> tuple[dict[str, Any], int, int, int] | None:
    """A decoder's fields under their standard names (see :func:`standard_fields`), its layers, attention heads and
    hidden size; ``None`` when the config does not give them."""
    if not config:
        return None
    layers = decoder_layers(config)
    fields, _ = standard_fields(config)
    heads = size_of(fields.get("num_attention_heads") or fields.get("n_head"))
    hidden = size_of(fields.get("hidden_size") or fields.get("n_embd") or fields.get("d_model"))
    if layers is None or heads is None or hidden is None:
        return None
    return fields, layers, heads, hidden


def _head_dims(fields: Mapping[str, Any], heads: int, hidden: int) -> tuple[int, int]:
    """The lengths of a key and of a value per head: ``head_dim`` (CPM-Ant's ``dim_head``; and ``v_head_dim``) as
    given, else hidden / heads."""
    head_dim = size_of(fields.get("head_dim")) or size_of(fields.get("dim_head")) or hidden // heads
    return head_dim, size_of(fields.get("v_head_dim")) or head_dim  # keys and values of their own lengths (GGUF)


def _remark(remarks: Sequence[str]) -> str:
    return f" ({'; '.join(remarks)})" if remarks else ""


def _values(record: TensorRecord) -> int:
    """The real values a parameter holds: a complex element is two (torch's optimizers step its real view, and its
    gradient and states are complex as it is)."""
    numel = record.numel or 0
    entry = dtype_table.find(record.dtype)  # None for a dtype newer than the table, or an unreadable packed weight
    return 2 * numel if entry is not None and entry.category == "complex" else numel


def _complex_note(params: Sequence[TensorRecord]) -> str:
    return " (a complex parameter counts as 2 values)" if any(_values(r) != (r.numel or 0) for r in params) else ""


def _optimizer_states(trainable: Sequence[TensorRecord], optimizer: str, state_bytes: float) -> tuple[int, str, Label]:
    """Bytes of an optimizer's state tensors, as torch (and bitsandbytes) lay them out."""
    count = sum(_values(record) for record in trainable)
    tensors = len(trainable)
    step = 4 * tensors  # a float32 scalar `step` per parameter tensor (torch's Adam family and Adafactor)
    if optimizer in ("adam", "adamw"):
        total = math.ceil(2 * count * state_bytes) + step
        return (
            total,
            f"2 × {format_count(count)} (exp_avg, exp_avg_sq) × {state_bytes:g} B + {tensors} × 4 B step",
            "derived",
        )
    if optimizer == "sgd":
        return 0, "no state (plain SGD)", "derived"
    if optimizer == "sgd-momentum":
        return math.ceil(count * state_bytes), f"{format_count(count)} (momentum_buffer) × {state_bytes:g} B", "derived"
    if optimizer == "adafactor":
        # factored second moments for matrices (a row and a column vector per trailing 2-D slice: shapes [:-1] and
        # [:-2] + [-1:]), full for vectors; as products, since a tensor with a 0 in its shape still has the other
        values = 0
        for record in trainable:
            shape = record.shape or ()
            if len(shape) >= 2:
                values += math.prod(shape[:-1]) + math.prod(shape[:-2]) * shape[-1]
            else:
                values += _values(record)
        total = math.ceil(values * state_bytes) + step
        return (
            total,
            f"{format_count(values)} factored second moments × {state_bytes:g} B + {tensors} × 4 B step",
            "derived",
        )
    # adamw-8bit (bitsandbytes' Optimizer2State.init_state): two uint8 states and two float32 absmax per block for
    # large tensors, two float32 states otherwise; its `step` is a Python int, no tensor; the two quantile maps
    # (qmap1, qmap2: 256 float32 values each) are the optimizer's own, shared by every tensor in 8 bits
    large = [record for record in trainable if (record.numel or 0) >= _BNB_MIN_8BIT_SIZE]
    small = sum(_values(record) for record in trainable if (record.numel or 0) < _BNB_MIN_8BIT_SIZE)
    large_count = sum(_values(record) for record in large)
    blocks = sum(-(-_values(record) // _BNB_BLOCK) for record in large)
    maps = 2 * _BNB_MAP * 4 if large else 0
    total = 2 * large_count + 2 * 4 * blocks + 2 * 4 * small + maps
    formula = (f"2 × {format_count(large_count)} × 1 B + 2 × {format_count(blocks)} absmax × 4 B + 2 × "
               f"{format_count(small)} small × 4 B")  # fmt: skip
    if maps:
        formula += f" + 2 × {_BNB_MAP} × 4 B quantile maps"
    formula += (f" (bitsandbytes' layout: tensors under {format_count(_BNB_MIN_8BIT_SIZE)} values in 32 bits, an "
                f"absmax per {_BNB_BLOCK})")  # fmt: skip
    return total, formula, "estimate"


_PRECISION_BYTES = {  # (weights, gradients, optimizer states), bytes per value; master copy in fp32 when mixed
    "fp32": (4.0, 4.0, 4.0),
    "bf16-mixed": (2.0, 2.0, 4.0),
    "fp16-mixed": (2.0, 2.0, 4.0),
    "bf16-pure": (2.0, 2.0, 2.0),
}
COMPUTE_DTYPES = {"fp32": "float32", "bf16-mixed": "bfloat16", "fp16-mixed": "float16", "bf16-pure": "bfloat16"}


# The items made from the model's tensors (the rest are measured, or sized from the config): each a lower bound where
# some of its tensors are of unknown size, as the total is.
_FROM_TENSORS = ("weights", "gradients", "fp32 master weights", "optimizer states", "gathered parameters",
                 "quantization metadata", "buffers")  # fmt: skip


def made_from_tensors(item: MemoryItem) -> bool:
    """Whether ``item`` is made from the model's tensors: a lower bound where some are of unknown size."""
    return item.name.partition(" (")[0] in _FROM_TENSORS


def _item(
    name: str, label: Label, total: int, formula: str, split: tuple[int, str] = (1, ""), where: Where = "device"
) -> MemoryItem:
    """An item; ``split`` is how many ways it is divided across devices, and why (``(8, "ZeRO 3")``)."""
    ways, why = split
    if ways > 1:
        formula += f"; ÷ {ways} ({why})"
    return MemoryItem(name, label, total, -(-total // ways), formula, where)


def block_stacks(report: Report) -> list[list[ModuleNode]]:
    """The model's stacks of repeated blocks, each the children of a container numbered 0, 1, 2, … (a ModuleList,
    or the same names in a checkpoint), in order: every such container not inside another (an encoder-decoder's
    encoder and decoder layers both, a vision tower's beside a language model's; not the experts inside a layer).
    Children of which some hold no parameters are layers in a row, not blocks: an ``nn.Sequential`` of a Linear, a
    ReLU and a Linear."""
    children: dict[str, list[ModuleNode]] = {}
    for node in report.modules:
        if node.path:
            children.setdefault(node.path.rpartition(".")[0], []).append(node)
    numbered = {parent: nodes for parent, nodes in children.items() if len(nodes) >= 2 and all(
        node.path.rpartition(".")[2].isdigit() and node.params for node in nodes)}  # fmt: skip
    # "" is the root's: every other lies inside it
    outermost = [parent for parent in numbered if not any(
        other != parent and (not other or parent.startswith(f"{other}.")) for other in numbered)]  # fmt: skip
    stacks = [sorted(numbered[parent], key=lambda node: int(node.path.rpartition(".")[2])) for parent in outermost]
    # blocks of modules of their own (transformer layers) where there are some: layers in a row beside them (an MLP
    # head's Linears) stay in the root unit, as a wrap policy by block class leaves them
    composite = [stack for stack in stacks if all(node.path in children for node in stack)]
    return composite or stacks


def _gathered(report: Report, trainable: Sequence[TensorRecord], precision: str, tp: int) -> MemoryItem:
    """ZeRO 3 / FSDP full shard all-gather the weights of the block running and prefetch the next one (the one before
    it in the backward), so the most held at once is the largest sum of two adjacent blocks of a stack; the
    parameters outside the repeated blocks (embeddings, final norm, head) belong to the root unit, which stays
    gathered through the forward. Two distinct blocks and the rest never add up to more than the model. A model
    with no repeated blocks is one unit, gathered whole. Each parameter in its training bytes (a frozen one's, see
    :func:`_frozen_weights`)."""
    params = _parameters(report)
    trained = {record.name for record in trainable}
    weight_bytes = _PRECISION_BYTES[precision][0]
    sizes = {record.name: _training_bytes(record, precision, record.name not in trained) for record in params}
    uniform = all(record.name in trained for record in params)  # every value in the precision's bytes
    total = sum(sizes.values())
    note = _complex_note(params)
    name, split = "gathered parameters (ZeRO 3)", (tp, f"TP {tp}")
    stacks = block_stacks(report)
    if not stacks:
        whole = (f"{format_count(sum(map(_values, params)))} parameters × {weight_bytes:g} B" if uniform
                 else f"{format_bytes(math.ceil(total))} of parameters")  # fmt: skip
        return _item(name, "estimate", math.ceil(total), f"{whole} (one unit: the whole model){note}", split)
    # each parameter's block: its name's longest prefix that is a block's path
    block_of = {node.path: node.path for stack in stacks for node in stack}
    within: dict[str, float] = {}
    for record in params:
        prefix = record.name
        while prefix and prefix not in block_of:
            prefix = prefix.rpartition(".")[0]
        if prefix:
            within[prefix] = within.get(prefix, 0) + sizes[record.name]
    pairs = [(stack[index], stack[index + 1]) for stack in stacks for index in range(len(stack) - 1)]
    one, two = max(pairs, key=lambda pair: within.get(pair[0].path, 0) + within.get(pair[1].path, 0))  # the earliest
    a, b = within.get(one.path, 0), within.get(two.path, 0)
    outside = total - sum(within.values())

    def shown(size: float) -> str:
        return format_count(round(size / weight_bytes)) if uniform else format_bytes(math.ceil(size))

    pair = f"2 × {shown(a)} of {one.path} and {two.path}" if a == b else (
        f"{shown(a)} of {one.path} + {shown(b)} of {two.path}")  # fmt: skip
    formula = (f"({pair}, the largest two adjacent blocks, running and prefetched, + {shown(outside)} outside the "
               f"blocks){f' × {weight_bytes:g} B' if uniform else ''}{note}")  # fmt: skip
    return _item(name, "estimate", math.ceil(a + b + outside), formula, split)


def _sharded_ways(sharding: Sharding) -> int | None:
    """How many ranks a sharded tensor is split across (its mesh's dimensions it is sharded on); None when the mesh
    is not known."""
    if sharding.mesh is None:
        return None
    if sharding.scheme != "dtensor":  # FSDP1's flat shards and ZeRO-3's partitions split over the whole group
        split = sharding.placements in (("FSDP1 flat shard",), ("ZeRO-3 partition",))
        return math.prod(sharding.mesh) if split else 1  # not FSDP1's NO_SHARD
    return math.prod(size for size, placement in zip(sharding.mesh, sharding.placements, strict=False)
                     if "Shard(" in placement)  # fmt: skip


def _held_weights(
    report: Report, settings: MemorySettings, weight_bytes: float, notes: list[str] | None = None
) -> tuple[int, int] | None:
    """For a model sharded as the plan shards it (ZeRO 3 over its data-parallel ranks, no tensor parallelism): the
    values the rank holding most holds in its parameter storages, padding included, and their bytes in the plan's
    precision. FSDP2 pads each parameter's shard to whole rows of ceil(rows / N), FSDP1 and ZeRO-3 pad their flat
    partitions, so every rank holds as much as this one, and more than Ψ/N when the sizes do not divide; a DTensor
    split unevenly without padding leaves the first ranks more (torch's chunks), which a note in ``notes`` says.
    None for any other model or plan."""
    held = report.totals.local_param_bytes
    dp = settings.gpus // settings.tp
    if held is None or settings.zero < 3 or settings.tp != 1 or dp < 2:
        return None
    params = _parameters(report)
    # split dp ways, or held whole on every rank (replicated, or left out of the sharding)
    if {_sharded_ways(record.sharding) for record in params if record.sharding is not None} - {1} != {dp}:
        return None
    # the storages' bytes are in the parameters' own dtypes: one size of value for all of them, or not exact
    value_bytes = {(record.bytes or 0) / _values(record) for record in params if _values(record)}
    if len(value_bytes) != 1:
        return None
    values = round(held / value_bytes.pop())
    most = _most_values(params)
    if most is not None and most > values:
        if notes is not None:
            notes.append(f"the model's DTensors are split unevenly, without padding: this rank holds "
                         f"{format_count(values)} parameter values, the rank holding most {format_count(most)} "
                         "(torch's chunks: the first ranks), whose share the plan is of")  # fmt: skip
        values = most
    return values, math.ceil(values * weight_bytes)


_SHARD = re.compile(r"Shard\((\d+)\)")


def _most_values(params: Sequence[TensorRecord]) -> int | None:
    """The most parameter values a rank holds, by the DTensors' placements: ``Shard(d)`` over a mesh dimension of N
    ranks leaves ceil(size / N) of dimension d on the first ranks, as torch chunks it; None where a placement is not
    one of those (``_StridedShard``) or a shape is not known."""
    most = 0
    for record in params:
        sharding, values = record.sharding, _values(record)
        if sharding is None or sharding.scheme != "dtensor":
            most += values if sharding is None else math.ceil(values * sharding.local_numel / max(record.numel or 1, 1))
            continue
        if record.shape is None or sharding.mesh is None:
            return None
        shape = list(record.shape)
        for ranks, placement in zip(sharding.mesh, sharding.placements, strict=False):
            found = _SHARD.fullmatch(placement)
            if found is not None and int(found[1]) < len(shape):
                dim = int(found[1])
                shape[dim] = -(-shape[dim] // ranks)
            elif not placement.startswith(("Replicate", "Partial")):
                return None
        most += math.prod(shape) * values // max(record.numel or 1, 1)
    return most


# the categories of dtypes whose tensors can take gradients: torch refuses requires_grad for the others (integers,
# and packed or block-quantised weights, which no precision casts)
_TRAINABLE_CATEGORIES = ("float", "complex")


def _category(record: TensorRecord) -> str | None:
    """The category of a tensor's dtype (``float``, ``int``, ``block``...); None for one the table does not know."""
    entry = dtype_table.find(record.dtype)
    return None if entry is None else entry.category


def _can_train(record: TensorRecord) -> bool:
    """Whether a parameter can take gradients: not a quantised weight (one a scheme packs, GPTQ's, bitsandbytes'
    4-bit, MXFP4's), nor of a dtype torch gives none or of fewer bits than a byte; one of a dtype the table does not
    know is taken to (as all were)."""
    if record.packing is not None:
        return False
    entry = dtype_table.find(record.dtype)
    return entry is None or (entry.category in _TRAINABLE_CATEGORIES and entry.bits >= 8)


def _kept_as_stored(record: TensorRecord, precision: str) -> bool:
    """Whether a frozen parameter is held as stored in training: an integer or quantised one (no precision casts it),
    or any under mixed precision (autocast casts no weights); the others are cast to the precision's dtype."""
    return not _can_train(record) or precision.endswith("-mixed")


def _training_bytes(record: TensorRecord, precision: str, frozen: bool) -> float:
    """A parameter's bytes in training: a trainable one's in the precision's weights (a value of a mixed precision's
    in 2 B, its float32 master copy an item of its own); a frozen one's as :func:`_frozen_weights` counts them."""
    if frozen and _kept_as_stored(record, precision):
        return record.bytes or 0
    return _values(record) * _PRECISION_BYTES[precision][0]


def _frozen_weights(frozen: Sequence[TensorRecord], precision: str) -> tuple[int, str]:
    """The bytes of the frozen parameters in training, and how they are counted: integer and quantised ones as
    stored (no precision casts them); floating-point ones in the precision's dtype (``fp32``: the model in float32,
    ``bf16-pure``: cast to bfloat16), or under mixed precision as stored (autocast casts no weights)."""
    stored = [record for record in frozen if _kept_as_stored(record, precision)]
    cast = [record for record in frozen if not _kept_as_stored(record, precision)]
    value_bytes = _PRECISION_BYTES[precision][0]
    size = math.ceil(sum(_training_bytes(record, precision, frozen=True) for record in frozen))
    parts = []
    if cast:
        parts.append(f"{format_count(sum(map(_values, cast)))} × {value_bytes:g} B")
    if stored:
        dtypes = ", ".join(dict.fromkeys(record.dtype for record in stored))
        parts.append(f"{format_count(sum(record.numel or 0 for record in stored))} as stored ({dtypes})")
    return size, " + ".join(parts)


def _training_items(
    report: Report, settings: MemorySettings, notes: list[str], trained: frozenset[str] | None = None
) -> list[MemoryItem]:
    params = _parameters(report)
    weight_bytes, grad_bytes, state_bytes = _PRECISION_BYTES[settings.precision]
    trainable = [record for record in params if record.trainable is not False and _can_train(record)]
    frozen = [record for record in params if record.trainable is False or not _can_train(record)]
    if settings.optimizer == "adafactor" and any(_values(record) != (record.numel or 0) for record in trainable):
        raise UsageError("adafactor does not support complex parameters (torch refuses them): choose another optimizer")
    # the others take no gradients: a source that says which are trained (a live model) has them frozen already
    untrainable = [record for record in params if not _can_train(record)]
    if report.totals.trainable is None and untrainable:
        dtypes = ", ".join(dict.fromkeys(record.dtype for record in untrainable))
        notes.append("the source does not say which parameters are trained: those of floating-point dtypes are "
                     f"counted as trainable, and {len(untrainable)} of dtypes that take no gradients ({dtypes}: "
                     f"quantised or integer) as frozen: {listed([record.name for record in untrainable])}")  # fmt: skip
    elif report.totals.trainable is None:
        notes.append("the source does not say which parameters are trained: all of them are counted as trainable")
    unreached = [record for record in trainable if trained is not None and record.name not in trained]
    # Every one unreached where the forward reached some tensors: the source names them otherwise than the forward's
    # model does (a base model's checkpoint under a config with a head, whose loader adds a prefix), nothing to say;
    # where it reached none at all (an output computed under no_grad), that is said
    if unreached and (len(unreached) < len(trainable) or not trained):
        # Counted all the same: one forward does not show what training uses (LayerDrop, a branch or head chosen per
        # batch, a loss computed outside the forward), and ZeRO, FSDP and DDP allocate for every parameter anyway.
        values = format_count(sum(_values(record) for record in unreached))
        every = len(unreached) == len(trainable)
        notes.append(f"{'all ' if every else ''}{len(unreached)} trainable tensor(s), {values} values, got no gradient "
                     "from this forward (not in its autograd graph: unused, used under no_grad, or on a branch it did "
                     f"not take{'; a backward from its output has nothing to reach' if every else ''}); they are "
                     "counted in gradients and optimizer states all the same, which torch gives a parameter only once "
                     f"a backward reaches it: {listed([record.name for record in unreached])}")  # fmt: skip
    dp, tp = settings.gpus // settings.tp, settings.tp

    def split(zero_stage: int) -> tuple[int, str]:
        """How many ways an item is split when ZeRO shards it from ``zero_stage`` on, and tensor parallelism."""
        sharded = settings.zero >= zero_stage and dp > 1
        reasons = [f"ZeRO {settings.zero} over {dp}"] * sharded + [f"TP {tp}"] * (tp > 1)
        return (dp if sharded else 1) * tp, " × ".join(reasons)

    items = []
    total = sum(_values(record) for record in trainable)
    weights = math.ceil(total * weight_bytes)
    formula = f"{format_count(total)} parameters × {weight_bytes:g} B ({settings.precision}){_complex_note(params)}"
    if frozen:
        size, how = _frozen_weights(frozen, settings.precision)
        weights += size
        formula = f"{format_count(total)} trainable × {weight_bytes:g} B ({settings.precision}) + frozen {how}"
        formula += _complex_note(params)
        if settings.precision.endswith("-mixed") and any(_can_train(record) for record in frozen):
            compute = COMPUTE_DTYPES[settings.precision]
            notes.append(f"{settings.precision}: the frozen floating-point parameters are counted as stored, as "
                         f"autocast holds them; a framework that casts the whole model to {compute} (DeepSpeed) "
                         "holds them in 2 B a value")  # fmt: skip
    # a rank's shards priced at one size of value: the weights where frozen ones are priced as trainable ones (cast
    # to the precision's dtype); the gradients and states, which the frozen ones have none of, where none is frozen
    priced_alike = all(_training_bytes(record, settings.precision, frozen=True) == _values(record) * weight_bytes
                       for record in frozen)  # fmt: skip
    # the model sharded as the plan shards it, whatever the pricing (its note only where the plan uses its share)
    sharded_alike = _held_weights(report, settings, weight_bytes, notes if priced_alike else None)
    held_weights = sharded_alike if priced_alike else None
    held = None if frozen else held_weights
    if held_weights is None:
        items.append(_item("weights", "derived", weights, formula, split(3)))
    else:
        stored, on_device = held_weights
        formula += (f"; this rank's shards as the model is sharded over {dp} ranks, padding included: "
                    f"{format_count(stored)} values × {weight_bytes:g} B")  # fmt: skip
        items.append(MemoryItem("weights", "derived", weights, on_device, formula))
    local = report.totals.local_param_bytes
    if local is not None and sharded_alike is None:  # sharded otherwise than the plan shards it
        planned = items[-1].per_device_bytes
        notes.append(f"this rank holds {format_bytes(local)} of parameter storages as the model is sharded now; the "
                     f"plan's weights, {format_bytes(planned)} a device, are of the split it plans (--gpus, --zero, "
                     "--tp), not of that sharding")  # fmt: skip
    if report.totals.quantization_bytes:  # the frozen quantised weights' scales and zero points, as stored
        formula = f"{format_count(report.totals.quantization)} scales, zero points and indices as stored"
        items.append(_item("quantization metadata", "exact", report.totals.quantization_bytes, formula, split(3)))
    if settings.zero >= 3 and dp > 1:
        items.append(_gathered(report, trainable, settings.precision, tp))
    count = sum(_values(record) for record in trainable)
    grads = math.ceil(count * grad_bytes)
    formula = f"{format_count(count)} trainable × {grad_bytes:g} B{_complex_note(trainable)}"
    offload = settings.offload_optimizer
    # DeepSpeed's offload reduces each gradient into an fp32 partition in host memory (ZeRO 1 and 2's fp32 gradient
    # buffer, ZeRO 3's grad_partitions_flat_buffer) for the CPU optimizer; from ZeRO 2 on, none stays on the device
    if not offload or settings.zero == 1:
        items.append(_on_this_rank(_item("gradients", "derived", grads, formula, split(2)), held, grad_bytes))
    if offload:
        formula = (
            f"{format_count(count)} trainable × 4 B (fp32: DeepSpeed's offload reduces each gradient into it"
            f"{', and frees it on the device' if settings.zero >= 2 else ''}){_complex_note(trainable)}"
        )
        partition = _item("fp32 gradients", "derived", 4 * count, formula, split(1), "host")
        items.append(_on_this_rank(partition, held, 4))
    where: Where = "host" if offload else "device"
    if settings.precision.endswith("-mixed") or offload:
        # offloaded, the CPU optimizer steps an fp32 copy of the partition (DeepSpeed's clone().float() of it), in
        # fp32 training too: the parameters it updates are on the device
        name = "fp32 master weights" if settings.precision.endswith("-mixed") else "fp32 parameter copy"
        master = _item(name, "derived", 4 * count, f"{format_count(count)} trainable × 4 B", split(1), where)
        items.append(_on_this_rank(master, held, 4))
    states, formula, label = _optimizer_states(trainable, settings.optimizer, state_bytes)
    item = _item(f"optimizer states ({settings.optimizer})", label, states, formula, split(1), where)
    # the states torch makes like each parameter (zeros_like: the shard's padded rows), and a step per tensor
    like = {"adam": 2, "adamw": 2, "sgd-momentum": 1, "sgd": 0}.get(settings.optimizer)
    if like is not None:
        step = 4 * len(trainable) if like == 2 else 0
        item = _on_this_rank(item, held, state_bytes, like, step)
    items.append(item)
    return items


def _on_this_rank(
    item: MemoryItem, held: tuple[int, int] | None, value_bytes: float, copies: int = 1, step: int = 0
) -> MemoryItem:
    """``item`` on a rank of a model sharded as the plan shards it (``held``: the values this rank's shards hold,
    padding included, see :func:`_held_weights`): the gradients, master weights and states torch makes in the
    shards' shapes, ``copies`` of each of those values in ``value_bytes`` (and ``step`` bytes of step scalars, one a
    tensor on every rank). Every rank's shards are padded to one size; the states of the last ranks, made like their
    shards' values without the padding, may take less."""
    if held is None:
        return item
    values = held[0]
    per_rank = math.ceil(copies * values * value_bytes) + step
    shards = f"{copies} × {format_count(values)}" if copies > 1 else format_count(values)
    formula = (f"{item.formula.partition('; ÷')[0]}; the shards of the rank holding most, padding included: {shards} "
               f"values × {value_bytes:g} B{f' + {step // 4} × 4 B step' if step else ''}")  # fmt: skip
    return replace(item, per_device_bytes=per_rank, formula=formula)


def _inference_items(
    report: Report,
    settings: MemorySettings,
    config: Mapping[str, Any] | None,
    notes: list[str],
    left_out: list[str],
    states_counted: bool = False,
) -> list[MemoryItem]:
    """Inference's items; a KV cache the model keeps that cannot be sized is added to ``left_out``.
    ``states_counted``: the recurrent states are an item of their own (measured by a forward)."""
    from .sources.quantization import declared_quantization

    tp = settings.tp
    weights, formula = _weights_bytes(_parameters(report), settings.dtype, settings.keep_fp32, _transposed(report))
    label: Label = "exact" if settings.dtype is None else "derived"
    method = declared_quantization(config) if report.source.kind == "hf-config" and settings.dtype is None else None
    if method:
        # a model built from its config holds unquantised weights: exact for them, not for the model served
        label = "estimate"
        notes.append(
            f"weights sized unquantised: config.json declares quantisation ({method}), which building from a config "
            "does not apply; plan from the checkpoint for its stored bytes, or give --dtype"
        )
    items = [_item("weights", label, weights, formula, (tp, f"TP {tp}"))]
    if settings.keep_fp32 and settings.dtype is None:
        notes.append("keep_fp32 applies where weights are converted (--dtype, and the table of formats): without "
                     "--dtype the weights item is as stored")  # fmt: skip
    quantization = report.totals.quantization_bytes
    if quantization and settings.dtype is None:
        formula = f"{format_count(report.totals.quantization)} scales, zero points and indices as stored"
        items.append(_item("quantization metadata", "exact", quantization, formula, (tp, f"TP {tp}")))
    if settings.tokens is not None:
        # llama.cpp keeps a GGUF model's cache in f16 whatever its weights are stored in (its --cache-type default)
        cache_dtype = settings.cache_dtype(None if report.source.kind == "gguf" else main_dtype(report))
        cache = kv_cache(config, settings.batch, settings.tokens, cache_dtype, states_counted=states_counted)
        if config and isinstance(none := config.get("gguf_no_kv_cache"), str):
            cache = None  # a recurrent GGUF model (see sources/gguf.py)
            notes.append(f"no KV cache item: {none}")
        elif config and isinstance(unsized := config.get("gguf_unsized_kv_cache"), str):
            cache = None
            notes.append(f"no KV cache item: {unsized}")
            left_out.append("KV cache")
        elif config and not generates(config):
            own = _generates_its_own_way(config)
            if own is None:
                notes.append(_no_generation(config))
            else:
                notes.append(f"no KV cache item: {own} generates through a generate() of its own, over parts whose "
                             "caches this plan does not size")  # fmt: skip
                left_out.append("KV cache")
        elif config and (kept := _OTHER_CACHES.get(str(_language_config(config).get("model_type")))):
            cache = None
            notes.append(f"no KV cache item: {kept}, not keys and values; this plan does not size that cache")
            left_out.append("generation cache")
        elif cache is not None and config and (uncached := _keeps_no_cache(config)):
            cache = None
            notes.append(f"no KV cache item: transformers' {uncached} keeps no cache (its forward takes none): "
                         "generate() runs the whole sequence again for each new token")  # fmt: skip
        elif config and (empty := _layers_without_a_cache(config)):
            cache = None  # Gemma 4's unified assistant: every layer reads the target model's cache
            notes.append(f"no KV cache item: none of its {empty} layers keeps a cache of its own (no attention, or "
                         "another layer's or model's: a drafting assistant reads its target model's)")  # fmt: skip
        elif config and (recurrent := _recurrent_only(config)):
            # also a hybrid's config whose layers happen to be all recurrent (two layers of Qwen3-Next): its heads
            # size a cache of 0 layers, which is no KV cache at all
            cache = None
            state = (f"no KV cache item: every layer keeps a fixed-size recurrent state ({recurrent}), no keys and "
                     "values per token")  # fmt: skip
            if states_counted:
                notes.append(f"{state}: the recurrent state item")
            else:  # a forward measures the states of transformers' own cache layers, not RWKV's nor xLSTM's
                why = "this plan does not size it" if recurrent in _RECURRENT_MODELS else "no forward measured it"
                notes.append(f"{state}; that state is not counted ({why})")
                left_out.append("recurrent state")
        elif cache is None and config:
            notes.append("no KV cache item: the config does not give its decoder's layers, attention heads and "
                         "hidden size (num_hidden_layers, num_attention_heads, hidden_size, or the names its "
                         "transformers config class maps them to)")  # fmt: skip
            left_out.append("KV cache")
        elif cache is None:
            notes.append("no KV cache item: the model has no decoder config to size it from")
        else:
            size, formula, kv_heads = cache
            _check_kv_split(tp, kv_heads)
            ways = math.gcd(tp, kv_heads)  # whole heads to each rank, or one head copied to several
            cache_label: Label = "derived"
            notes.extend((config or {}).get("gguf_swa_in_code") or [])  # a GGUF file's window or pattern set in code
            windowed = config.get("sliding_window") if config else None
            if (
                config
                and "gguf_architecture" in config
                and isinstance(windowed, int)
                and (llama_cpp_cells(settings.tokens, windowed) < llama_cpp_cells(settings.tokens))
            ):  # some layers hold fewer cells than the context's
                notes.append("the KV cache's sliding-window layers are sized as llama.cpp allocates them with its "
                             "defaults: the window and one ubatch (n_ubatch 512) of cells for each sequence "
                             "(kv_unified off), padded to 256; --swa-full would give them the context's")  # fmt: skip
            packed = dtype_table.lookup(cache_dtype)
            # integers of 8 bits or more too: a cache quantized to them (QuantizedCache of 8 bits) keeps scales
            if packed.category != "block" and (packed.bits < 8 or packed.category in ("int", "uint")):
                cache_label = "estimate"
                counted = (
                    f"packed, {packed.bits:g} bit{'s' if packed.bits != 1 else ''}"
                    if packed.bits < 8
                    else f"at {packed.bits:g} bits"
                )
                notes.append(f"the KV cache's {packed.name} values are counted {counted} each, as a quantized cache "
                             "keeps them (transformers' QuantizedCache, a quantized cache of a serving engine): their "
                             "scales, and the recent tokens such a cache keeps unquantized, are not "
                             "counted")  # fmt: skip
            if config and (unknown := unknown_cache_layers(config)):
                cache_label = "estimate"
                notes.append(f"the KV cache counts the {', '.join(unknown)} layers as full attention, whose cache "
                             "paramscope does not know: an estimate")  # fmt: skip
            window, kind = (config or {}).get("gguf_windowed_layers") or (None, "")
            if window is not None and llama_cpp_cells(settings.tokens, window) < llama_cpp_cells(settings.tokens):
                cache_label = "estimate"
                notes.append(f"the GGUF file declares a {format_count(window)}-token sliding window but not which "
                             "layers use it (llama.cpp's code decides): the KV cache counts every layer at full "
                             "length, an upper bound")  # fmt: skip
            elif window is None and kind:
                cache_label = "estimate"
                notes.append(f"llama.cpp gives some layers of this architecture {kind} in its code, which the GGUF "
                             "file does not describe: the KV cache counts every layer at full length, an upper "
                             "bound")  # fmt: skip
            items.append(_item("KV cache", cache_label, size, formula, (ways, f"TP {tp}, {kv_heads} kv heads")))
            if config and (both_ways := _encoder_as_a_decoder(config)):
                architecture, field = both_ways
                ran = (
                    "as the encoder it is made of, attending both ways, and its forward makes no cache of its own"
                    if field == "is_decoder"
                    else "attending both ways, and its forward returns no cache"
                )
                notes.append(f"{architecture}'s config has {field} false: transformers runs it {ran}; generate() "
                             "passes it one, which it fills as the KV cache item counts, but each prompt token then "
                             f"attends to the tokens after it too: set {field} true to generate as a causal "
                             "LM")  # fmt: skip
            cross = cross_attention_cache(config, settings.batch, cache_dtype)
            if cross is not None and config is not None:
                per_token, formula = cross
                model = "an encoder-decoder" if _is_encoder_decoder(config) else "a decoder with cross-attention"
                # Whisper's encoder halves its input: its output has max_source_positions positions, at most
                positions = size_of(_language_config(config).get("max_source_positions"))
                most = (f" (its encoder outputs up to {positions:,} positions, max_source_positions: "
                        f"{format_count(per_token * positions)} B)") if positions else ""  # fmt: skip
                notes.append(f"the KV cache item is the decoder's self-attention cache; generating, {model} also "
                             f"keeps the keys and values of the encoder's output in each decoder layer for its "
                             f"cross-attention (transformers' EncoderDecoderCache), not included: {formula} = "
                             f"{format_count(per_token)} B per position of the encoder's output{most}")  # fmt: skip
            if config is not None and (speech := _talker_cache(config, settings.batch, cache_dtype)):
                notes.append(speech)
            if config is not None and (image := _image_cache(config, settings.batch, cache_dtype)):
                notes.append(image)
    return items


def _image_cache(config: Mapping[str, Any], batch: int, kv_dtype: str) -> str | None:
    """A note on what the cross-attention layers of Mllama (Llama 3.2 Vision) keep of an image: the keys and values
    of its vision encoder's output, ``max_num_tiles`` tiles (its processor pads every image to them) of a token per
    patch and a class token each; None for a config without such layers or without the vision fields."""
    crossing = language_model_config(config).get("cross_attention_layers")
    vision = config.get("vision_config")
    shape = _decoder_shape(config)
    if not isinstance(crossing, list) or not isinstance(vision, Mapping) or shape is None:
        return None
    fields, layers, heads, hidden = shape
    image, patch, tiles = (size_of(vision.get(key)) for key in ("image_size", "patch_size", "max_num_tiles"))
    count = len({index for index in crossing if isinstance(index, int) and not isinstance(index, bool) and
                 0 <= index < layers})  # fmt: skip
    if image is None or patch is None or tiles is None or not count:
        return None
    kv_heads, _ = _kv_heads(fields, heads)
    head_dim, value_dim = _head_dims(fields, heads, hidden)
    tokens = tiles * ((image // patch) ** 2 + 1)
    size = _bytes_of(kv_dtype)
    per_image = math.ceil(count * kv_heads * (head_dim + value_dim) * tokens * batch * size)
    lengths = f"2 × {head_dim}" if value_dim == head_dim else f"({head_dim} + {value_dim})"
    return (f"the KV cache item is the text's; the {count} cross_attention layers also keep the keys and values of "
            f"each image's {format_count(tokens)} tokens ({tiles} tiles × ({(image // patch) ** 2} patches + 1)), not "
            f"included: {lengths} × {count} layers × {kv_heads} kv heads × {format_count(tokens)} tokens × {batch} × "
            f"{size:g} B = {format_count(per_image)} B per image")  # fmt: skip


def _talker_cache(config: Mapping[str, Any], batch: int, kv_dtype: str) -> str | None:
    """A note on the cache a speaking model's talker keeps besides its thinker's (Qwen2.5-Omni, Qwen3-Omni: the KV
    cache item is the thinker's, which writes the text), per token of the audio codes it writes; None for others,
    and for a model built without audio output (``enable_audio_output`` false)."""
    talker = config.get("talker_config")
    if not isinstance(talker, Mapping) or config.get("enable_audio_output") is False:
        return None
    cache = kv_cache(talker, batch, 1, kv_dtype)
    if cache is None:
        return ("the KV cache item is the thinker's, which writes the text; speaking, the talker keeps a KV cache of "
                "its own over the audio codes it writes, which its config does not size: not included")  # fmt: skip
    size, formula, _ = cache
    predictor = (
        " (and its code predictor another, over each code's groups)" if "code_predictor_config" in talker else ""
    )
    return (f"the KV cache item is the thinker's, which writes the text; speaking, the talker keeps a KV cache of "
            f"its own over the audio codes it writes{predictor}, not included: {formula} = {format_count(size)} B "
            "per code token")  # fmt: skip


# Model types whose transformers cache is a recurrent state of a class of its own, not a DynamicCache's layers
# (RWKV's state, xLSTM's xLSTMCache): their layer types do not say so
_RECURRENT_MODELS = frozenset({"rwkv", "xlstm"})


def _decoder_cache_layers(config: Mapping[str, Any]) -> list[CacheLayer]:
    """Each decoder layer's cache, as transformers' cache makes it (none for a config that names no layers)."""
    from ._cache_layers import cache_layers

    layers = decoder_layers(config)
    return cache_layers(config, layers) if layers else []


def _layers_without_a_cache(config: Mapping[str, Any]) -> int:
    """The decoder layers of a model none of whose layers keeps keys and values, a recurrent state or an image's
    cross-attention cache of its own; 0 for others."""
    kinds = _decoder_cache_layers(config)
    if any(layer.keeps_keys or layer.keeps_state or layer.type == CROSS for layer in kinds):
        return 0
    return len(kinds)


def _recurrent_only(config: Mapping[str, Any]) -> str:
    """The layer types of a model whose every layer keeps a recurrent state and no keys and values (Mamba), as
    transformers' cache makes them, or the model type of one whose cache is such a state of its own (RWKV); empty
    for others. Such a config names no attention heads."""
    model_type = _language_config(config).get("model_type")
    if model_type in _RECURRENT_MODELS:
        return str(model_type)
    kinds = _decoder_cache_layers(config)
    if not kinds or any(layer.keeps_keys or not layer.keeps_state for layer in kinds):
        return ""
    return "/".join(sorted({layer.type for layer in kinds}))


def _encoder_as_a_decoder(config: Mapping[str, Any]) -> tuple[str, str] | None:
    """The architecture of a causal LM made of an encoder (BertLMHeadModel, RobertaForCausalLM and their kin) whose
    config leaves ``is_decoder`` false, or of XLM's whose config leaves ``causal`` false, with that field's name;
    None for others.

    transformers gives such a model causal attention only with ``is_decoder`` true, and its forward makes a cache
    only then (it sets ``use_cache`` false otherwise, and the head warns to set it when built); a cache passed in,
    as ``generate()`` passes one, its layers fill all the same. XLMWithLMHeadModel attends both ways unless
    ``causal`` is true (XLMConfig's default leaves it false), and its forward returns no cache whatever ``causal``
    says (it fills one of its own and drops it); the one ``generate()`` passes, it fills. The model types are those
    whose causal-LM head transformers builds on an encoder (see :func:`_encoders_with_a_causal_head`), not
    encoder-decoders, whose config class has the field.
    """
    config = _language_config(config)
    model_type = config.get("model_type")
    # transformers is asked last: a GGUF file's config, which has no model type, is planned without importing it
    if not isinstance(model_type, str) or _is_encoder_decoder(config):
        return None
    heads = _encoders_with_a_causal_head()
    if model_type not in heads:
        return None
    declared = getattr(config_class(model_type), "__dataclass_fields__", {})
    field = "is_decoder" if "is_decoder" in declared else "causal" if "causal" in declared else None  # XLM's: causal
    if field is None or config.get(field, False) is not False:
        return None
    architectures = config.get("architectures")
    named = architectures[0] if isinstance(architectures, list) and architectures else None
    return str(named) if named is not None else heads[model_type], field


@functools.lru_cache(maxsize=1)
def _encoders_with_a_causal_head() -> dict[str, str]:
    """The model types whose causal-LM head transformers builds on an encoder, with that head's class name: those it
    has a masked-LM head for too (BERT, RoBERTa), and those whose base model it names an encoder (BERT-Generation's
    BertGenerationDecoder on its BertGenerationEncoder)."""
    try:
        from transformers.models.auto import modeling_auto
    except Exception:  # not installed, or an import that fails: no model type is known to be one
        return {}
    masked = modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES
    bases = modeling_auto.MODEL_MAPPING_NAMES
    return {model_type: name for model_type, name in _causal_lm_classes().items()
            if model_type in masked or str(bases.get(model_type, "")).endswith("Encoder")}  # fmt: skip


# Model types whose generation cache keeps something else per token than keys and values, and what it keeps
_OTHER_CACHES = {
    "reformer": "transformers' Reformer caches each layer's input hidden states (and its LSH attention layers' hash "
    "buckets)",
    "xlnet": "transformers' XLNet caches each layer's input hidden states (its mems, the last mem_len tokens where the "
    "config sets mem_len)",
}


# The names transformers' causal LMs take a generation cache or state under (a recurrent state, another model's
# keys and values)
_CACHE_ARGUMENTS = frozenset({"cache", "past_key_values", "cache_params", "state", "shared_kv_states",
                              "past_buckets_states", "mems"})  # fmt: skip


def _keeps_no_cache(config: Mapping[str, Any]) -> str | None:
    """The name of the causal-LM class of ``config``'s model type when its forward takes no cache under any name
    (OpenAI GPT's), else None (a class that takes one, or none known). Asked only where transformers built the model
    (imported already): a plan from a GGUF file or a checkpoint alone does not import it for this."""
    model_type = config.get("model_type")
    if "transformers" not in sys.modules:
        return None
    name = _causal_lm_classes().get(model_type) if isinstance(model_type, str) else None
    if not isinstance(name, str):
        return None
    try:
        import transformers

        parameters = pyinspect.signature(getattr(transformers, name).forward).parameters
    except Exception:  # a class that cannot be imported here (a missing dependency): not known to keep none
        return None
    return None if _CACHE_ARGUMENTS & parameters.keys() else name


@functools.lru_cache(maxsize=1)
def _causal_lm_classes() -> dict[str, Any]:
    """transformers' causal-LM class name of each model type; empty when transformers cannot be imported."""
    try:
        from transformers.models.auto import modeling_auto
    except Exception:  # not installed, or an import that fails
        return {}
    return dict(modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def _generates_its_own_way(config: Mapping[str, Any]) -> str | None:
    """The transformers class a config that :func:`generates` does not take for a generating model names, whose own
    ``generate()`` runs decoders of its parts (BarkModel's semantic and coarse models, SpeechT5's speech decoder,
    SeamlessM4TModel); None for others. A CTC model's and a forecaster's ``generate()`` run no decoder step by
    step: they are not one."""
    architectures = config.get("architectures")
    if not isinstance(architectures, list) or not isinstance(config.get("model_type"), str):
        return None
    transformers = sys.modules.get("transformers")
    for name in map(str, architectures):
        cls = getattr(transformers, name, None) if transformers is not None and name.isidentifier() else None
        if isinstance(cls, type) and "generate" in vars(cls) and not name.endswith(("ForCTC", "ForRegression")):
            return name
    return None


def _no_generation(config: Mapping[str, Any]) -> str:
    """Why a model with a config gets no KV cache item though a context length is given."""
    architectures = config.get("architectures") or _language_config(config).get("architectures")
    if isinstance(architectures, list) and architectures:  # a decoder with a classifier's head generates nothing
        names = [str(name) for name in architectures]
        named_generating = [name for name in names if any(mark in name for mark in _GENERATING)]
        if named_generating and isinstance(config.get("model_type"), str) and set(names) <= _masked_lm_classes():
            return (f"no KV cache item: transformers builds {listed(named_generating)} as a masked LM, which keeps "
                    "no generation cache (its generate() passes its forward none: each step runs the whole sequence "
                    "again)")  # fmt: skip
        return (f"no KV cache item: {listed(names)} is not a model that generates "
                "(a causal LM or an encoder-decoder), so it keeps no generation cache")  # fmt: skip
    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type in _types_of_no_generating_model():
        return (f"no KV cache item: transformers builds no causal LM, encoder-decoder LM or image-, speech- or "
                f"vision-to-text model of type {model_type}, the models that keep a KV cache to generate, so it "
                "keeps none")  # fmt: skip
    return "no KV cache item: the config describes an encoder, which keeps no generation cache"


def _activations_item(size: int, label: Label, formula: str, tp: int, kept_inputs: int = 0) -> MemoryItem:
    if tp == 1:
        return _item("activations", label, size, formula)
    # Megatron-style TP without sequence parallelism splits the attention and MLP activations (24 of the 34 sbh
    # bytes per layer, Korthikanti et al. 2022) but not the norms' and dropouts' inputs (the other 10), nor the
    # checkpointed layers' inputs (2sbh a layer with full recomputation), which every rank holds whole
    split = size - kept_inputs
    per_device = kept_inputs + math.ceil(split * (10 + 24 / tp) / 34)
    if kept_inputs:
        formula += (f"; ({split:,} B × (10 + 24/{tp}) / 34 + the checkpointed inputs, {kept_inputs:,} B, whole on "
                    f"every rank) per device (TP {tp} without sequence parallelism)")  # fmt: skip
    else:
        formula += f"; × (10 + 24/{tp}) / 34 per device (TP {tp} without sequence parallelism)"
    return MemoryItem("activations", "estimate", size, per_device, formula)


@dataclass(frozen=True)
class _Model:
    """What a plan's items are worked out from besides its settings; the advice works them out again under others."""

    report: Report
    config: Mapping[str, Any] | None
    trained: frozenset[str] | None
    heads: tuple[int, ...]
    states_counted: bool = False
    """Whether the recurrent states are an item of their own (measured by a forward)."""


def _items(
    model: _Model, settings: MemorySettings, notes: list[str], left_out: list[str] | None = None
) -> list[MemoryItem]:
    """The items worked out from the report and the config (all but the measured activations); those the model
    needs that cannot be worked out are added to ``left_out``."""
    if settings.train:
        items = _training_items(model.report, settings, notes, model.trained)
    else:
        items = _inference_items(model.report, settings, model.config, notes, [] if left_out is None else left_out,
                                 model.states_counted)  # fmt: skip
    totals = model.report.totals
    if totals.buffer_bytes:
        items.append(_buffers(model.report, settings))
    return items


def _buffers(report: Report, settings: MemorySettings) -> MemoryItem:
    """The buffers as stored; in training in fp32 or bf16-pure, the floating-point ones cast as the model is
    (``model.to(dtype)`` casts them with the parameters; autocast, none)."""
    totals = report.totals
    value_bytes = _PRECISION_BYTES[settings.precision][0]
    buffers = [record for record in report.tensors if record.kind == "buffer" and record.numel is not None]
    cast = [record for record in buffers if _category(record) == "float"]
    if not settings.train or settings.precision.endswith("-mixed") or all(
            record.bytes == record.numel * value_bytes for record in cast if record.numel is not None):  # fmt: skip
        return _item("buffers", "exact", totals.buffer_bytes, f"{format_count(totals.buffers)} elements as stored")
    values = sum(record.numel or 0 for record in cast)
    size = totals.buffer_bytes - sum(record.bytes or 0 for record in cast) + math.ceil(values * value_bytes)
    dtype = COMPUTE_DTYPES[settings.precision]
    formula = f"{format_count(totals.buffers)} elements, the {format_count(values)} floating-point ones in {dtype}"
    return _item("buffers", "derived", size, formula)


def plan(
    report: Report,
    settings: MemorySettings,
    *,
    config: Mapping[str, Any] | None = None,
    activations: tuple[int, Label, str] | None = None,
    trained: frozenset[str] | None = None,
    checkpointed: int | None = None,
    input_size: Sequence[tuple[int, ...]] | None = None,
    units: Units = "iec",
    sparse: Sequence[str] = (),
    left_out: Sequence[str] = (),
    recurrent_state: tuple[int, int] | None = None,
    kept_inputs: int = 0,
) -> MemoryPlan:
    """The itemised budget for inference or training of the model in ``report``, per device.

    ``config`` is the model's config (for the KV cache), ``activations`` the measured ``(bytes, label, formula)``
    of one forward of the per-device batch, ``trained`` the names of the parameters that forward gives a gradient
    (for a note on the trainable ones it does not reach; None: not known), ``input_size`` the shapes of its inputs
    when given as shapes (None: ``batch`` × ``tokens`` ids). For the advice when it does not fit: ``checkpointed``,
    the activations that forward leaves with gradient checkpointing (None: not measured), and ``units``, the byte
    units its text is written in. ``sparse`` names the trainable weights of embeddings built with ``sparse=True``.
    ``left_out`` names the items asked for that could not be worked out (``"activations"``: the forward failed), so
    that the plan does not say it fits on the rest. ``recurrent_state`` is, for inference, the bytes of the
    recurrent states the forward's cache holds and the layers holding them (linear-attention and Mamba layers).
    ``kept_inputs`` is, of the activations, the inputs gradient checkpointing keeps, which tensor parallelism without
    sequence parallelism leaves whole on every rank.
    ``settings`` must have passed :meth:`MemorySettings.check`.
    """
    heads = attention_heads(config)
    for count in heads:  # Megatron and vLLM alike give each rank whole heads (an encoder's and a decoder's alike)
        if count % settings.tp:
            raise UsageError(f"tp ({settings.tp}) must divide the model's {count} attention heads: each device holds "
                             "whole heads")  # fmt: skip
    notes: list[str] = []
    states = recurrent_state if not settings.train else None
    model = _Model(report, config, trained, heads, states is not None)
    missing = list(left_out)
    items = _items(model, settings, notes, missing)
    if states is not None:
        items.insert(_after_the_cache(items), _recurrent_state_item(*states, settings))
    if not settings.train and settings.tokens is None:  # nothing to size a KV cache by: said when it matters
        if input_size is not None and config and generates(config):
            notes.append("no KV cache item: input_size's first input is not (batch, seq) token ids, so the cache's "
                         "length is not known; give a context length instead")  # fmt: skip
        elif settings.kv_dtype is not None:
            notes.append(f"no KV cache item, so kv_dtype {settings.kv_dtype} is not used: give a context length (or "
                         "token ids as input_size) to size one")  # fmt: skip
    longest = _positions(config)
    if longest is not None and settings.tokens is not None and settings.tokens > longest[1]:
        flag = "--seq" if settings.train else "--context"
        notes.append(f"{flag} {format_count(settings.tokens)} is more than the {format_count(longest[1])} positions "
                     f"the config declares ({longest[0]}): a model with learned positions (GPT-2's) cannot run past "
                     "them, and one with rotary positions was not trained to")  # fmt: skip
    tp = settings.tp
    if activations is not None:
        items.append(_activations_item(*activations, tp, kept_inputs))
    if settings.train and not settings.zero and settings.gpus // tp > 1:
        notes.append("data parallelism without ZeRO (torch's DistributedDataParallel): its gradient buckets, a copy "
                     "of the gradients, are not counted; gradient_as_bucket_view=True keeps the gradients in them "
                     "instead")  # fmt: skip
    if settings.zero and settings.gpus // tp == 1:
        notes.append(f"ZeRO {settings.zero} shards over data-parallel ranks, and there is one (gpus ÷ tp = 1): "
                     "nothing is sharded")  # fmt: skip
    if tp > 1:
        notes.append(f"tensor parallelism splits weights, gradients, optimizer states and activations {tp} ways; what "
                     "a model leaves whole on every rank (norms, row-parallel biases, layers it does not parallelise) "
                     "is replicated in practice, so the per-device figures are low by that much")  # fmt: skip
        items = [
            replace(item, label="estimate") if f"TP {tp}" in item.formula and item.name != "KV cache" else item
            for item in items
        ]
    if settings.train and sparse:
        notes.append(_sparse_note(sparse, settings.optimizer))
    if settings.train:
        notes.append("training items are added as if all were live at once; not included: the backward's and the "
                     "optimizer step's temporaries (a language model's: a gradient of its logits' size), kernel "
                     "workspaces and the allocator's fragmentation")  # fmt: skip
    per_device = sum(item.per_device_bytes for item in items if item.where == "device")
    host = sum(item.per_device_bytes for item in items if item.where == "host")
    fits = None if settings.device_memory is None else per_device <= settings.device_memory
    if not report.totals.complete:
        # tensors of unknown size count as nothing in every item: a plan that fits may not, one over is over
        unknown = " and ".join(report.unknown_sizes)
        notes.append(f"the model has tensors of unknown size ({unknown}), counted as nothing: the items made from the "
                     "parameters, and the total, are only lower bounds")  # fmt: skip
    complete = report.totals.complete and not missing
    if fits and not complete:  # the rest fits, and what is not counted may or may not; over is over all the same
        fits = None
    advice: tuple[str, ...] = ()
    if fits is False:
        cuts = _Cuts(model, settings, tuple(items), checkpointed, input_size)
        advice = _advice(items, settings, per_device, cuts, units, complete)
    scenario: Literal["inference", "training"] = "training" if settings.train else "inference"
    storage = storage_table(report, settings.keep_fp32)
    return MemoryPlan(scenario, settings, tuple(items), storage, per_device, host, fits, tuple(missing), advice,
                      tuple(notes), complete)  # fmt: skip


def _after_the_cache(items: Sequence[MemoryItem]) -> int:
    """Where the recurrent state goes among inference's items: after the KV cache, else after the weights."""
    names = [item.name for item in items]
    return names.index("KV cache") + 1 if "KV cache" in names else 1


def _recurrent_state_item(size: int, layers: int, settings: MemorySettings) -> MemoryItem:
    sequences = f"{format_count(settings.batch)} sequence{'s' if settings.batch != 1 else ''}"
    formula = (f"the states of {layers} linear-attention and state-space layers as transformers' cache holds them "
               f"after the forward on meta ({sequences}; the same at any length)")  # fmt: skip
    return _item("recurrent state", "exact", size, formula, (settings.tp, f"TP {settings.tp}"))


# torch's words when a step meets a sparse gradient (torch.optim.AdamW's are Adam's)
_REFUSE_SPARSE = {"adam": "Adam", "adamw": "Adam", "adafactor": "Adafactor"}


def _sparse_note(names: Sequence[str], optimizer: str) -> str:
    """What the gradients and states of embeddings built with ``sparse=True`` are, beside their dense count."""
    note = (f"{listed(names)}: the weight of an embedding built with sparse=True gets a sparse gradient (unless "
            "the model also uses it outside the embedding, as a tied head does)")  # fmt: skip
    refused = _REFUSE_SPARSE.get(optimizer)
    if refused is not None:
        return (f"{note}, which torch's {optimizer} refuses ('{refused} does not support sparse gradients'): build "
                "the embedding with sparse=False, or step it with SGD or SparseAdam; counted dense here")  # fmt: skip
    note += (": counted dense here, where torch's holds a row of values and an int64 index for each id the batch "
             "looks up, not merged (more than the dense gradient when a batch looks up more ids than the table has "
             "rows)")  # fmt: skip
    if optimizer == "sgd-momentum":
        note += ("; SGD's momentum buffer for it is sparse too, its rows merged only in part, so it can grow past "
                 "the dense size from step to step")  # fmt: skip
    return note


def _kind(name: str) -> str:
    """An item's name without its variant: ``optimizer states`` for every optimizer's."""
    return name.partition(" (")[0]


# What the weights take of one device under ZeRO 3 is their shard and the blocks gathered whole for compute: an option
# that shards the weights further but gathers as much (or that stops the gathering by sharding nothing) cuts nothing.
_WEIGHTS = ("weights", "gathered parameters")


def _on_device(items: Sequence[MemoryItem], kind: str) -> int:
    """What the items of ``kind`` take of one device (0 when moved to the host or gone); the weights and ZeRO 3's
    gathered parameters count together."""
    kinds = _WEIGHTS if kind in _WEIGHTS else (kind,)
    return sum(item.per_device_bytes for item in items if _kind(item.name) in kinds and item.where == "device")


@dataclass(frozen=True)
class _Cuts:
    """The options that cut an item, each offered only when the item, worked out again under it, is smaller."""

    model: _Model
    settings: MemorySettings
    items: tuple[MemoryItem, ...]
    """The plan's items, worked out under ``settings``."""
    checkpointed: int | None
    input_size: Sequence[tuple[int, ...]] | None

    def of(self, item: MemoryItem) -> list[str]:
        """The options that shrink ``item`` on one device, leaving out those already in effect."""
        if item.name == "activations":  # measured by a forward, not worked out again: the forward's own rules
            return self._activations(item)
        if item.name == "recurrent state":  # measured too: as many states as sequences, whatever their length
            fewer = "a smaller --input-size" if self.input_size is not None else "a smaller --batch"
            return [fewer] if self.settings.batch > 1 else []
        settings = self.settings
        kind = _kind(item.name)
        options: list[tuple[str, list[MemorySettings]]] = []
        if kind == "KV cache":
            options.append(("--kv-dtype fp8", [replace(settings, kv_dtype="fp8")]))
            if self.input_size is not None:  # its batch and sequence length come from the input's shape
                options.append(("a smaller --input-size", [replace(settings, batch=1), replace(settings, tokens=1)]))
            else:
                options.append(("a shorter --context", [replace(settings, tokens=1)]))
                options.append(("a smaller --batch", [replace(settings, batch=1)]))
        elif kind == "weights" and not settings.train:
            smaller = [name for name in ("int8", "int4") if self._cut(item, [replace(settings, dtype=name)])]
            if smaller:
                options.append((f"a smaller --dtype ({', '.join(smaller)})", [replace(settings, dtype=smaller[-1])]))
        elif kind == "weights":
            options += self._zero(3)
        elif kind == "gradients":
            options += self._zero(2)
        elif kind in ("fp32 master weights", "optimizer states"):
            options += self._zero(1)
            # DeepSpeed offloads the optimizer only under ZeRO, and on one GPU too (ZeRO-Offload's own setup)
            offload = "--offload-optimizer" if settings.zero else "--zero 1 --offload-optimizer"
            if settings.precision != "bf16-pure":
                options.append((offload, [replace(settings, zero=max(settings.zero, 1), offload_optimizer=True)]))
            if item.name in ("optimizer states (adam)", "optimizer states (adamw)") and self._eight_bit():
                options.append(("--optimizer adamw-8bit", [replace(settings, optimizer="adamw-8bit")]))
        if kind in ("KV cache", "weights", "gathered parameters"):
            more_tp = "--tp N" if settings.tp == 1 else f"a --tp larger than {settings.tp}"
            options.append((more_tp, self._larger_tp()))
        if settings.train and kind in ("weights", "gradients", "fp32 master weights", "optimizer states"):
            options.append(("more --gpus", [replace(settings, gpus=2 * settings.gpus)]))
        if kind == "weights" and settings.train and not settings.offload_optimizer:
            options.append(("--precision bf16-pure", [replace(settings, precision="bf16-pure")]))
        return [text for text, tries in options if self._cut(item, tries)]

    def _eight_bit(self) -> bool:
        """Whether 8-bit Adam would keep any trainable tensor in 8 bits (bitsandbytes keeps smaller ones in 32; its
        states then differ from Adam's by the ``step`` tensors alone)."""
        params = _parameters(self.model.report)
        return any(r.trainable is not False and (r.numel or 0) >= _BNB_MIN_8BIT_SIZE for r in params)

    def _cut(self, item: MemoryItem, tries: Sequence[MemorySettings]) -> bool:
        """Whether ``item`` takes less of one device under any of ``tries`` (moved to the host or gone: none), the
        weights counted with the parameters ZeRO 3 gathers (see :func:`_on_device`)."""
        kind = _kind(item.name)
        before = _on_device(self.items, kind)
        return any(_on_device(_items(self.model, settings, []), kind) < before for settings in tries)

    def _zero(self, stage: int) -> list[tuple[str, list[MemorySettings]]]:
        """ZeRO ``stage``, unless in effect; it shards over the data-parallel ranks, so with one it takes more GPUs:
        2, 4 or 8 times as many are tried (ZeRO 3's gathered blocks stay whole, so its shards may need several to cut
        the weights)."""
        settings = self.settings
        if settings.zero >= stage:
            return []
        if settings.gpus // settings.tp > 1:
            return [(f"--zero {stage}", [replace(settings, zero=stage)])]
        more = [replace(settings, zero=stage, gpus=factor * settings.gpus) for factor in (2, 4, 8)]
        return [(f"--zero {stage} with more --gpus", more)]

    def _larger_tp(self) -> list[MemorySettings]:
        """The settings with the smallest few larger tensor-parallel degrees that are valid: multiples of ``tp``
        that divide the attention heads and, when there are more GPUs than ``tp``, the GPUs (which otherwise
        follow ``tp``, as they do by default)."""
        settings, heads = self.settings, self.model.heads
        follows = settings.gpus == settings.tp
        degrees = [settings.tp * factor for factor in range(2, 65)]
        degrees = [n for n in degrees if all(count % n == 0 for count in heads) and (follows or settings.gpus % n == 0)]
        cache = kv_cache(self.model.config, 1, 1, "bfloat16") if self.model.config and not settings.train else None
        if cache is not None:  # the heads' split the KV cache takes too
            degrees = [n for n in degrees if not (cache[2] % n and n % cache[2])]
        return [replace(settings, tp=n, gpus=n if follows else settings.gpus) for n in degrees[:4]]

    def _activations(self, item: MemoryItem) -> list[str]:
        settings = self.settings
        cuts = []
        if self.checkpointed is not None and self.checkpointed < item.total_bytes:  # measured without checkpointing
            cuts.append("--grad-checkpointing")
        if self.input_size is not None:
            cuts += ["a smaller --input-size"] * any(dim > 1 for shape in self.input_size for dim in shape)
            return cuts
        cuts += ["a smaller --batch"] * (settings.batch > 1)
        if settings.tokens is not None and settings.tokens > 1:
            cuts.append(f"a shorter --{'seq' if settings.train else 'context'}")
        return cuts


def _advice(
    items: Sequence[MemoryItem],
    settings: MemorySettings,
    per_device: int,
    cuts: _Cuts,
    units: Units,
    complete: bool = True,
) -> tuple[str, ...]:
    """By how much the plan is over the device's memory (at least, when it is not ``complete``: tensors of unknown
    size), and the options that cut its largest items."""
    assert settings.device_memory is not None
    over = per_device - settings.device_memory
    available = format_bytes(settings.device_memory, units)
    at_least = "" if complete else "at least "
    lines = [f"{at_least}{format_bytes(per_device, units)} per device is {at_least}{format_bytes(over, units)} over "
             f"the {available} available"]  # fmt: skip
    on_device = sorted((item for item in items if item.where == "device"), key=lambda item: -item.per_device_bytes)
    for item in on_device[:2]:
        found = cuts.of(item)
        if found:
            size = format_bytes(item.per_device_bytes, units)
            lines.append(
                f"{item.name} ({size} per device): try {', '.join(found[:-1])}{' or ' * (len(found) > 1)}{found[-1]}"
            )
    return tuple(lines)
