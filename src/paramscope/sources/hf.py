"""Hugging Face models: built from a ``config.json`` on the meta device, or read from the Hub (config and headers).

From a config, ``transformers`` builds the model inside ``torch.device("meta")``: every parameter gets its exact
shape and no memory, so a 70B model is counted in about a second, LM head included (the class named in
``architectures[0]`` is used, not a bare ``AutoModel`` that would leave the head out). From the Hub, only
``config.json`` and the safetensors headers are fetched (HTTP range requests, through ``huggingface_hub``); no
weight is downloaded.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import SourceError, TargetError, UsageError, first_line, is_meta_device_failure, raise_if_interrupted
from .._report import Report
from .._units import listed
from ._json import loads as json_loads
from ._logged import logged
from .checkpoint import MAX_CONFIG_BYTES
from .quantization import declared_quantization

if TYPE_CHECKING:
    from .._check import Loading

HUB_PREFIX = "hf:"


def _transformers() -> Any:
    from .hub import check_endpoint
    from .target import require

    check_endpoint()  # transformers imports huggingface_hub, whose import fails on a malformed HF_ENDPOINT
    require("transformers", "hf", "building a model from its config")
    import transformers

    return transformers


def _failing_module(traceback: Any) -> str | None:
    """The class of the innermost module whose ``__init__`` was running when an exception was raised."""
    from torch import nn

    found = None
    while traceback is not None:
        frame = traceback.tb_frame
        owner = frame.f_locals.get("self")
        if frame.f_code.co_name == "__init__" and isinstance(owner, nn.Module):
            found = type(owner).__name__
        traceback = traceback.tb_next
    return found


def read_config_file(path: Path, name: str | None = None) -> dict[str, Any]:
    """A config.json as a dict, with one-line errors that start with ``name`` (else the path)."""
    where = name or path
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise SourceError(f"{where}: larger than 16 MiB, not a model config")
        data = json_loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SourceError(f"{where}: cannot be read: {error.strerror or error}") from None
    except ValueError as error:
        raise SourceError(f"{where}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise SourceError(f"{where}: not a JSON object, so not a model config")
    return data


def _message(error: BaseException) -> str:
    """``first_line``, with the line after it when the first only introduces it (``Validation error for field 'x':``
    is followed by the actual reason in huggingface_hub's strict dataclasses, which transformers' configs use)."""
    message = first_line(error)
    if message.endswith(":"):
        with contextlib.suppress(Exception):
            lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
            message = " ".join(lines[:2])
    return message


def _load_config(config_file: Path, trust_remote_code: bool, shown: str) -> Any:
    """The config transformers reads from ``config_file``; errors start with ``shown``."""
    transformers = _transformers()
    # a directory finds config.json and the custom code beside it; a config under another name is read as a file
    source = config_file.parent if config_file.name == "config.json" else config_file
    try:
        return transformers.AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as error:  # transformers' own parsing and validation: any value of config.json can fail it
        if isinstance(error, ValueError) and "trust_remote_code" in str(error):
            raise TargetError(
                f"{shown}: the model is defined by custom code in its repository; pass --trust-remote-code to run "
                "that code (only for code you trust)"
            ) from None
        raise SourceError(
            f"{shown}: not a config transformers can read ({type(error).__name__}: {_message(error)})"
        ) from None


def _shown(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _architecture(config: Any, shown: str) -> str | None:
    """``architectures[0]`` of the config: a list of class names, or nothing."""
    architectures = getattr(config, "architectures", None)
    if architectures is None or architectures == []:
        return None
    if not isinstance(architectures, list) or not all(isinstance(name, str) and name for name in architectures):
        raise SourceError(
            f"{shown}: architectures is {_shown(architectures)}, not a list of model class names such as "
            '["LlamaForCausalLM"]; name the class to build with --model-class NAME'
        )
    first: str = architectures[0]
    return first


def _concrete_class(config: Any) -> str | None:
    """A model class transformers' Auto classes build for the config's model_type (with an LM head when it has one)."""
    try:
        from transformers.models.auto import modeling_auto

        model_type = getattr(config, "model_type", None)
        if not isinstance(model_type, str):
            return None
        for names in (modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, modeling_auto.MODEL_MAPPING_NAMES):
            name = names.get(model_type)
            if isinstance(name, str):
                return name
    except Exception:  # transformers' internal tables: without them, no suggestion
        return None
    return None


def _close_classes(name: str) -> str:
    """A hint naming the model classes of transformers' Auto tables closest to ``name`` (a typo), or nothing."""
    try:
        from transformers.models.auto import modeling_auto

        classes: set[str] = set()
        for key, table in vars(modeling_auto).items():
            if key.endswith("_MAPPING_NAMES") and isinstance(table, dict):
                for value in table.values():
                    classes.update(item for item in (value if isinstance(value, (tuple, list)) else (value,))
                                   if isinstance(item, str))  # fmt: skip
    except Exception:  # transformers' internal tables: without them, no suggestion
        return ""
    close = difflib.get_close_matches(name, sorted(classes), n=3, cutoff=0.8)
    return f" (close names: {', '.join(close)})" if close else ""


def _is_abstract(cls: Any, base: type) -> bool:
    """PreTrainedModel, or a subclass that adds no ``__init__`` to it (each family's XPreTrainedModel): it holds shared
    methods only, and built it has no weights at all. Model classes without an ``__init__`` of their own inherit one
    that creates weights (MistralForSequenceClassification, from GenericForSequenceClassification)."""
    if not (isinstance(cls, type) and issubclass(cls, base)):
        return False
    below = cls.__mro__[: cls.__mro__.index(base)]
    return not any("__init__" in vars(klass) for klass in below)


def _model_class(config: Any, shown: str, model_class: str | None, trust_remote_code: bool) -> Any:
    transformers = _transformers()
    if model_class is not None and not model_class.strip():  # not taken for "no class given"
        raise TargetError(f"--model-class {model_class!r} names no class")
    name = model_class or _architecture(config, shown)
    if name is None:
        unbuilt = _not_an_auto_model(transformers, config)
        if unbuilt:
            raise TargetError(f"{shown}: config.json names no architecture, and {unbuilt}")
        return transformers.AutoModel, "AutoModel (config.json names no architecture)"
    auto_map = _auto_map(config, shown, refuse=trust_remote_code)
    custom = _custom_auto_class(auto_map, name)
    if custom is not None and not hasattr(transformers, custom):  # an Auto class of another version of transformers
        custom = None  # (transformers 5 has no AutoModelForVision2Seq, which repositories still map)
    if custom is not None and trust_remote_code:
        # as transformers' Auto class builds it with trust_remote_code, even where it has a class of that name
        return getattr(transformers, custom), f"{name} (custom code, through {custom})"
    try:
        cls = getattr(transformers, name, None)
        buildable = (
            cls is None or (isinstance(cls, type) and hasattr(cls, "from_config")) or hasattr(cls, "_from_config")
        )
    except ImportError as error:  # a class whose library is missing is a stand-in that raises on any attribute
        raise TargetError(f"{shown}: building {name} failed: {type(error).__name__}: {_message(error)}") from None
    if not buildable:
        raise TargetError(f"{name} is not a model class of transformers (it cannot be built from a config)")
    if cls is None:
        if trust_remote_code and auto_map:
            auto = "AutoModelForCausalLM" if "AutoModelForCausalLM" in auto_map else "AutoModel"
            if auto not in auto_map:  # transformers' own class of the config's model type, if it has one
                return getattr(transformers, auto), f"{auto} (auto_map names no {name}, nor {auto})"
            built = str(auto_map[auto]).rpartition(".")[2]
            return getattr(transformers, auto), f"{built} (custom code, through {auto}: auto_map names no {name})"
        if auto_map:
            raise TargetError(
                f"{name} is defined by custom code in the model's repository; pass --trust-remote-code to run it "
                "(only for code you trust)"
            )
        # given a class that is not there, a hint names close ones; a config's architecture, the way to another
        hint = _close_classes(name) if model_class else " (use --model-class NAME)"
        raise TargetError(f"transformers {transformers.__version__} has no class {name!r}{hint}")
    if _is_abstract(cls, transformers.PreTrainedModel):
        concrete = _concrete_class(config)
        such = f" (such as {concrete})" if concrete else ""
        where = f"--model-class {name}" if model_class else f"{shown}: architectures names {name}"
        raise TargetError(
            f"{where}, an abstract base class of transformers with no weights of its own (it would count 0 "
            f"parameters); pass the model class to build with --model-class NAME{such}"
        )
    if custom is not None:  # transformers' own class, as its Auto class builds without trust_remote_code
        return cls, (f"transformers' own {name} (the repository maps it to custom code, {auto_map[custom]}, which "
                     "--trust-remote-code builds)")  # fmt: skip
    others = [f"{auto} to {target}" for auto, target in auto_map.items()
              if auto.startswith("AutoModel") and isinstance(target, str) and not model_class]  # fmt: skip
    if others and isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
        # the architecture is transformers' own; an Auto class of the repository's builds another (its own code)
        auto = others[0].partition(" ")[0]
        return cls, (f"{name} (transformers' own; auto_map maps {', '.join(others)}: --model-class {auto} "
                     "--trust-remote-code builds that)")  # fmt: skip
    mapped = auto_map.get(name) if trust_remote_code else None
    if isinstance(mapped, str):  # an Auto class named: it builds the class the repository maps it to
        return cls, f"{mapped.rpartition('.')[2]} (custom code, through {name})"
    return cls, name


def _auto_map(config: Any, shown: str, *, refuse: bool = True) -> dict[str, Any]:
    """The config's ``auto_map`` (Auto class → the repository's ``module.Class``); empty without one. One that is no
    mapping is refused where custom code is to be found in it (``refuse``), else passed over, as transformers passes
    it over when it builds a class of its own."""
    auto_map = getattr(config, "auto_map", None)
    if auto_map is None or (not refuse and not isinstance(auto_map, dict)):
        return {}
    if not isinstance(auto_map, dict):
        raise TargetError(f"{shown}: auto_map is {type(auto_map).__name__}, not a mapping of Auto classes to the "
                          "repository's classes")  # fmt: skip
    return auto_map


def _custom_auto_class(auto_map: dict[str, Any], name: str) -> str | None:
    """The Auto model class that ``auto_map`` maps to the repository's class ``name`` (``"mod.MyModel"``, or
    ``"org/repo--mod.MyModel"``); None when no entry names it.

    >>> _custom_auto_class({"AutoConfig": "mod.MyConfig", "AutoModelForCausalLM": "mod.MyLM"}, "MyLM")
    'AutoModelForCausalLM'
    """
    for auto, target in auto_map.items():
        if auto.startswith("AutoModel") and isinstance(target, str) and target.rpartition(".")[2] == name:
            return auto
    return None


# the attention implementations a model on meta or the cpu can be built with, and run
_BUILDABLE_ATTENTION = frozenset({"eager", "sdpa", "flex_attention"})


def _default_attention(config: Any) -> list[str]:
    """Clear an attention implementation config.json asks for that needs kernels installed and a GPU (FlashAttention,
    a kernels repository), which transformers checks while it builds the model and refuses without: the model is
    built with transformers' default (sdpa where the class takes it), which holds the same parameters. A note says
    so."""
    asked = vars(config).get("_attn_implementation_internal")
    if not isinstance(asked, str) or asked in _BUILDABLE_ATTENTION:
        return []
    config._attn_implementation = None  # transformers' own way back to its default choice
    return [f"config.json asks for {asked} attention, which needs its kernels and a GPU: built with transformers' "
            "default attention, which holds the same parameters"]  # fmt: skip


def _class_of_the_model_type(cls: Any, label: str, config: Any, shown: str, model_class: str | None) -> tuple[Any, str]:
    """The class transformers' Auto classes build where config.json's ``architectures`` names a class of another
    model type (MistralForCausalLM for a config of model type mixtral): the class of the config's model type that the
    same Auto class maps (MixtralForCausalLM, as AutoModelForCausalLM builds it). Built from the config as it is, the
    named class would read another model's fields (a dense Mistral of a Mixtral's, its experts gone, or an
    AttributeError). ``cls`` itself where it takes the config, its text part or one of its parts, or was given with
    ``--model-class``."""
    wanted = getattr(cls, "config_class", None)
    if model_class is not None or not isinstance(wanted, type) or isinstance(config, wanted):
        return cls, label
    if any(isinstance(part, wanted) for part in _parts(config)):
        return cls, label  # a part of the model, built from its part of the config (see _config_for, _part_config)
    from transformers.models.auto import modeling_auto

    model_type, other = getattr(config, "model_type", None), getattr(wanted, "model_type", None)
    tables = {name: table for name, table in vars(modeling_auto).items() if re.fullmatch("MODEL_.*MAPPING_NAMES", name)}
    # a task's table before the base model's and those that list every task's heads (pre-training's, with an LM
    # head's): RobertaForMaskedLM is AutoModelForMaskedLM's, whose class for model type bert is BertForMaskedLM
    broad = ("MODEL_MAPPING_NAMES", "MODEL_FOR_PRETRAINING_MAPPING_NAMES", "MODEL_WITH_LM_HEAD_MAPPING_NAMES")
    for name in sorted(tables, key=lambda name: name in broad):
        table = tables[name]
        if table.get(other) == cls.__name__ and isinstance(table.get(model_type), str):
            found = getattr(_transformers(), table[model_type], None)
            if found is cls:  # transformers builds this class for the config's type too (internlm3's Llama)
                return cls, label
            if isinstance(found, type):
                return found, (f"{found.__name__} (config.json's architectures names {cls.__name__}, a model of type "
                               f"{other}; transformers' Auto classes build {found.__name__} for model type "
                               f"{model_type})")  # fmt: skip
    raise TargetError(
        f"{shown}: architectures names {cls.__name__}, a model of type {other}, but model_type is {model_type!r}; "
        "pass --model-class with a class of that type"
    )


def _parts(config: Any) -> list[Any]:
    """The configs of a composite config's parts (its ``text_config``, ``vision_config``...), as loaded: a class
    declares some as AutoConfig, which any config of a part is."""
    sub_configs = getattr(config, "sub_configs", None)
    keys = list(sub_configs) if isinstance(sub_configs, dict) else []
    return [part for key in keys if (part := getattr(config, key, None)) is not None]


def _config_for(cls: Any, config: Any) -> tuple[Any, list[str]]:
    """The config to build ``cls`` from, and a note when it is not the whole of config.json: a class of the language
    model alone (Llama4ForCausalLM, Qwen3_5ForCausalLM) named with the config of the multimodal model around it gets
    its ``text_config``, as transformers' Auto classes give it (the class itself reads fields the outer config lacks,
    such as vocab_size, and raises)."""
    wanted = getattr(cls, "config_class", None)
    if not isinstance(wanted, type) or isinstance(config, wanted) or not hasattr(config, "get_text_config"):
        return config, []
    text = config.get_text_config()
    takes_it = isinstance(text, wanted)  # declared as AutoConfig (Llava's): the config loaded tells
    if text is config or not takes_it:
        return config, []
    quantization = getattr(config, "quantization_config", None)
    if quantization is not None:  # as transformers does: the outer config's quantisation applies to the text model
        text.quantization_config = quantization
    return text, [f"{cls.__name__} is built from the config's text_config ({type(text).__name__}), as transformers' "
                  "Auto classes build it"]  # fmt: skip


def _part_config(cls: Any, config: Any) -> tuple[Any, list[str]]:
    """The config to build ``cls`` from when it is the model of one part of the model config.json describes (a
    SiglipVisionModel or CLIPVisionModel named with a SigLIP or CLIP config), and a note: that part's config, under
    its config class's ``base_config_key`` (``vision_config``), as transformers' ``from_pretrained`` reads it; built
    from the whole config, the class reads fields it lacks (hidden_size) and raises."""
    wanted = getattr(cls, "config_class", None)
    if not isinstance(wanted, type) or isinstance(config, wanted):
        return config, []
    key = getattr(wanted, "base_config_key", None)
    part = getattr(config, key, None) if isinstance(key, str) and key else None
    if not isinstance(part, wanted):
        return config, []
    return part, [f"{cls.__name__} is built from the config's {key} ({type(part).__name__}), as transformers loads it"]


# Layers of a config's model built at most: ten times the deepest models' (Llama 3.1 405B has 126), and some 45 s of
# building (with transformers 5: about 4 s for each thousand layers, 0.8 GB for 10,000 layers of 64 features).
_MAX_BUILT_LAYERS = 10_000


def _check_depth(config: Any, shown: str) -> None:
    """Refuse a config whose model, or any stack in it (an encoder's, a vision tower's), has more layers than any
    model: it would make that many modules, and hold them all."""
    from .._memory import decoder_layers

    values = config.to_dict()
    try:
        decoder_layers(values, _MAX_BUILT_LAYERS)
    except UsageError as error:
        raise SourceError(f"{shown}: {error}") from None
    for name, layers in _layer_counts(values):
        if layers > _MAX_BUILT_LAYERS:
            raise SourceError(
                f"{shown}: {name} {layers:,} is more layers than any model has (at most {_MAX_BUILT_LAYERS:,})"
            )
        key = name.rpartition(".")[2]
        if layers < 0 and (key.startswith(("num_", "n_")) or key.endswith("_layers")):  # not vision_feature_layer
            raise SourceError(f"{shown}: {name} {layers:,} is not a number of layers")


# the fields that count a stack's layers, by name: num_hidden_layers, encoder_layers, num_decoder_layers, n_layer,
# depth; blocks (num_encoder_blocks, stage_num_blocks, num_res_blocks, Funnel's block_sizes and block_repeats), each
# a module of its own too; depths and Funnel's block sizes (a count per stage) are added up. Not experts: transformers
# 5 holds a layer's experts in one tensor (Doge's 16,384 among them)
_LAYER_COUNT = re.compile(r"(?:^|_)(?:layers?|depths?|blocks?|block_sizes|block_repeats)$")
_PER_STAGE = ("depths", "block_sizes")


def _layer_counts(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, int]]:
    """Each layer count in a config's values (a sub-config's named by its path: ``vision_config.num_hidden_layers``);
    a list of them as its largest item, or, for counts per stage, as their sum."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _layer_counts(value, f"{name}.")
        elif isinstance(key, str) and _LAYER_COUNT.search(key):
            counts = value if isinstance(value, list) else [value]
            if counts and all(isinstance(count, int) and not isinstance(count, bool) for count in counts):
                if not isinstance(value, list) and value < 0:  # a list may be of layers' indices, -1 the last
                    yield name, value
                else:
                    yield name, sum(counts) if key.endswith(_PER_STAGE) else max(counts)


def _not_an_auto_model(transformers: Any, config: Any) -> str:
    """Why transformers' AutoModel cannot build ``config``'s model (it maps no class to the config's, a sub-model's
    config or one of a model only built with a task's head), with the classes its other Auto classes build for the
    model type; empty when it can."""
    custom = "AutoModel" in (getattr(config, "auto_map", None) or {})
    # the mapping AutoModel.from_config looks the config's class up in (no public way to ask it)
    if custom or type(config) in transformers.AutoModel._model_mapping:
        return ""
    from transformers.models.auto import modeling_auto

    model_type = getattr(config, "model_type", "")
    tables = [table for name, table in vars(modeling_auto).items() if re.fullmatch("MODEL_.*MAPPING_NAMES", name)]
    classes = sorted({table[model_type] for table in tables if isinstance(table.get(model_type), str)})
    unknown = f"transformers' AutoModel builds no model of type {model_type!r}"
    if not classes:
        return f"{unknown}: give --model-class with the class to build"
    one_of = "" if len(classes) == 1 else ", one of"
    return f"{unknown}: give --model-class{one_of} {listed(classes, 5)}"


def declared_dtype_note(dtype: str) -> str:
    """The note of a model built in ``dtype``, the dtype its config.json declares."""
    return f"parameters in {dtype}, the dtype config.json gives"


def _declared_dtype(config: Any) -> Any:
    """The dtype a config gives (a name or a torch.dtype), or None."""
    # vars(): transformers warns when the deprecated torch_dtype attribute is read
    return vars(config).get("dtype") or vars(config).get("torch_dtype")


def _keep_in_float32(model: Any, dtype: Any) -> tuple[list[str], list[str]]:
    """Put the tensors transformers keeps in float32 when it loads the model in ``dtype`` in float32, as it does, and
    return their names, and the class's lists that named them. A model loaded in float16 keeps its
    ``_keep_in_fp32_modules`` (T5's ``wo``, BLIP-2's Q-Former) in float32, and one in float16 or bfloat16 its
    ``_keep_in_fp32_modules_strict``: its loader casts the state dict's tensors whose names these globs find
    (``model._get_dtype_plan``), which building alone does not."""
    try:  # the loader's own matching of the globs: searched anywhere in a name, the group found gives the dtype
        from transformers.core_model_loading import build_glob_alternation
    except ImportError:  # a transformers without it has no dtype plan either
        return [], []
    plan_of = getattr(model, "_get_dtype_plan", None)
    plan = plan_of(dtype) if callable(plan_of) else None
    if not plan:
        return [], []
    strict = set(getattr(model, "_keep_in_fp32_modules_strict", None) or ())
    pattern, glob_of_group, _ = build_glob_alternation(list(plan))
    kept, lists, seen = [], set(), set()
    for name, tensor in model.state_dict(keep_vars=True).items():  # the keys a checkpoint holds, tied names too
        found = pattern.search(name)
        if found is None or id(tensor) in seen or not tensor.is_floating_point():
            continue
        seen.add(id(tensor))
        glob = glob_of_group[str(found.lastgroup)]
        if tensor.dtype != plan[glob]:
            tensor.data = tensor.data.to(plan[glob])
            kept.append(name)
            lists.add("_keep_in_fp32_modules_strict" if glob in strict else "_keep_in_fp32_modules")
    return kept, sorted(lists)


@contextlib.contextmanager
def _building(shown: str, what: str, device: str) -> Iterator[None]:
    try:
        yield
    except (TargetError, SourceError, UsageError):
        raise
    except Exception as error:
        raise_if_interrupted(error)
        where = _failing_module(error.__traceback__)
        inside = f" in {where}.__init__" if where else ""
        message = _message(error)
        hint = ""
        if device == "meta" and is_meta_device_failure(error):
            hint = "; the model needs real tensors while it is built: try --device cpu"
        raise TargetError(f"{shown}: building {what} on {device} failed{inside}: {type(error).__name__}: "
                          f"{message}{hint}") from None  # fmt: skip


def build_from_config(
    config_path: Path,
    *,
    model_class: str | None = None,
    trust_remote_code: bool = False,
    device: str = "meta",
    name: str | None = None,
) -> tuple[Any, list[str]]:
    """Build the model a config.json describes, on ``device``; returns the model and notes. Errors name the config
    as ``name`` (``hf:org/name: config.json`` for one from the Hub, not its place in the Hub cache), else by its
    path."""
    config_file = config_path / "config.json" if config_path.is_dir() else config_path
    shown = name or str(config_file)
    # read as JSON first: transformers' own error for a file that is not JSON names its path (the Hub cache's)
    read_config_file(config_file, shown)
    _transformers()
    with logged("transformers") as warned:
        try:
            model, notes = _build(config_file, shown, model_class, trust_remote_code, device, config_path)
        except (SourceError, TargetError) as error:
            if not warned.texts:
                raise
            raise type(error)(f"{error}{warned.said('transformers')}") from None
    return model, [*notes, *warned.notes("transformers")]


def _build(
    config_file: Path, shown: str, model_class: str | None, trust_remote_code: bool, device: str, config_path: Path
) -> tuple[Any, list[str]]:
    import torch

    config = _load_config(config_file, trust_remote_code, shown)
    _check_depth(config, shown)
    attention_note = _default_attention(config)
    cls, label = _model_class(config, shown, model_class, trust_remote_code)
    cls, label = _class_of_the_model_type(cls, label, config, shown, model_class)
    whole = config
    config, text_note = _config_for(cls, config)
    # a text_config without a dtype of its own has its weights in the dtype of the config around it
    dtype = _declared_dtype(config) or _declared_dtype(whole)
    if config is whole:
        config, part_note = _part_config(cls, config)
        if part_note:  # transformers reads that part's config alone: its own dtype, if any
            text_note, dtype = part_note, _declared_dtype(config)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    # an Auto class is not a model class (Autoformer's classes are, whatever their names say)
    auto = not (isinstance(cls, type) and issubclass(cls, _transformers().PreTrainedModel))
    custom = _auto_map(config, shown).get(cls.__name__) if auto else None
    if custom and not trust_remote_code:
        raise TargetError(
            f"{shown}: {cls.__name__} is mapped to custom code in the model's repository ({custom}); pass "
            "--trust-remote-code to run it (only for code you trust)"
        )
    # Always said to an Auto class: left out, transformers asks on the terminal whether to run the custom code (and
    # runs it on a "y"), or waits for an answer.
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code} if auto else {}
    if isinstance(dtype, torch.dtype):
        kwargs["dtype"] = dtype
    notes = [f"built {label} from {config_path} on {device}", *text_note, *attention_note]
    if isinstance(dtype, torch.dtype):
        notes.append(declared_dtype_note(str(dtype).removeprefix("torch.")))
    elif dtype is None:
        notes.append("config.json gives no dtype: parameters in torch's default, float32 (transformers' "
                     "from_pretrained takes the dtype of the weights it loads)")  # fmt: skip
    quantization = declared_quantization(vars(config))
    if quantization:
        notes.append(
            f"config.json declares quantisation ({quantization}), which building from a config does not apply: the "
            "counts are the model's, the bytes those of unquantised weights; inspect the checkpoint for its stored "
            "bytes"
        )
    # Auto classes build through from_config; model classes through _from_config, which applies the dtype.
    build = cls.from_config if auto else cls._from_config
    with _building(shown, label, device), torch.device(device):
        model = build(config, **kwargs)
        kept, lists = _keep_in_float32(model, dtype) if isinstance(dtype, torch.dtype) else ([], [])
    if kept:
        notes.append(
            f"{len(kept):,} tensor(s) kept in float32 ({listed(kept)}), as transformers loads the model in "
            f"{str(dtype).removeprefix('torch.')} (the class's {' and '.join(lists)})"
        )
    return model, notes


def config_report(
    config_path: Path,
    *,
    model_class: str | None = None,
    trust_remote_code: bool = False,
    device: str = "meta",
    explain: bool = False,
    target: str | None = None,
    quiet: bool = False,
    name: str | None = None,
) -> Report:
    """The report of the model a config.json describes (``source.kind == "hf-config"``); errors name the config as
    ``name``, else by its path."""
    from dataclasses import replace

    from .._progress import status
    from .module import inspect_module

    with status(f"building the model of {config_path} on {device}", quiet=quiet):
        model, notes = build_from_config(
            config_path, model_class=model_class, trust_remote_code=trust_remote_code, device=device, name=name
        )
    report = inspect_module(model, target=target or os.fspath(config_path), device=device, explain=explain)
    source = replace(report.source, kind="hf-config", files=(os.fspath(config_path),))
    return replace(report, source=source, notes=(*notes, *report.notes))


def checkpoint_loading(model: Any) -> Loading:
    """How transformers matches a checkpoint's keys with ``model``'s when it loads them: renamed, prefixed, ignored.

    Recent transformers build some architectures differently from their checkpoints (Mixtral's experts fused into
    one tensor, stored one by one); their loader's own conversion mapping says how each stored name maps. The loader
    also adds or removes ``base_model_prefix`` between a base model and a model with a head, and does not report
    the keys a model lists in ``_keys_to_ignore_on_load_missing``/``_unexpected``.
    """
    from .._check import Loading

    ignore_unexpected = set(getattr(model, "_keys_to_ignore_on_load_unexpected", None) or ())
    buffers = [name for name, _ in model.named_buffers()]
    # transformers also ignores stale per-layer rotary inv_freq and position_ids buffers of older checkpoints
    if any(name.endswith("rotary_emb.inv_freq") for name in buffers):
        ignore_unexpected.add(r"rotary_emb\.inv_freq")
    if any(name.endswith("position_ids") for name in buffers):
        ignore_unexpected.add(r"(^|\.)position_ids$")
    return Loading(
        _conversion_renamer(model),
        getattr(model, "base_model_prefix", "") or "",
        tuple(sorted(getattr(model, "_keys_to_ignore_on_load_missing", None) or ())),
        tuple(sorted(ignore_unexpected)),
    )


def _conversion_renamer(model: Any) -> Callable[[str], tuple[str, bool]] | None:
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming
    except ImportError:  # an older transformers: checkpoints have the model's names
        return None
    try:
        transforms = get_model_conversion_mapping(model)
    except Exception:  # the mapping is transformers' internals: without it, names are compared as stored
        return None
    if not transforms:
        return None

    def rename(name: str) -> tuple[str, bool]:
        converted = False
        for transform in transforms:
            name, matched = transform.rename_source_key(name)
            converted = converted or (matched is not None and not isinstance(transform, WeightRenaming))
        return name, converted

    return rename
