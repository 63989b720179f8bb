"""``paramscope.memory``: find the model, its config and its inputs, measure the activations, plan the budget.

The arithmetic is in ``_memory.py``; this module gathers what it needs: the Report, the decoder config (for the
KV cache) and, when the user gives a batch of inputs, one forward on meta for the activations.
"""

from __future__ import annotations

import contextlib
import inspect as pyinspect
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import takewhile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._checks import flag, integer, one_of, parsed, shown, string
from ._errors import SourceError, TargetError, UsageError
from ._memory import (
    COMPUTE_DTYPES,
    COMPUTE_FLOATS,
    Label,
    MemorySettings,
    check_keep_fp32,
    decoder_layers,
    generates,
    main_dtype,
    plan,
)
from ._report import Report
from ._units import Units, format_bytes, format_count
from ._walk import ModuleWalk

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ._check import Loading
    from .sources.target import Request
    from .trace import ForwardError, Trace

Activations = tuple[int, Label, str]


@dataclass(frozen=True)
class _Measured:
    """What one forward on meta gives a plan (see :func:`measure_activations`)."""

    activations: Activations
    notes: list[str]
    trained: frozenset[str] | None = None
    """For training, the names of the parameters that get a gradient from it (None: all of them)."""
    checkpointed: int | None = None
    """The activations gradient checkpointing would leave when it is off (None: not measured, or no repeated
    blocks)."""
    recurrent_state: tuple[int, int] | None = None
    """For inference, the bytes of the recurrent states the returned cache holds and the layers holding them (None:
    none)."""
    kept_inputs: int = 0
    """Of the activations, the inputs of the checkpointed blocks or regions, kept whole on every tensor-parallel rank
    (without sequence parallelism)."""


_SHAPE = re.compile(r"\[(\d+(?:, \d+)*)\]")  # a tensor as a summary writes it: [8, 3, 224, 224]


def config_of(model: Any) -> dict[str, Any] | None:
    """A transformers model's config as a dict, or that of the one a module holds (:func:`held_model`); ``None`` for
    other models. A config built as an object, not loaded, names no architecture: a model class with a head
    (``...ForCausalLM``, ``...ForSequenceClassification``) is recorded as it, as ``save_pretrained`` would; a base
    model (``LlamaModel``, ``BertModel``) leaves the config's fields to tell whether it is a decoder."""
    to_dict = _config_to_dict(model)
    if to_dict is None:
        held = held_model(model)
        found = None if held is None else config_of(held[1])
        # an encoder it holds (a text encoder beside a decoder of its own) says nothing of the model's cache
        return found if found is not None and generates(found) else None
    found = to_dict()
    if not isinstance(found, dict):
        return None
    config = model.config
    parts = [(config, found)]
    if isinstance(found.get("text_config"), dict):  # a multimodal model's language model (Nemotron 3.5 Transcribe's)
        parts.append((getattr(config, "text_config", None), found["text_config"]))
    for part, written in parts:
        layers = _worked_out_layers(part, written)
        if layers is not None:
            written["num_hidden_layers"] = layers
    name = type(model).__name__
    if not found.get("architectures") and (not name.endswith("Model") or name.endswith("LMHeadModel")):
        found["architectures"] = [name]  # LlamaForCausalLM and BertLMHeadModel generate, ...ForTokenClassification not
    return found


def held_model(model: Any) -> tuple[str, nn.Module] | None:
    """The transformers model (a module with a config) that ``model``, a module without a config of its own, holds
    outermost: a LightningModule's or a serving wrapper's language model, DataParallel's module; with its path.
    ``None`` when it holds none, or several at that depth (a draft and a target model), whose caches differ."""
    from torch import nn

    if not isinstance(model, nn.Module):
        return None
    found = [(path, module) for path, module in ModuleWalk(model).each_module if path and _config_to_dict(module)]
    if not found:
        return None
    outermost = min(path.count(".") for path, _ in found)
    held = [(path, module) for path, module in found if path.count(".") == outermost]
    return held[0] if len(held) == 1 else None


def _config_to_dict(model: Any) -> Callable[[], Any] | None:
    """The ``to_dict`` of ``model``'s transformers config, if it has one."""
    to_dict = getattr(getattr(model, "config", None), "to_dict", None)
    return to_dict if callable(to_dict) else None


def _worked_out_layers(config: Any, written: Mapping[str, Any]) -> int | None:
    """A layer count ``config``'s class works out (a property: Nemotron-H's from layers_block_type), which its
    to_dict(), ``written``, leaves out; None where that has it (one the class maps to a field of its own, BART's
    encoder_layers, is there under that field's name) or the class works none out."""
    aliases = getattr(type(config), "attribute_map", None) or {}
    if written.get("num_hidden_layers") is not None or "num_hidden_layers" in aliases:
        return None
    with contextlib.suppress(Exception):  # a config class's property may raise as it likes
        layers = getattr(config, "num_hidden_layers", None)
        if isinstance(layers, int) and not isinstance(layers, bool):
            return layers
    return None


def _config_beside(target: str, used: bool) -> dict[str, Any] | None:
    """The config.json beside a checkpoint, if any that reads (one that does not is named in the checkpoint's notes
    already, which are counted without it, as ``inspect`` does). When it is ``used`` (to build the model and size its
    cache), a layer count beyond any model is refused first: both are worked out layer by layer."""
    from .sources.hf import read_config_file

    path = Path(target)
    file = (path if path.is_dir() else path.parent) / "config.json"
    if not file.is_file():
        return None
    try:
        config = read_config_file(file)
    except SourceError:
        return None
    if used:
        try:
            decoder_layers(config)
        except UsageError as error:
            raise SourceError(f"{file}: {error}") from None
    return config


def resolve(
    model: nn.Module | Report | str, request: Request, wants_forward: bool, as_stored: bool = False
) -> tuple[Report, nn.Module | None, dict[str, Any] | None, _Loaded | None]:
    """The report, the model to run (when one is needed and there is one), the decoder config, if any, and for a
    checkpoint's model built from the config beside it, how the one loads into the other; with ``as_stored``
    (inference in no dtype of the user's), a model built beside a checkpoint runs in the checkpoint's dtype."""
    from .sources.module import inspect_module

    if isinstance(model, Report):
        return model, None, None, None
    if not isinstance(model, str):
        from ._summary import module_of

        module = module_of(model)
        return inspect_module(module), module, config_of(module), None
    from .sources.hf import declared_dtype_note
    from .sources.target import builds_model, load_model, load_report_and_commit

    if builds_model(model):  # model code or a config: build it once, count it, run it
        module, kind, notes, _ = load_model(model, request)
        report = inspect_module(module, target=model, device=request.device)
        report = replace(report, source=replace(report.source, kind=kind), notes=(*notes, *report.notes))
        return report, module, config_of(module), None
    # A checkpoint (or a Hub id): the weights' own dtypes from their headers; the config only to run a forward, on
    # the model --model-class names
    report, commit = load_report_and_commit(model, replace(request, model_class=None))
    cache_config = None  # a GGUF file's own metadata sizes its KV cache, as llama.cpp does
    if report.source.kind == "gguf":
        from .sources.gguf import decoder_config

        cache_config = decoder_config([Path(file) for file in report.source.files])
    hub = model.startswith("hf:")
    config = None if hub else _config_beside(model, wants_forward)
    if request.model_class and not (wants_forward and (hub or config is not None)):
        why = ("give --context (or --seq) to run one" if not wants_forward and (hub or config is not None)
               else "there is none here that can be read")  # fmt: skip
        raise UsageError(f"{model}: --model-class names the class of the model a forward runs on, built from the "
                         f"config.json beside the weights; {why}")  # fmt: skip
    if not wants_forward or (config is None and not hub):
        return report, None, cache_config or config, None
    module, _, notes, _ = load_model(model, replace(request, commit=commit))  # a Hub id: the weights' commit
    if as_stored:
        notes = _forward_as_stored(module, report, notes)
    else:  # the weights are the checkpoint's as stored (or converted to --dtype): the build's dtype is not theirs
        declared = declared_dtype_note(_built_dtype(module) or "")
        notes = [note for note in notes if note != declared]
    loaded = _Loaded.of(report, module)
    notes += loaded.mismatch_note() if loaded is not None else []
    return replace(report, notes=(*report.notes, *notes)), module, cache_config or config_of(module), loaded


@dataclass(frozen=True)
class _Loaded:
    """A checkpoint and the model built from the config beside it to run its forward, as ``from_pretrained``
    loads the one into the other (as ``inspect --check`` compares them)."""

    checkpoint: Report
    model: Report
    loading: Loading

    @classmethod
    def of(cls, checkpoint: Report, module: nn.Module) -> _Loaded | None:
        """None for a GGUF file: llama.cpp's tensor names, which no transformers model has."""
        from .sources.hf import checkpoint_loading
        from .sources.module import inspect_module

        if checkpoint.source.kind == "gguf":
            return None
        return cls(checkpoint, inspect_module(module), checkpoint_loading(module))

    def mismatch_note(self) -> list[str]:
        """A note where the checkpoint does not match the model: the plan's weights are the checkpoint's, its
        forward the model's."""
        from ._check import check_findings, compare

        check = compare(self.model, self.checkpoint, self.loading)
        if check.ok:
            return []
        return [f"the checkpoint does not match the model its config builds ({check_findings(check)}; inspect "
                "--check names them): the weights item counts the checkpoint's tensors, and the forward that "
                "measures the activations, like the KV cache, is the config's model's"]  # fmt: skip

    def stored_names(self, reached: frozenset[str]) -> frozenset[str]:
        """The names of the model's parameters a forward reached, as the checkpoint stores them (the model's may
        carry a prefix, merge experts stored one by one, or unpack a GPTQ weight)."""
        from ._check import loaded_into

        return loaded_into(self.model, self.checkpoint, self.loading, reached)


def _built_dtype(module: nn.Module) -> str | None:
    """The dtype most of a module's floating-point parameters are in (``"bfloat16"``); None when it has none."""
    floats: Counter[torch.dtype] = Counter()
    for parameter in ModuleWalk(module).parameters:
        if parameter.is_floating_point():
            floats[parameter.dtype] += parameter.numel()
    return str(floats.most_common(1)[0][0]).removeprefix("torch.") if floats else None


def _forward_as_stored(module: nn.Module, report: Report, notes: Sequence[str]) -> list[str]:
    """Make the model built from the config beside a checkpoint compute in the dtype most of the checkpoint's
    weights are stored in, as the plan counts them (their bytes, the KV cache's); the notes of the build, with a
    dtype config.json declares otherwise named, and what loads the model in it."""
    from .sources.hf import declared_dtype_note

    stored = main_dtype(report)
    built = _built_dtype(module)
    if stored not in COMPUTE_FLOATS or built is None:
        return list(notes)  # quantized weights: the forward computes as the build made it
    if built == stored:
        return list(notes)
    module.to(_torch_dtype(stored))  # a model paramscope built, on meta: no one else's
    declared = declared_dtype_note(built)
    if declared not in notes:  # transformers' default float32: from_pretrained loads the weights as stored
        return list(notes)
    return [
        *(note for note in notes if note != declared),
        f"config.json declares {built} and the weights are stored in {stored}: the plan is of them as stored, its "
        f'forward run in {stored}; transformers\' from_pretrained (dtype "auto") loads them in {built}: give '
        f"--dtype {built} to plan that",
    ]


def batch_of(batch: int | None, input_size: Sequence[Any] | None) -> int:
    """The batch size: ``batch``, or the first dimension of the (first) input shape, which must agree with it."""
    if input_size is None:
        return 1 if batch is None else batch
    from ._summary import shapes_of

    first = shapes_of(input_size)[0]
    if not first:
        raise UsageError("input_size has no batch dimension: give the full shape, batch first (e.g. 8,3,224,224)")
    if batch is not None and batch != first[0]:
        raise UsageError(f"batch (--batch) {batch:,} disagrees with input_size (--input-size) {list(first)}: its first "
                         "dimension is the batch")  # fmt: skip
    return first[0]


def token_length(shapes: Sequence[tuple[int, ...]], input_dtypes: Sequence[Any] | None) -> int | None:
    """The sequence length of inputs that start with token ids: a first input of shape (batch, seq) in an integer
    dtype, as a language model takes them; None for other inputs (images, embeddings), whose length is not known.

    >>> token_length([(8, 4096)], ["long"]), token_length([(8, 4096)], None), token_length([(8, 3, 224, 224)], ["long"])
    (4096, None, None)
    """
    from . import dtypes as dtype_table
    from ._checks import parsed

    first = input_dtypes[0] if input_dtypes else "float32"  # a float: make_inputs takes the model's float dtype
    dtype = parsed("input_dtype", dtype_table.lookup, str(first).removeprefix("torch."))
    return shapes[0][1] if len(shapes[0]) == 2 and dtype.category in ("int", "uint") else None


def _inputs(
    model: nn.Module,
    settings: MemorySettings,
    input_size: Sequence[Any] | None,
    input_dtypes: Sequence[Any] | None,
    compute: torch.dtype | None,
    report: Report,
) -> tuple[tuple[Any, ...], dict[str, Any], str]:
    """Meta inputs for one forward (floats in the model's dtype, as a summary's, that ``report`` tells), the keyword
    arguments a decoder needs, and how the batch reads."""
    import torch

    from ._summary import decoder_input_ids, make_inputs, takes_token_ids

    if input_size is None:
        assert settings.tokens is not None
        args: tuple[Any, ...] = (torch.empty(settings.batch, settings.tokens, dtype=torch.long, device="meta"),)
        shape = f"{settings.batch} × {format_count(settings.tokens)} tokens"
    else:
        args, _ = make_inputs(input_size, None, input_dtypes, "meta", report, takes_token_ids(model))
        if compute is not None:  # autocast would run the floating inputs in the compute dtype too
            args = tuple(arg.to(compute) if arg.is_floating_point() else arg for arg in args)
        shape = " and ".join("×".join(str(dim) for dim in arg.shape) for arg in args)
    kwargs: dict[str, Any] = {}
    parameters = pyinspect.signature(model.forward).parameters
    if not settings.train and "logits_to_keep" in parameters:
        kwargs["logits_to_keep"] = 1  # as generate() does: logits for the last position only
    can_generate = getattr(model, "can_generate", None)
    if not settings.train and "use_cache" in parameters and callable(can_generate) and can_generate():
        kwargs["use_cache"] = True  # as generate() does, whatever the config's use_cache (fine-tunes save false)
    if settings.train and input_size is None and "labels" in parameters:
        kwargs["labels"] = args[0]  # a causal LM trains on its loss, whose float32 log-softmax is saved too
    ids = decoder_input_ids(model, args, kwargs)  # an encoder-decoder given labels makes its own from them
    if ids is not None and settings.train and ids is args[0]:
        kwargs["decoder_input_ids"] = ids
        shape += ", the decoder on the same ids"
    elif ids is not None:  # generate()'s first step: the encoder over the whole input, the decoder over one token
        kwargs["decoder_input_ids"] = ids[:, :1]
        shape += f", the decoder over {ids.shape[0]} × 1" + ("" if settings.train else " as in generate()'s first step")
    return args, kwargs, shape


def _torch_dtype(name: str | None) -> torch.dtype | None:
    import torch

    from . import dtypes as dtype_table

    if name is None:
        return None
    resolved = getattr(torch, dtype_table.lookup(name).name, None)
    return resolved if isinstance(resolved, torch.dtype) and resolved.is_floating_point else None


def _checkpointed(walk: ModuleWalk, result: Trace, units: Units) -> tuple[int, str, int] | None:
    """Activations with gradient checkpointing of the model's repeated blocks (each ``nn.ModuleList`` of blocks that
    all ran and save more than their inputs, the outermost where one holds another: an encoder-decoder's encoder and
    decoder layers both, as transformers' ``gradient_checkpointing_enable`` checkpoints them, not a list of heads):
    the blocks keep only their inputs, and one block's saved tensors live again while it is recomputed in backward.
    With the formula, and the bytes of the inputs kept."""
    from torch import nn

    calls = {call.path: call for call in result.calls}
    stacks: list[tuple[str, list[str]]] = []
    for path, module in walk.each_module:
        if isinstance(module, nn.ModuleList) and len(module) >= 2:
            blocks = [f"{path}.{name}" for name, _ in module.named_children()]
            if all(block in calls for block in blocks):
                stacks.append((path, blocks))
    best: list[str] = []
    chosen: list[str] = []
    # the stacks saving most first; one inside a chosen one (experts in a layer), or holding one, is left out
    for path, blocks in sorted(stacks, key=lambda stack: -sum(result.activations.get(b, 0) for b in stack[1])):
        if any(path.startswith(f"{other}.") or other.startswith(f"{path}.") for other in chosen):
            continue
        # a list whose blocks save no more than their inputs (heads that each read the one hidden state) is no
        # stack of layers: checkpointing it keeps more, and transformers checkpoints only its layers
        saved = sum(result.activations.get(block, 0) for block in blocks)
        if saved > sum(calls[block].input_bytes for block in blocks):
            chosen.append(path)
            best += blocks
    if not best:
        return None
    outside, within = _saved_around(result, [(None, [block]) for block in best])
    total = result.total_activations or 0
    inside = total - sum(outside.values())  # saved inside the blocks alone
    # each storage once: the encoder states every decoder layer reads are kept once, and one saved outside the
    # blocks is counted there
    given = {key: size for block in best for key, size in calls[block].input_storages.items()}
    inputs = sum(size for key, size in given.items() if key not in outside)
    largest = max(sum(saved.values()) for saved in within)
    size = min(total, total - inside + inputs + largest)  # a block that saves only its input gains nothing
    formula = (f"{format_bytes(total, units)} saved - {format_bytes(inside, units)} inside {len(best)} checkpointed "
               f"blocks + {_their_inputs(given, outside)} {format_bytes(inputs, units)} + one block recomputed "
               f"{format_bytes(largest, units)}")  # fmt: skip
    return size, formula, inputs if size < total else 0


def _saved_around(
    result: Trace, blocks: Sequence[tuple[int | None, Iterable[str]]]
) -> tuple[dict[int, int], list[dict[int, int]]]:
    """The storages the forward saved outside all of ``blocks``, and those each block saved, with their bytes. A
    block is the paths of the modules it ran, in the call of ``torch.utils.checkpoint`` it is (by its place among
    the forward's; None: the modules' every call). One saved both inside a block and outside it (a head's input
    that is the last block's tanh output) is in both, and a block's saved storages are all it saves again while
    recomputed, whether or not another saved them first."""
    owners: dict[str, list[tuple[int, int | None]]] = {}
    for index, (region, paths) in enumerate(blocks):
        for path in paths:
            owners.setdefault(path, []).append((index, region))
    outside: dict[int, int] = {}
    within: list[dict[int, int]] = [{} for _ in blocks]
    for key, (size, saves) in result.saved_storages.items():
        for region, stack in saves:
            indices = {index for path in stack for index, ran_in in owners.get(path, ()) if ran_in in (None, region)}
            if not indices:
                outside[key] = size
            for index in indices:
                within[index][key] = size
    return outside, within


def _their_inputs(given: Mapping[int, int], outside: Mapping[int, int]) -> str:
    """How a formula names the inputs of the checkpointed blocks it adds: those saved outside the blocks too are in
    what the forward saved there already."""
    return "their inputs" if outside.keys().isdisjoint(given) else "their inputs not saved outside them"


class _Regions:
    """The calls of ``torch.utils.checkpoint`` during a forward: for each outermost one, the paths of the outermost
    modules that ran inside it, the storages of its tensor inputs and those its selective activation checkpointing
    keeps (each storage once, with its bytes)."""

    def __init__(self, walk: ModuleWalk) -> None:
        self.paths = walk.paths
        self.found: list[tuple[list[str], dict[int, int], dict[int, int]]] = []
        self.depth = 0
        self.running = 0
        """The modules running inside the region running, called in it."""
        self.held: list[Any] = []
        """The regions' inputs and what selective checkpointing kept, until the regions are read: a storage freed
        before would leave its address to another."""
        self.unread = 0
        """The regions whose selective checkpointing's kept tensors could not be read (torch's cache laid out
        otherwise): counted as fully checkpointed."""

    def enter(self, args: Iterable[Any]) -> None:
        self.depth += 1
        if self.depth == 1:
            from ._storages import input_storages

            self.running = 0
            self.found.append(([], input_storages(tuple(args), {}), {}))
            self.held.append(tuple(args))

    def kept(self, tensor: torch.Tensor) -> None:
        """``tensor`` is kept until backward by the selective activation checkpointing of the region running."""
        from ._storages import input_storages

        if self.depth:
            self.found[-1][2].update(input_storages((tensor,), {}))
            self.held.append(tensor)

    def not_read(self) -> None:
        """The selective activation checkpointing of the region running keeps tensors that cannot be read."""
        self.unread += 1

    def module_called(self, module: nn.Module, _args: Any) -> None:
        path = self.paths.get(id(module))
        if path == "" and not self.depth:  # a forward begins: a failed one's regions are not this one's
            self.found.clear()
            self.unread = 0
        if self.depth and path is not None:
            # by the calls, not the names: a module the model shares (one activation) may run inside a region's
            # module, and outside the regions too
            paths = self.found[-1][0]
            if not self.running and path not in paths:
                paths.append(path)
            self.running += 1

    def module_returned(self, module: nn.Module, _args: Any, _output: Any) -> None:
        if self.depth and self.running and id(module) in self.paths:
            self.running -= 1

    @contextlib.contextmanager
    def region(self, args: Iterable[Any]) -> Iterator[None]:
        self.enter(args)
        try:
            yield
        finally:
            self.depth -= 1


@contextlib.contextmanager
def _checkpoints_run_plainly(walk: ModuleWalk) -> Iterator[_Regions]:
    """``torch.utils.checkpoint.checkpoint`` (both its reentrant and non-reentrant ways) runs its function plainly
    for the block, so that what the function saves reaches the measuring hooks (a checkpoint keeps it under hooks of
    its own), and the regions it ran are recorded (see :func:`~paramscope._checkpointing.checkpoint_replaced`)."""
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

    from ._checkpointing import checkpoint_replaced, selectively_kept

    regions = _Regions(walk)

    def plain_function(_: Any) -> Any:
        class Plain:
            @staticmethod
            def apply(function: Any, _preserve: bool, *args: Any) -> Any:
                with regions.region(args):
                    return function(*args)

        return Plain

    def plain_generator(generator: Any) -> Any:
        try:
            signature = pyinspect.signature(generator)
        except (TypeError, ValueError):  # a torch whose private generator is another thing: it runs as it is
            return generator
        # the settings it takes before the function's arguments, which torch's versions add to (early_stop)
        parameters = signature.parameters.values()
        settings = len(list(takewhile(lambda p: p.kind is p.POSITIONAL_OR_KEYWORD, parameters)))

        def plain(*given: Any, **kwargs: Any) -> Iterator[None]:
            inputs = (*given[settings:], *kwargs.values())
            # the model's context_fn runs as torch runs it: selective checkpointing keeps what its policy saves
            given, kwargs, context_fn = selectively_kept(generator, given, kwargs, regions.kept, lambda: None,
                                                         regions.not_read)  # fmt: skip
            forward = context_fn()[0] if context_fn is not None else contextlib.nullcontext()
            with regions.region(inputs), forward:
                yield  # checkpoint runs the function here, and next() again after it

        plain.__signature__ = signature  # type: ignore[attr-defined]  # for the summary's wrapper
        return plain

    replacements = {"CheckpointFunction": plain_function, "_checkpoint_without_reentrant_generator": plain_generator}
    handles = [register_module_forward_pre_hook(regions.module_called),
               register_module_forward_hook(regions.module_returned, always_call=True)]  # fmt: skip
    try:
        with checkpoint_replaced(replacements):
            yield regions
    finally:
        for handle in handles:
            handle.remove()
        regions.held.clear()


def _checkpointed_by_model(result: Trace, regions: _Regions, units: Units) -> tuple[int, str, int] | None:
    """Activations of a model that runs parts of its forward through ``torch.utils.checkpoint`` itself, measured with
    them run plainly: the regions keep only their inputs, and the largest region's saved tensors live again while it
    is recomputed in backward (as :func:`_checkpointed`). A region's ops outside any module count as saved.

    Under selective activation checkpointing a region also keeps the outputs of the ops its policy saves (counted
    among its saved tensors, in the modules of the ops, by the forward): those are kept, each once (a region's output
    kept is the next one's input), and not saved again while the region is recomputed."""
    measured = [(index, paths, inputs, kept) for index, (paths, inputs, kept) in enumerate(regions.found) if paths]
    if not measured:
        return None
    outside, within = _saved_around(result, [(index, paths) for index, paths, _, _ in measured])
    total = result.total_activations or 0
    inside = total - sum(outside.values())  # saved inside the regions alone
    # each storage once: the encoder states every region reads are kept once, and one saved outside the regions is
    # counted there
    given = {key: size for _, _, storages, _ in measured for key, size in storages.items()}
    inputs = sum(size for key, size in given.items() if key not in outside)
    selective = sum({key: size for _, _, _, kept in measured for key, size in kept.items()
                     if key not in given and key not in outside}.values())  # fmt: skip
    largest = max(sum(size for key, size in saved.items() if key not in kept)
                  for saved, (_, _, _, kept) in zip(within, measured, strict=True))  # fmt: skip
    # what the model runs: its checkpoints keep their inputs and recompute, though that keeps more than running
    # plainly would (regions that save less than they are given)
    size = total - inside + inputs + selective + largest
    named = "region" if len(measured) == 1 else "regions"
    kept_text = f" + kept by their selective checkpointing {format_bytes(selective, units)}" if selective else ""
    formula = (f"{format_bytes(total, units)} saved - {format_bytes(inside, units)} inside {len(measured)} {named} "
               f"the model checkpoints + {_their_inputs(given, outside)} {format_bytes(inputs, units)}{kept_text} + "
               f"one region recomputed {format_bytes(largest, units)}")  # fmt: skip
    return size, formula, inputs


@contextlib.contextmanager
def _checkpointing_off(walk: ModuleWalk) -> Iterator[bool]:
    """transformers' gradient checkpointing switched off for the block (it cannot run on meta), and back on after,
    even on error. Yields whether it was on."""
    switched = [module for module in walk.modules if vars(module).get("gradient_checkpointing") is True]
    for module in switched:
        vars(module)["gradient_checkpointing"] = False  # a plain attribute: nn.Module keeps it in __dict__
    try:
        yield bool(switched)
    finally:
        for module in switched:
            vars(module)["gradient_checkpointing"] = True


def _saved_for_training(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    shape: str,
    compute: torch.dtype | None,
    autocast: torch.dtype | None,
    quiet: bool,
) -> tuple[Trace, dict[str, Any], str, ForwardError | None]:
    """A train-mode forward's saved tensors, with the keyword inputs and the text of the inputs it ran on, and the
    error of the forward with labels when it ran without them.

    The labels are paramscope's (the input ids again). When the forward raises with them, an encoder-decoder runs
    again with the same ids for its decoder as well (given labels alone, it shifts them into its decoder's inputs,
    which EncoderDecoderModel cannot do without a decoder_start_token_id); a model whose labels are something else
    (CSM's are codebooks, GIT's loss skips the image tokens it has not got) runs without them: its activations
    without the loss, rather than none.
    """
    from ._summary import decoder_input_ids
    from .trace import ForwardError, saved_for_backward

    def saved(keywords: dict[str, Any]) -> Trace:
        return saved_for_backward(model, args, keywords, dtype=compute, autocast=autocast, quiet=quiet)

    try:
        return saved(kwargs), kwargs, shape, None
    except ForwardError as error:
        if "labels" not in kwargs:
            raise
        refused = error
    without = {key: value for key, value in kwargs.items() if key != "labels"}
    ids = decoder_input_ids(model, args, without)
    if ids is not None:
        shape += ", the decoder on the same ids"
        both = {**kwargs, "decoder_input_ids": ids}
        # EncoderDecoderModel warns that it now makes decoder inputs from labels itself: it cannot here
        with contextlib.suppress(ForwardError), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return saved(both), both, shape, None
        without["decoder_input_ids"] = ids
    return saved(without), without, shape, refused


def _autocast_note(precision: str, dtype: str, copies: int, units: Units) -> str:
    """What a mixed-precision plan's activations stand for, and what autocast holds beside them.

    >>> _autocast_note("bf16-mixed", "bfloat16", 2048, "iec").split("; ")[-1].split(": ")[-1]
    'each lives to the end of the forward, and until backward where the forward saves it'
    """
    pure = "--precision bf16-pure measures" + ("" if dtype == "bfloat16" else " (in bfloat16)")
    return (f"{precision}: the activations are those of torch.autocast on a GPU (float32 weights, as Lightning's "
            f"{precision} trains); a framework that computes with {dtype} weights and no autocast (DeepSpeed, FSDP's "
            f"MixedPrecision) saves what {pure}; not in the total: autocast's {dtype} copies of the weights it casts "
            f"({format_bytes(copies, units)}): each lives to the end of the forward, and until backward where the "
            f"forward saves it")  # fmt: skip


def _reported_names(walk: ModuleWalk, trained: frozenset[str] | None) -> frozenset[str] | None:
    """The names of the parameters in ``trained`` (the forward's: a wrapper's module under its own name) as the
    report names them: a wrapper inside the model (DataParallel, torch.compile, a checkpoint wrapper) left out."""
    from .sources.module import reported_paths

    renamed = reported_paths(walk.each_module) if trained is not None else None
    if not renamed:
        return trained
    reported = set()
    for name in trained or ():
        owner, _, tensor = name.rpartition(".")
        owner = renamed.get(owner, owner)
        reported.add(f"{owner}.{tensor}" if owner else tensor)
    return frozenset(reported)


def measure_activations(
    model: nn.Module,
    report: Report,
    settings: MemorySettings,
    input_size: Sequence[Any] | None,
    input_dtypes: Sequence[Any] | None,
    quiet: bool = True,
    units: Units = "iec",
) -> _Measured:
    """The activations item of a plan, from one forward on meta (a progress bar on a terminal unless ``quiet``),
    with notes and what else that forward tells (:class:`_Measured`)."""
    import torch

    from ._summary import (
        as_a_device_notes,
        check_runnable,
        other_threads_note,
        selective_unread_note,
        unfused_recurrent_note,
    )
    from .sources.module import forward_module
    from .trace import peak_live_bytes

    model = forward_module(model)  # inside DataParallel, torch.compile: as a summary runs it
    check_runnable(model, "meta")
    notes: list[str] = []
    if settings.train:
        compute = _torch_dtype(COMPUTE_DTYPES[settings.precision])
        # mixed precision as torch.autocast runs it: float32 weights and inputs, cast op by op as on CUDA
        autocast = compute if settings.precision.endswith("-mixed") else None
        weights = torch.float32 if autocast is not None else compute
        args, kwargs, shape = _inputs(model, settings, input_size, input_dtypes, weights, report)
        walk = ModuleWalk(model)
        with _checkpointing_off(walk) as was_on, _checkpoints_run_plainly(walk) as regions:
            result, kwargs, shape, refused = _saved_for_training(model, args, kwargs, shape, weights, autocast, quiet)
        if refused is not None:
            notes.append(f"the forward with labels (the input ids) failed, so the activations are measured without "
                         f"the loss: {refused}")  # fmt: skip
        assert result.total_activations is not None
        dtype = COMPUTE_DTYPES[settings.precision]
        # An estimate, not a count: the kernels a GPU picks decide what is really saved; meta runs those it knows
        # (attention, dropout, autocast's casts)
        fused = ", fused attention" if result.fused_attention else ""  # said of a forward that ran attention
        precision = f"float32 weights, autocast to {dtype} as on CUDA" if autocast is not None else dtype
        formula = f"saved for backward by a train-mode forward on meta ({shape}, {precision}{fused})"
        if "labels" in kwargs:
            formula += ", with the loss"
        size = result.total_activations
        trained = _reported_names(walk, result.trained)
        if autocast is not None:
            notes.append(_autocast_note(settings.precision, dtype, result.autocast_copies, units))
        notes.extend(unfused_recurrent_note(walk.each_module, result.calls))
        notes.extend(as_a_device_notes(result))
        if result.other_threads:
            notes.append(other_threads_note(result.other_threads))
        own = _checkpointed_by_model(result, regions, units)
        if own is not None:  # what the model checkpoints itself, whatever --grad-checkpointing asks
            size, formula, kept = own
            notes.append("the model's forward calls torch.utils.checkpoint: its activations are estimated as "
                         "checkpointed (the regions' inputs kept, one region recomputed in backward)")  # fmt: skip
            if regions.unread:
                notes.append(selective_unread_note(regions.unread))
            return _Measured((size, "estimate", formula), notes, trained, kept_inputs=kept)
        if was_on and not settings.grad_checkpointing:
            notes.append("the model has gradient checkpointing on: its activations are estimated as checkpointed")
        checkpointed = _checkpointed(walk, result, units)
        if not (settings.grad_checkpointing or was_on):  # for the advice: what --grad-checkpointing would leave
            return _Measured(
                (size, "estimate", formula), notes, trained, None if checkpointed is None else checkpointed[0]
            )
        kept = 0
        if checkpointed is None:
            notes.append("gradient checkpointing: the model has no repeated blocks (an nn.ModuleList) to checkpoint; "
                         "activations are shown without it")  # fmt: skip
        else:
            size, formula, kept = checkpointed
        return _Measured((size, "estimate", formula), notes, trained, kept_inputs=kept)
    # without a dtype, the weights as they are; with one, what they compute in (fp8 and int4 weights in bf16)
    compute = None if settings.dtype is None else _torch_dtype(settings.compute_dtype())
    args, kwargs, shape = _inputs(model, settings, input_size, input_dtypes, compute, report)
    peak = peak_live_bytes(model, args, kwargs, dtype=compute, quiet=quiet)
    formula = f"peak of live tensors in an eval forward on meta ({shape})"
    if peak.beyond_cache:
        formula += (f", {format_bytes(peak.beyond_cache, units)} of them what the returned cache keeps beyond its keys "
                    "and values (sliding-window layers: the whole prompt's, until the next token)")  # fmt: skip
    formula += "; kernel workspaces not counted"
    if "logits_to_keep" in kwargs:
        formula += ", logits for the last position (as generate)"
    state = (peak.state_bytes, peak.state_layers) if peak.state_layers else None
    if peak.other_threads:
        notes.append(other_threads_note(peak.other_threads))
    return _Measured((peak.bytes, "estimate", formula), notes, recurrent_state=state)


def summary_forward(report: Report) -> tuple[str, list[tuple[int, ...]]] | None:
    """The inputs of the forward a summary ran, when it measured the activations: as the summary wrote them
    (``[8, 3, 224, 224]``) and the shapes of the tensors in them, the batch first. ``None`` for other reports."""
    if report.calls is None or report.totals.activations_bytes is None:
        return None
    root = next((call for call in report.calls if call.path == ""), None)
    text = root.inputs if root else ""
    found = list(_SHAPE.finditer(text))
    # the inputs given by position, as input_size gives them (not the decoder_input_ids a summary adds); all of
    # them when every input was given by keyword
    given = [match for match in found if not text[: match.start()].endswith("=")] or found
    shapes = [tuple(int(dim) for dim in match.group(1).split(", ")) for match in given]
    return (text, shapes) if root is not None and shapes else None


def _check_summary_inputs(
    forward: tuple[str, list[tuple[int, ...]]], settings: MemorySettings, input_size: Sequence[Any] | None
) -> None:
    """Training from a summary uses the activations it measured: the inputs asked for must be the ones it ran."""
    from ._summary import shapes_of

    text, shapes = forward
    measured = f"the summary measured its activations on {text}"
    if input_size is not None and shapes_of(input_size) != shapes:
        given = ", ".join(str(list(shape)) for shape in shapes_of(input_size))
        raise UsageError(f"input_size {given} differs from the inputs {measured}: leave input_size out, or pass the "
                         "model to measure others")  # fmt: skip
    if settings.tokens is not None and shapes[0][1:2] != (settings.tokens,):
        raise UsageError(f"seq {settings.tokens} differs from the inputs {measured}: leave seq out, or pass the model "
                         "to measure others")  # fmt: skip
    if settings.batch != shapes[0][0]:
        raise UsageError(
            f"batch {settings.batch} differs from the summary's batch {shapes[0][0]}, at which it measured the "
            f"activations ({text}): leave batch out, or summarise the model at batch {settings.batch}"
        )


def _summary_activations(
    report: Report, settings: MemorySettings, forward: tuple[str, list[tuple[int, ...]]]
) -> tuple[Activations | None, list[str]]:
    """The training activations item from the bytes a summary's train-mode forward saved for backward."""
    from . import dtypes as dtype_table
    from ._summary import CHECKPOINT_CALLS

    if settings.grad_checkpointing:
        return None, ["no activations item: a summary does not record what gradient checkpointing would leave (its "
                      "blocks' inputs); pass the model to estimate it"]  # fmt: skip
    if any(note.startswith(CHECKPOINT_CALLS) for note in report.notes):
        return None, ["no activations item: the summary's forward ran torch.utils.checkpoint, and a summary does not "
                      "record the regions it recomputes in backward; pass the model to estimate it"]  # fmt: skip
    text, shapes = forward
    size = report.totals.activations_bytes
    assert size is not None
    floats = [name for name in report.by_dtype if dtype_table.lookup(name).category == "float"]
    formula = (f"saved for backward by the summary's train-mode forward ({text}: batch {shapes[0][0]}, weights in "
               f"{', '.join(floats) or 'their dtypes'}, no autocast)")  # fmt: skip
    notes = []
    compute = COMPUTE_DTYPES[settings.precision]
    if floats and floats != [compute]:
        notes.append(
            f"the summary measured the activations in {', '.join(floats)} without autocast, and {settings.precision} "
            f"computes in {compute}: pass the model to measure them in {compute}"
        )
    return (size, "estimate", formula), notes


def build_plan(
    model: nn.Module | Report | str,
    settings: MemorySettings,
    request: Request,
    *,
    input_size: Sequence[Any] | None = None,
    input_dtypes: Sequence[Any] | None = None,
    config: Mapping[str, Any] | None = None,
    units: Units = "iec",
) -> Report:
    """The report of ``model`` with its memory plan (``Report.memory``), its advice's sizes in ``units``."""
    from ._summary import shapes_of, takes_token_ids

    settings.check()
    if input_size is not None and settings.tokens is not None:
        raise UsageError("give a sequence length (seq: --seq, or --context) or input_size (--input-size), not both")
    shapes = None if input_size is None else shapes_of(input_size)
    forward = summary_forward(model) if isinstance(model, Report) and settings.train else None
    if forward is not None:
        _check_summary_inputs(forward, settings, input_size)
    wants_forward = input_size is not None or settings.tokens is not None
    # training computes in its precision's dtype, and inference in a dtype given in it, whatever the weights are
    # stored in
    as_stored = not settings.train and settings.dtype is None
    report, module, found_config, loaded = resolve(model, request, wants_forward, as_stored)
    check_keep_fp32(report, settings.keep_fp32)  # before a forward: a typo is refused at once
    if shapes is not None and not settings.train:
        # the forward's first input is token ids when given an integer dtype, or without one for a model whose main
        # input transformers declares to be input_ids (as a summary's): the KV cache holds their sequence, as with a
        # context length
        ids = not input_dtypes and module is not None and takes_token_ids(module)
        tokens = token_length(shapes, ["long"] if ids else input_dtypes)
        if tokens is not None:
            settings = replace(settings, tokens=tokens)
            settings.check()
    notes: list[str] = []
    activations: Activations | None = None
    failed = False
    trained: frozenset[str] | None = None
    checkpointed: int | None = None
    recurrent_state: tuple[int, int] | None = None
    kept_inputs = 0
    if forward is not None:
        activations, notes = _summary_activations(report, settings, forward)
    elif isinstance(model, Report):
        notes.append(_no_forward_in(model, settings.train))
    elif wants_forward and module is not None:
        from ._summary import forward_refusal, forward_warning_notes, with_input_hint
        from .sources._logged import logged_if_imported
        from .trace import ForwardError

        refusal = forward_refusal(module)
        # what transformers warns of the inputs the plan makes (its loss of the labels) is a note, not a line above it
        with logged_if_imported("transformers") as warned:
            try:
                if refusal is not None:
                    raise ForwardError(refusal)
                measured = measure_activations(module, report, settings, input_size, input_dtypes, request.quiet, units)
                activations, notes, trained = measured.activations, measured.notes, measured.trained
                if trained and loaded is not None:
                    # none of them in the checkpoint's names: names it does not share, not a forward that reaches none
                    trained = loaded.stored_names(trained) or trained
                checkpointed, recurrent_state = measured.checkpointed, measured.recurrent_state
                kept_inputs = measured.kept_inputs
            except ForwardError as error:  # the rest of the plan stands without this item
                notes = [f"no activations item: {with_input_hint(error, 'input_dtypes')}"]
                failed = True
        notes.extend(forward_warning_notes(warned, activations is not None))
    elif wants_forward:
        notes.append("no activations item: a forward needs a model to run (model code, or a config.json)")
    else:
        flag = "seq" if settings.train else "context"
        notes.append(f"no activations item: give a {flag} length (or input_size) to measure one forward")
    sparse = sparse_weights(module) if settings.train and module is not None else ()
    # a forward that ran and failed (here, or a summary's to train on): the rest may fit alone, and the whole not.
    # Where none could run (no model: a GGUF file, weights alone, a Report), the plan is of what it counts, as one
    # without a length is, and the note says so.
    failed = failed or (settings.train and forward is None and isinstance(model, Report)
                        and model.calls is not None and model.totals.activations_bytes is None)  # fmt: skip
    left_out = ("activations",) if failed else ()
    memory = plan(report, settings, config=config if config is not None else found_config, activations=activations,
                  trained=trained, checkpointed=checkpointed, input_size=shapes, units=units, sparse=sparse,
                  left_out=left_out, recurrent_state=recurrent_state, kept_inputs=kept_inputs)  # fmt: skip
    has_cache = any(item.name == "KV cache" for item in memory.items)
    # the one config_of took it from (walked again only for a module without a config of its own)
    held = held_model(module) if has_cache and module is not None and not _config_to_dict(module) else None
    if held is not None:
        path, inner = held
        notes.append(f"the KV cache is sized from the config of {path} ({type(inner).__name__}), the transformers "
                     "model the model holds")  # fmt: skip
    memory = replace(memory, notes=(*notes, *memory.notes))
    return replace(report, memory=memory)


def sparse_weights(module: nn.Module) -> tuple[str, ...]:
    """The trainable weights of the ``nn.Embedding`` and ``nn.EmbeddingBag`` layers built with ``sparse=True``
    (torch gives them sparse gradients), each once, but those another layer holds too (a tied head: a dense gradient
    is added to theirs)."""
    from torch import nn

    holders: dict[int, list[bool]] = {}
    names: dict[int, str] = {}
    for path, child in ModuleWalk(module).each_module:  # each module once: a model may hold itself (a cycle)
        for name, param in child.named_parameters(recurse=False):
            sparse = isinstance(child, (nn.Embedding, nn.EmbeddingBag)) and name == "weight" and child.sparse is True
            holders.setdefault(id(param), []).append(sparse)
            if sparse and param.requires_grad:
                names.setdefault(id(param), f"{path}.{name}" if path else name)
    return tuple(name for key, name in names.items() if all(holders[key]))


def _no_forward_in(report: Report, train: bool) -> str:
    """Why a plan from a Report has no activations item."""
    if not train and report.totals.activations_bytes is not None:
        # What autograd saves for backward outlives the forward; inference's peak is of tensors freed as it goes.
        return (
            "no activations item: the summary measured what a train-mode forward saves for backward, not the peak "
            "of an inference forward; pass the model with a context length or input_size to measure one"
        )
    if train and report.calls is not None and report.totals.activations_bytes is None:
        return "no activations item: the summary measured no activations (its notes say why); pass the model"
    if train and report.calls is not None:
        return "no activations item: the summary does not record the shapes of its inputs (its batch); pass the model"
    return ("no activations item: a Report has no model to run a forward; pass the model" +
            (", or its summary with input_size" if train else ""))  # fmt: skip


def module_or_report(value: Any) -> Any:
    """``value`` if it is something :func:`paramscope.memory` takes, else a TargetError."""
    if isinstance(value, (Report, str)):
        return value
    from ._summary import module_of

    try:
        return module_of(value)
    except TargetError:
        raise TargetError(
            f"cannot plan memory for an object of type {type(value).__name__}: pass a torch.nn.Module, a Report or a "
            "target string"
        ) from None


def _checked(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`MemorySettings` fields given, each of its type; the errors name them as ``memory()`` does."""
    checked = dict(settings)
    for name in ("train", "grad_checkpointing", "offload_optimizer"):
        if name in settings:
            checked[name] = flag(name, settings[name])
    for name in ("dtype", "kv_dtype", "optimizer", "precision"):
        if name in settings:
            checked[name] = string(name, settings[name], optional=name.endswith("dtype"))
    if "zero" in settings:
        checked["zero"] = integer("zero", settings["zero"])
    if settings.get("tokens") is not None:
        checked["tokens"] = integer("seq", settings["tokens"])
    return checked


def _patterns(keep_fp32: Any) -> tuple[str, ...]:
    """``keep_fp32`` as a tuple of patterns: one string is one pattern (``"*norm*"``), not its characters."""
    if isinstance(keep_fp32, str):
        return (keep_fp32,)
    if isinstance(keep_fp32, Iterable) and not isinstance(keep_fp32, (bytes, Mapping)):
        patterns = tuple(keep_fp32)
        if all(isinstance(pattern, str) for pattern in patterns):
            return patterns
    raise UsageError(f"keep_fp32 must be a pattern such as '*norm*' or a list of patterns, not {shown(keep_fp32)}")


def plan_for(
    model: nn.Module | Report | str,
    request: Request,
    *,
    batch: int | None = None,
    gpus: int | None = None,
    tp: int = 1,
    device_memory: int | str | None = None,
    keep_fp32: str | Sequence[str] = (),
    input_size: Sequence[Any] | None = None,
    input_dtypes: Any = None,
    config: Mapping[str, Any] | None = None,
    units: Units = "iec",
    **settings: Any,
) -> Report:
    """:func:`build_plan` from the user's options, for the API and the CLI alike: each of its type (one-line errors
    naming it otherwise), the batch from the input shape, ``gpus`` defaulting to ``tp``, a device memory such as
    ``"80GiB"``, one ``keep_fp32`` pattern or several, one input dtype or one per input; the other ``settings`` are
    :class:`MemorySettings` fields."""
    from ._units import parse_bytes

    settings = _checked(settings)
    batch = None if batch is None else integer("batch", batch)
    gpus = None if gpus is None else integer("gpus", gpus)
    tp = integer("tp", tp)
    if device_memory is not None and not isinstance(device_memory, str):
        device_memory = integer("device_memory", device_memory, "a number of bytes or a size such as '80GiB'")
    if input_size is not None and (isinstance(input_size, str) or not isinstance(input_size, Sequence)):
        raise UsageError(f"input_size {input_size!r} is not a shape or a list of shapes")
    if input_dtypes is not None and not isinstance(input_dtypes, (list, tuple)):
        input_dtypes = [input_dtypes]  # one dtype ("long", torch.long) for every input, not a string's characters
    if input_dtypes and input_size is None:  # the inputs are then token ids: refused rather than ignored
        raise UsageError("input_dtypes (--input-dtype) go with input_size (--input-size); with a context or sequence "
                         "length the inputs are token ids")  # fmt: skip
    if config is not None and not isinstance(config, Mapping):
        raise UsageError(f"config must be a mapping (a config's fields), not {shown(config)}")
    one_of("units", units, ("iec", "si"))
    forward = summary_forward(model) if isinstance(model, Report) and settings.get("train") else None
    if forward is not None and batch is None and input_size is None:
        batch = forward[1][0][0]  # the batch the summary's activations were measured at
    memory_settings = MemorySettings(
        batch=batch_of(batch, input_size),
        gpus=tp if gpus is None else gpus,
        tp=tp,
        device_memory=parsed("device_memory", parse_bytes, device_memory)
        if isinstance(device_memory, str)
        else device_memory,
        keep_fp32=_patterns(keep_fp32),
        **settings,
    )
    return build_plan(
        module_or_report(model), memory_settings, request, input_size=input_size, input_dtypes=input_dtypes,
        config=config, units=units,
    )  # fmt: skip
