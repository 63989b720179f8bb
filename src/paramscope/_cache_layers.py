"""What each decoder layer keeps in a generation cache, from a model's config: its layer type, as transformers'
``DynamicCache`` builds it, and the tokens a windowed layer holds.

Hybrid models mix layer kinds: sliding-window (Gemma 2 and 3, Mistral) and chunked (Llama 4) attention keep a window
of tokens, linear-attention and Mamba layers (Qwen3-Next, Jamba) a fixed-size recurrent state instead of keys and
values, and some layers keep none (layers without attention, or reusing another layer's cache). Each model's config
class works its layer types out from its own fields (``full_attention_interval``, ``attn_layer_period``,
``sliding_window_pattern``, ...), so transformers is asked when it can build the config; otherwise the config's own
``layer_types``, ``sliding_window`` and ``attention_chunk_size`` are read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Iterator, Mapping
from typing import Any

FULL = "full_attention"
INDEXED = "indexed_attention"
"""A full-attention layer whose sparse-attention indexer keeps a key of its own per token (DeepSeek V3.2, GLM-5)."""
_WINDOWED = ("sliding_attention", "chunked_attention", "reference_sliding_attention")
_STATE_ONLY = ("conv", "linear_attention", "mamba")
_BOTH = ("hybrid", "hybrid_sliding")  # a recurrent state and an attention cache (windowed for hybrid_sliding)
_NONE = ("dummy", "moe", "mlp")
REFERENCE = "reference_sliding_attention"
"""UnlimitedOCR's reference sliding window: every prompt token, and a window of the tokens generated after it."""
CROSS = "cross_attention"
"""A layer that attends to another input's tokens (Mllama's image), whose keys and values it keeps, not the text's."""
KNOWN = (FULL, INDEXED, *_WINDOWED, *_STATE_ONLY, *_BOTH, *_NONE, CROSS)


@dataclasses.dataclass(frozen=True)
class CacheLayer:
    """One decoder layer's generation cache."""

    type: str
    """Its layer type, as transformers names it (``full_attention``, ``sliding_attention``, ``linear_attention``…)."""
    window: int | None = None
    """The most tokens it keeps (a sliding window or an attention chunk; a reference sliding window's, of the tokens
    generated after the prompt); None: every token."""
    head_dim: int | None = None
    """Its own length of a key and a value per head, where the config gives this layer one (``per_layer_config``:
    Gemma 4's full-attention layers); None: the model's."""
    kv_heads: int | None = None
    """Its own key/value heads, where the config gives this layer a count of its own; None: the model's."""
    latent: tuple[int | None, int | None] = (None, None)
    """Its own multi-head latent attention cache, ``(kv_lora_rank, qk_rope_head_dim)``, where the config gives this
    layer either of its own (Dots 3's sliding layers); None: the model's; 0: none (a NoPE layer's rotary key, or the
    latent of a layer that attends to an earlier layer's: Mistral Large 4's, see :func:`_with_latent_sources`)."""
    indexer: int | None = None
    """The length of the key its sparse-attention indexer keeps per token besides keys and values (DeepSeek V3.2's
    ``index_head_dim``: transformers' ``DynamicIndexedLayer``); None: it keeps none."""
    repeat: bool = False
    """A copy of a looped layer's cache, for a pass through it after the first (see :func:`_looped`)."""

    @property
    def keeps_keys(self) -> bool:
        """Whether it keeps keys and values per token."""
        return self.type not in _STATE_ONLY and self.type not in _NONE and self.type != CROSS

    @property
    def keeps_state(self) -> bool:
        """Whether it keeps a fixed-size recurrent state (linear attention, Mamba, a convolution's inputs)."""
        return self.type in _STATE_ONLY or self.type in _BOTH

    def tokens(self, tokens: int) -> int:
        """The tokens of keys and values it holds after ``tokens`` tokens."""
        if not self.keeps_keys:
            return 0
        # a reference sliding window holds every token of a context made of a prompt and no more generated tokens
        # than its window: the most it holds
        return tokens if self.window is None or self.type == REFERENCE else min(tokens, self.window)


def size_of(value: Any) -> int | None:
    """``value`` when it is a size (a positive int; not a bool, a string or a negative number), else None.

    >>> size_of(4096), size_of("4096"), size_of(True), size_of(-1)
    (4096, None, None, None)
    """
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


# The parts of a config that hold its language model's text_config in theirs: Qwen2.5-Omni's and Qwen3-Omni's thinker
# (the part that reads every input and writes text), as their config classes' get_text_config() reads it
_TEXT_HOLDERS = ("thinker_config",)


def text_config(config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A multimodal model's language model's config: its ``text_config``, or that of the part holding it (see
    ``_TEXT_HOLDERS``); None for a config without one.

    >>> text_config({"thinker_config": {"text_config": {"hidden_size": 3584}}}), text_config({"hidden_size": 8})
    ({'hidden_size': 3584}, None)
    """
    text = config.get("text_config")
    if isinstance(text, Mapping):
        return text
    for key in _TEXT_HOLDERS:
        part = config.get(key)
        if isinstance(part, Mapping) and isinstance(part.get("text_config"), Mapping):
            found: Mapping[str, Any] = part["text_config"]
            return found
    return None


def language_model_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The config a model's language model is built from: a multimodal model's text config alone (see
    :func:`text_config`), as transformers builds its language model from it; other configs as they are. The outer
    config's fields are the whole model's, not its language model's: MusicFlamingo's ``head_dim`` is its audio's
    rotary embedding's.

    >>> language_model_config({"head_dim": 1280, "text_config": {"hidden_size": 4096}})
    {'hidden_size': 4096}
    """
    text = text_config(config)
    return config if text is None else text


def cache_layers(config: Mapping[str, Any], layers: int) -> list[CacheLayer]:
    """The cache of each of a decoder's ``layers`` layers (its language model's, for a multimodal config).

    >>> [layer.type for layer in cache_layers({"layer_types": ["linear_attention", "full_attention"]}, 2)]
    ['linear_attention', 'full_attention']
    >>> cache_layers({"sliding_window": 4096}, 1)[0].window
    4096
    """
    found = _from_transformers(config, layers)
    if found is None:
        found = _from_fields(config, layers)
    crossing = language_model_config(config).get("cross_attention_layers")
    if isinstance(crossing, list):  # Mllama: transformers' cache keeps them as layers of the text's kind, empty
        found = [CacheLayer(CROSS) if index in crossing else layer for index, layer in enumerate(found)]
    return found


def _with_indexers(found: list[CacheLayer], config: Mapping[str, Any]) -> list[CacheLayer]:
    """``found`` with the key each indexed-attention layer's indexer keeps per token (``index_head_dim``), except
    on layers whose ``indexer_types`` entry is ``"shared"`` (Hunyuan V4's: they reuse another layer's indexer).

    >>> found = _with_indexers([CacheLayer(INDEXED)] * 2, {"index_head_dim": 128, "indexer_types": ["full", "shared"]})
    >>> [layer.indexer for layer in found]
    [128, None]
    """
    length = size_of(config.get("index_head_dim"))
    kinds = config.get("indexer_types")
    kinds = kinds if isinstance(kinds, list) else []
    if length is None:
        return found
    return [
        dataclasses.replace(layer, indexer=length)
        if layer.type == INDEXED and (index >= len(kinds) or kinds[index] != "shared")
        else layer
        for index, layer in enumerate(found)
    ]


def _with_latent_sources(found: list[CacheLayer], config: Mapping[str, Any]) -> list[CacheLayer]:
    """``found`` with what each multi-head latent attention layer keeps of its own, as transformers' Mistral Large 4
    caches it: a NoPE layer (``no_rope_layers`` 0) keeps its latent with no rotary key, and a layer whose
    ``kv_source_layers`` entry names an earlier layer attends to that layer's latent and keeps none of its own: its
    indexer's keys alone where it runs an indexer of its own, else no cache at all (its ``indexer_types`` entry
    ``"shared"``: transformers' cache gives it a ``DummyLayer``). Other configs' layers as they are.

    >>> config = {"kv_lora_rank": 512, "no_rope_layers": [1, 0, 0], "kv_source_layers": [0, 1, 1],
    ...           "indexer_types": ["full", "full", "shared"]}
    >>> [(layer.type, layer.latent) for layer in _with_latent_sources([CacheLayer(INDEXED)] * 3, config)]
    [('indexed_attention', (None, None)), ('indexed_attention', (None, 0)), ('dummy', (None, None))]
    >>> config["indexer_types"] = ["full"] * 3
    >>> _with_latent_sources([CacheLayer(INDEXED)] * 3, config)[2].latent
    (0, 0)
    """
    if size_of(config.get("kv_lora_rank")) is None:
        return found
    no_rope, sources, kinds = (config.get(key) for key in ("no_rope_layers", "kv_source_layers", "indexer_types"))
    no_rope, sources = (given if isinstance(given, list) else [] for given in (no_rope, sources))
    kinds = kinds if isinstance(kinds, list) else []
    changed = []
    for index, layer in enumerate(found):
        if layer.keeps_keys and index < len(sources) and sources[index] != index:
            shared = index < len(kinds) and kinds[index] == "shared"
            layer = CacheLayer("dummy") if shared else dataclasses.replace(layer, latent=(0, 0))
        elif layer.keeps_keys and index < len(no_rope) and no_rope[index] == 0:
            layer = dataclasses.replace(layer, latent=(layer.latent[0], 0))
        changed.append(layer)
    return changed


def _from_fields(config: Mapping[str, Any], layers: int) -> list[CacheLayer]:
    config = language_model_config(config)
    window = size_of(config.get("sliding_window")) if config.get("use_sliding_window", True) is not False else None
    chunk = size_of(config.get("attention_chunk_size"))
    types = config.get("layer_types")
    overrides = _overrides(config.get("per_layer_config"))
    sliding = _sliding_fields(config)
    found = []
    for layer in range(layers):
        if isinstance(types, list):  # a layer it does not list is taken at full length: a plan errs on the safe side
            kind = str(types[layer]) if layer < len(types) else FULL
        elif window is not None:
            kind = "sliding_attention"
        else:
            kind = "chunked_attention" if chunk is not None else FULL
        own = {**sliding, **overrides.get(layer, {})} if "sliding" in kind else overrides.get(layer, {})
        found.append(CacheLayer(kind, chunk if kind == "chunked_attention" else window if "sliding" in kind else None,
                                *_own_shape(own)))  # fmt: skip
    return _with_latent_sources(_with_indexers(found, config), config)


def _own_shape(own: Mapping[str, Any]) -> tuple[int | None, int | None, tuple[int | None, int | None]]:
    """A layer's own ``head_dim``, ``num_key_value_heads`` and MLA latent, from the fields the config gives it."""
    latent = (size_of(own.get("kv_lora_rank")), size_of(own.get("qk_rope_head_dim")))
    return size_of(own.get("head_dim")), size_of(own.get("num_key_value_heads")), latent


def _overrides(given: Any) -> dict[int, Mapping[str, Any]]:
    """A config's ``per_layer_config`` (transformers' heterogeneous configs: a layer's index, as an int or a string
    such as ``"05"``, to the fields that differ for that layer) by layer index; empty when it gives none.

    >>> _overrides({"05": {"head_dim": 512}, "x": {}}), _overrides(None)
    ({5: {'head_dim': 512}}, {})
    """
    if not isinstance(given, Mapping):
        return {}
    found = {}
    for key, fields in given.items():
        with contextlib.suppress(TypeError, ValueError):
            if isinstance(fields, Mapping) and not isinstance(key, bool):
                found[int(key)] = fields
    return found


# Fields some configs give their sliding-window layers' attention (Inkling's), under the names of the model's own
_SLIDING_NAMES = {
    "swa_head_dim": "head_dim",
    "swa_num_key_value_heads": "num_key_value_heads",
    "swa_kv_lora_rank": "kv_lora_rank",
    "swa_qk_rope_head_dim": "qk_rope_head_dim",
}


def _sliding_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """The shape a config gives its sliding-window layers of their own (``swa_head_dim``,
    ``swa_num_key_value_heads``), under the model's names; empty when they have the model's.

    >>> _sliding_fields({"swa_num_key_value_heads": 16, "num_key_value_heads": 8})
    {'num_key_value_heads': 16}
    >>> _sliding_fields({"model_type": "mimo_v2_flash", "num_key_value_heads": 4})
    {'num_key_value_heads': 8}
    """
    found = {name: config[key] for key, name in _SLIDING_NAMES.items() if size_of(config.get(key)) is not None}
    heads = size_of(config.get("num_key_value_heads"))
    if config.get("model_type") == "mimo_v2_flash" and heads is not None:
        # transformers' MiMoV2FlashAttention gives its sliding layers twice num_key_value_heads in its code (the
        # released model's 8 to 4); its config says nothing of it
        found["num_key_value_heads"] = 2 * heads
    return found


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """A config class's warnings about its fields silenced: the plan reads the config, it does not run the model."""
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@functools.lru_cache(maxsize=64)
def config_class(model_type: str) -> Any:
    """transformers' config class for ``model_type`` (``MptConfig`` for ``"mpt"``), not built; None when transformers
    is not installed or does not know the type."""
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        return CONFIG_MAPPING[model_type]
    except Exception:  # not installed, too old, a failing import, or a model type it does not know
        return None


def _looped(text: Any) -> tuple[int, int, int] | None:
    """The layers a model runs more than once, each pass with caches of its own, as (the first, the one after the
    last, the passes); None for other models. transformers appends a copy of those layers' caches for each pass after
    the first (``cache.layers +=`` in the model's forward), under fields of each model's own.

    >>> from types import SimpleNamespace as Config
    >>> _looped(Config(loop_layer_index_start=6, loop_layer_index_end=18, loop_num_passes=3))
    (6, 18, 3)
    >>> dory = Config(n_input_layers=8, n_recurrent_layers=20, n_recurrent_loops=2, recurrent_kv_cache_mode="per_loop")
    >>> _looped(dory)
    (8, 28, 2)
    """
    passes = size_of(getattr(text, "loop_num_passes", None))  # Inkling 2 Loop
    if passes is not None:
        start, end = getattr(text, "loop_layer_index_start", None), getattr(text, "loop_layer_index_end", None)
    else:  # Dory, unless its recurrent layers keep the last pass's cache alone (recurrent_kv_cache_mode "last_loop")
        passes = size_of(getattr(text, "n_recurrent_loops", None))
        start, count = getattr(text, "n_input_layers", None), size_of(getattr(text, "n_recurrent_layers", None))
        end = start + count if isinstance(start, int) and count is not None else None
        if getattr(text, "recurrent_kv_cache_mode", None) != "per_loop":
            return None
    if passes is None or not isinstance(start, int) or not isinstance(end, int) or not 0 <= start < end:
        return None
    return start, end, passes


def _from_transformers(config: Mapping[str, Any], layers: int) -> list[CacheLayer] | None:
    """The layers transformers' DynamicCache would make for ``config``'s ``layers`` layers; None when transformers
    cannot tell (not installed, too old to say, a model type it does not know, a config its class refuses, or one it
    reads with another count of layers)."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        return None
    try:
        import transformers
        from transformers.cache_utils import get_layer_types_and_kwargs
    except Exception:  # not installed, too old, or an import that fails (a malformed HF_ENDPOINT): read the fields
        return None
    fields = {key: value for key, value in config.items() if key != "model_type"}
    try:
        with _quiet(logging.getLogger("transformers")):
            built = transformers.AutoConfig.for_model(model_type, **fields)
            text = built.get_text_config(decoder=True)
            types, arguments = get_layer_types_and_kwargs(text)
            # a heterogeneous config (Gemma 4 makes one of global_head_dim) gives each layer's own fields
            heterogeneous = getattr(text, "is_heterogeneous", False) is True
            written = text.to_dict()
            overrides = _overrides(written.get("per_layer_config")) if heterogeneous else {}
            sliding = _sliding_fields(written)
            loops = _looped(text)
            own_count = text.num_hidden_layers
            aliases = getattr(type(text), "attribute_map", None) or {}
    except Exception:  # a config class validates its fields as it likes: then the fields are read as they are
        return None
    # A class may write its layer count otherwise than it reads it: Dory's config.json counts each layer's attention
    # and MLP as two blocks (72 for its 36 layers), which its class halves. Or it writes none and works it out from
    # fields of its own: LongCat-Flash's num_layers counts layers of two attention blocks each, a cache for each (a
    # decoder's own count stays the decoder's: ProphetNet works its count out as its encoder's)
    works_it_out = "num_hidden_layers" not in written and "num_hidden_layers" not in aliases and not any(
        key in written for key in ("num_decoder_layers", "decoder_layers"))  # fmt: skip
    if len(types) != layers and not (
        len(types) == own_count and (written.get("num_hidden_layers") == layers or works_it_out)
    ):
        return None
    found = []
    for index, (kind, given) in enumerate(zip(types, arguments, strict=False)):
        own = {**sliding, **overrides.get(index, {})} if "sliding" in str(kind) else overrides.get(index, {})
        found.append(CacheLayer(str(kind), size_of(given.get("sliding_window")), *_own_shape(own)))
    found = _with_indexers(found, written)  # as the class works indexer_types out (Hunyuan V4's, from its layers)
    found = _with_latent_sources(found, written)  # and no_rope_layers, kv_source_layers (Mistral Large 4's)
    if loops is not None and loops[1] <= len(found):
        start, end, passes = loops
        found += [dataclasses.replace(layer, repeat=True) for layer in found[start:end] * (passes - 1)]
    return found
