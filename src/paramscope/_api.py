"""The public functions: ``inspect`` and the study note's helpers built on it."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace as dataclass_replace
from typing import IO, TYPE_CHECKING, Any

from ._checks import arguments as arguments_of
from ._checks import class_name, flag, flags, integer, shown, string, target_only
from ._errors import IncompleteCountError, TargetError, UsageError
from ._report import LAZY_PARAMETERS, Report
from ._units import BYTE_UNITS, Units, byte_unit

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ._diff import Diff


def inspect(
    model: nn.Module | str | os.PathLike[str],
    arguments: Mapping[str, Any] | None = None,
    *,
    device: str | None = None,
    explain: bool = False,
    exclude_embeddings: bool = False,
    from_config: bool = False,
    check: bool = False,
    model_class: str | None = None,
    trust_remote_code: bool = False,
    quiet: bool = True,
    all_ranks: bool = False,
) -> Report:
    """Count every parameter and buffer of a model, exactly, and return the :class:`Report`.

    ``model`` is a live ``nn.Module`` (on any device, meta included; wrappers such as ``torch.compile``'s and
    DistributedDataParallel are looked through), or a target string (or a ``pathlib.Path``) as the CLI takes it:
    model code (``"package.module:attr"``, ``"path/to/file.py:attr"``, built with ``arguments`` on ``device``,
    ``"meta"`` by default), a checkpoint file or directory (safetensors, PyTorch, GGUF: headers only), a ``config.json``
    (built on meta with transformers; ``model_class``, ``trust_remote_code``), or a Hub id ``"hf:org/name"``.
    ``from_config`` builds from the config beside a checkpoint instead, ``check`` compares the two.

    Tied tensors and reused modules are counted once; buffers are reported apart from parameters; the model is
    only read, never changed. With ``explain``, every module gets its layer formula (``ModuleNode.formula``),
    checked against the tensors it holds (``ModuleNode.formula_matches``). With ``exclude_embeddings``,
    ``totals.non_embedding_params`` leaves out the embeddings and an untied output head. Mixture-of-experts models
    get ``totals.active_params``, the parameters used per token.

    A sharded model (FSDP2 and tensor parallelism's DTensors, FSDP1, DeepSpeed ZeRO-3) is reported whole, from any
    rank, without gathering a weight: global shapes and counts, names without wrapper prefixes, ties once; this
    rank's share is ``totals.local_params``/``local_param_bytes`` and each tensor's ``sharding``. With
    ``all_ranks`` (a collective: call it on every rank), ``report.ranks`` holds every rank's share.

    >>> import paramscope
    >>> report = paramscope.inspect("paramscope.examples:gpt2")
    >>> report.totals.params, report.tensor("lm_head.weight").name
    (124439808, 'transformer.wte.weight')
    """
    model = os.fspath(model) if isinstance(model, os.PathLike) else model  # a pathlib.Path: the target it names
    given = arguments_of("arguments", arguments)
    class_name(model_class)
    flags(
        explain=explain,
        exclude_embeddings=exclude_embeddings,
        from_config=from_config,
        check=check,
        trust_remote_code=trust_remote_code,
        quiet=quiet,
        all_ranks=all_ranks,
    )
    if isinstance(model, str):
        if all_ranks:
            raise UsageError("all_ranks applies to a live model sharded across ranks, not to a target string")
        from .sources.target import Request, load_report

        request = Request(
            arguments=given,
            device=device or "meta",
            explain=explain,
            quiet=quiet,
            from_config=from_config,
            check=check,
            model_class=model_class,
            trust_remote_code=trust_remote_code,
            exclude_embeddings=exclude_embeddings,
        )
        return load_report(model, request)
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(model, torch.nn.Module):
        raise TargetError(
            f"cannot inspect an object of type {type(model).__name__}: pass a torch.nn.Module or a target string"
        )
    target_only(
        arguments=given,
        device=device,
        from_config=from_config,
        check=check,
        model_class=model_class,
        trust_remote_code=trust_remote_code,
    )
    from .sources.module import inspect_module

    report = inspect_module(model, explain=explain)
    if all_ranks:
        from .sources._sharded import gather_ranks

        report = dataclass_replace(report, ranks=gather_ranks(report.totals))
    if exclude_embeddings:
        from ._embeddings import without_embeddings

        report = without_embeddings(report)
    return report


def _complete_totals(model: nn.Module | Report, what: str) -> Report:
    report = model if isinstance(model, Report) else inspect(model)
    if not report.totals.complete:
        unknown = report.unknown_sizes
        forward = "run one forward pass first, or " if LAZY_PARAMETERS in unknown else ""  # it sizes lazy layers
        raise IncompleteCountError(
            f"cannot give {what}: the model has tensors of unknown size ({' and '.join(unknown)}); {forward}use "
            "paramscope.inspect() to see the known part"
        )
    return report


def count_params(model: nn.Module | Report) -> tuple[int, int | None]:
    """``(total, trainable)`` parameter counts, each shared tensor counted once; ``trainable`` is None where the
    source does not say (a checkpoint).

    >>> import paramscope
    >>> from paramscope.examples import resnet18
    >>> paramscope.count_params(resnet18())
    (11689512, 11689512)
    """
    totals = _complete_totals(model, "a parameter count").totals
    return totals.params, totals.trainable


def params_size(model: nn.Module | Report, unit: str = "MiB", *, buffers: bool = False) -> float:
    """The parameters' size in ``unit`` (``"B"``, ``"KiB"``, ``"MiB"``, ``"GiB"``, ``"kB"``, ``"MB"``, ``"GB"``…),
    from each tensor's real dtype; with ``buffers=True`` the buffers are included.

    >>> import paramscope
    >>> from paramscope.examples import resnet18
    >>> round(paramscope.params_size(resnet18(), "MiB"), 2)
    44.59
    """
    string("unit", unit, f"a byte unit such as 'MiB' ({', '.join(BYTE_UNITS)})")
    flags(buffers=buffers)
    totals = _complete_totals(model, "a size").totals
    size = totals.param_bytes + (totals.buffer_bytes if buffers else 0)
    return size / byte_unit(unit)


def report_model(
    model: nn.Module | Report,
    title: str | None = None,
    *,
    depth: int = 2,
    tensors: bool = True,
    file: IO[str] | None = None,
) -> Report:
    """Print the report: totals, size by dtype, the module tree and one row per tensor. Returns the Report.

    In a terminal the tables are drawn with rich; elsewhere (a pipe, a file, a notebook's captured output) they are
    plain text.
    """
    from .render import View, write_report

    string("title", title, optional=True)
    depth = integer("depth", depth, minimum=0)
    flags(tensors=tensors)
    if file is not None and not callable(getattr(file, "write", None)):
        raise UsageError(f"file must be an open text file (with a write method), not {shown(file)}")
    report = model if isinstance(model, Report) else inspect(model)
    write_report(report, View(depth=depth, tensors=tensors, title=title), file or sys.stdout, "table")
    return report


def summary(
    model: nn.Module | str | os.PathLike[str],
    input_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
    input_data: Any = None,
    dtypes: Sequence[Any] | None = None,
    depth: int = 3,
    device: str | torch.device = "meta",
    mode: str = "eval",
    *,
    arguments: Mapping[str, Any] | None = None,
    model_class: str | None = None,
    trust_remote_code: bool = False,
    quiet: bool = True,
) -> Report:
    """Run a forward pass and report each module's part in it: shapes, FLOPs, activation memory, parameters.

    Like torchinfo's ``summary`` (same argument names), but on the meta device by default: any model size, no
    compute, exact shapes. ``input_size`` is one shape or a list of shapes, ``dtypes`` one dtype for every input or
    one per input (token models need ``"long"``; by default the dtype of most of the model's floating-point
    parameters, and long for the first input of a transformers model whose ``main_input_name`` is ``input_ids``);
    ``input_data`` gives the inputs themselves instead (a tensor, a tuple or list of inputs, or a dict of keyword
    inputs; a named tuple, such as a PackedSequence, is one input).
    ``depth`` limits the call records to modules that deep. ``device="cpu"`` (or ``torch.device("cpu")``) runs
    for real.

    FLOPs are counted with torch's ``FlopCounterMode`` formulas; ``totals.activations_bytes`` is what autograd
    saves for backward in a train-mode forward (on ``"cpu"``, where only the forward asked for runs, it is None in
    eval mode). The model is never changed: parameters, buffers, devices, modes and hooks stay as
    they were, even when the forward raises.

    >>> import paramscope
    >>> report = paramscope.summary("paramscope.examples:resnet18", input_size=(1, 3, 224, 224))
    >>> report.totals.flops, report.calls[1].inputs, report.calls[1].outputs
    (3628146688, '[1, 3, 224, 224]', '[1, 64, 112, 112]')
    """
    from ._summary import check_mode, module_of, summarize, summary_inputs

    device = check_mode(device, mode)
    depth = integer("depth", depth, minimum=0)
    model = os.fspath(model) if isinstance(model, os.PathLike) else model  # a pathlib.Path: the target it names
    given = arguments_of("arguments", arguments)
    class_name(model_class)
    flags(trust_remote_code=trust_remote_code, quiet=quiet)
    if isinstance(model, str):
        from .sources.module import inspect_module
        from .sources.target import Request, load_model

        request = Request(
            arguments=given,
            device=device,
            quiet=quiet,
            model_class=model_class,
            trust_remote_code=trust_remote_code,
        )
        module, kind, notes, _ = load_model(model, request)
        report = inspect_module(module, target=model, device=device)
        report = dataclass_replace(
            report, source=dataclass_replace(report.source, kind=kind), notes=(*notes, *report.notes)
        )
    else:
        target_only(arguments=given, model_class=model_class, trust_remote_code=trust_remote_code)
        module = module_of(model)
        from .sources.module import inspect_module

        report = inspect_module(module)
    args, kwargs, report = summary_inputs(module, report, input_size, input_data, dtypes, device)
    return summarize(module, report, args, kwargs, depth=depth, device=device, mode=mode, quiet=quiet,
                     inputs_given=input_data is not None)  # fmt: skip


def memory(
    model: nn.Module | Report | str | os.PathLike[str],
    arguments: Mapping[str, Any] | None = None,
    *,
    train: bool = False,
    dtype: str | None = None,
    kv_dtype: str | None = None,
    batch: int | None = None,
    seq: int | None = None,
    input_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
    input_dtypes: Sequence[Any] | None = None,
    optimizer: str = "adamw",
    precision: str = "bf16-mixed",
    grad_checkpointing: bool = False,
    gpus: int | None = None,
    zero: int = 0,
    tp: int = 1,
    offload_optimizer: bool = False,
    device_memory: int | str | None = None,
    keep_fp32: str | Sequence[str] = (),
    config: Mapping[str, Any] | None = None,
    model_class: str | None = None,
    trust_remote_code: bool = False,
    quiet: bool = True,
    units: Units = "iec",
) -> Report:
    """What the model costs in memory to store, serve or train, item by item, per device: ``Report.memory``.

    ``model`` is a live ``nn.Module``, a :class:`Report` (no forward then), or any target string ``inspect``
    takes. Every item is labelled ``exact`` (counted from tensors), ``derived`` (a stated formula on exact counts)
    or ``estimate`` (a named heuristic), and carries its formula.

    - Inference (the default): the weights as stored or converted to ``dtype`` (tensors matching a ``keep_fp32``
      pattern, or one of a list of them, stay in float32), the buffers, the KV cache of ``batch`` sequences of
      ``seq`` tokens (or of an ``input_size`` that starts with token ids: ``(batch, seq)`` in an integer dtype, or
      in no dtype for a model whose main input is ``input_ids``) in
      ``kv_dtype``
      (for a decoder's config: GQA heads, ``head_dim``, sliding and chunked windows, hybrid models' attention
      layers only, MLA latents), and the peak of live
      tensors in one eval forward on meta.
    - Training (``train=True``): weights, gradients (trainable parameters only), fp32 master weights for mixed
      ``precision``, the ``optimizer``'s states as torch lays them out, and the activations autograd saves in a
      train-mode forward on meta, with the kernels a GPU runs (mixed precision as ``torch.autocast`` casts on
      CUDA; ``grad_checkpointing`` estimates what checkpointing the blocks leaves).
    - Several devices: ``gpus`` (``tp`` by default) with ZeRO stage ``zero`` (FSDP full-shard is stage 3),
      ``offload_optimizer`` to host memory (under ``zero`` 1, 2 or 3), ``tp``-way tensor parallelism. ``batch`` is
      per device. With ``device_memory`` (bytes or ``"80GiB"``), ``memory.fits`` answers whether it fits and
      ``memory.advice`` what to cut (each option offered cuts its item), its sizes in ``units`` (``"iec"``: MiB, or
      ``"si"``: MB); ``fits`` is None when what is known fits but the rest cannot be told (tensors of unknown size,
      or ``memory.left_out``: the activations of a forward that failed, a KV cache the config cannot size).

    The forward runs on ``batch`` × ``seq`` token ids, or on inputs of ``input_size`` (batch first) in
    ``input_dtypes``. ``config`` gives the decoder config when the model has none (a Report). An argument of the
    wrong type (``batch="8"``, ``tp=2.0``) is a :class:`UsageError` that names it.

    >>> import paramscope
    >>> plan = paramscope.memory("paramscope.examples:gpt2", train=True, precision="fp32", optimizer="sgd").memory
    >>> plan.item("weights").total_bytes, plan.item("gradients").total_bytes
    (497759232, 497759232)
    """
    from ._planner import plan_for
    from .sources.target import Request

    model = os.fspath(model) if isinstance(model, os.PathLike) else model  # a pathlib.Path: the target it names
    request = Request(
        arguments=arguments_of("arguments", arguments), quiet=flag("quiet", quiet), model_class=class_name(model_class),
        trust_remote_code=flag("trust_remote_code", trust_remote_code),
    )  # fmt: skip
    if not isinstance(model, str):
        target_only(
            arguments=request.arguments, model_class=request.model_class, trust_remote_code=request.trust_remote_code
        )
    return plan_for(
        model, request, train=train, dtype=dtype, kv_dtype=kv_dtype, batch=batch, tokens=seq, optimizer=optimizer,
        precision=precision, grad_checkpointing=grad_checkpointing, gpus=gpus, zero=zero, tp=tp,
        offload_optimizer=offload_optimizer, device_memory=device_memory, keep_fp32=keep_fp32, input_size=input_size,
        input_dtypes=input_dtypes, config=config, units=units,
    )  # fmt: skip


def diff(
    a: nn.Module | Report | str | os.PathLike[str],
    b: nn.Module | Report | str | os.PathLike[str],
    *,
    arguments_a: Mapping[str, Any] | None = None,
    arguments_b: Mapping[str, Any] | None = None,
    device: str | None = None,
    from_config: bool = False,
    model_class: str | None = None,
    trust_remote_code: bool = False,
    quiet: bool = True,
) -> Diff:
    """What differs between two models: totals, modules and tensors, A against B.

    ``a`` and ``b`` are anything :func:`inspect` takes (live models, target strings: model code with
    ``arguments_a``/``arguments_b``, checkpoints, configs, Hub ids), or Reports. For a model and its checkpoint,
    ``only_in_a`` are the keys ``load_state_dict`` (for a transformers model, ``from_pretrained``) would report
    missing, ``only_in_b`` the unexpected ones, and ``changed`` the tensors of another shape or dtype (or, between two
    live models, trainability or a buffer's persistence). Two models (or two checkpoints) also differ in a tensor's
    kind, in what is tied or reused (``sharing``) and in their totals.
    ``equal`` is true when nothing differs and every size is known; ``decided`` is false when a side has tensors of
    unknown size (uninitialised lazy parameters, packed weights that cannot be read) and nothing known differs.

    >>> import paramscope
    >>> found = paramscope.diff("paramscope.examples:resnet18", "paramscope.examples:resnet34")
    >>> found.equal, found.b.totals.params - found.a.totals.params, len(found.only_in_b)
    (False, 10108160, 96)
    """
    from ._diff import compare, is_checkpoint, models_read

    a = os.fspath(a) if isinstance(a, os.PathLike) else a
    b = os.fspath(b) if isinstance(b, os.PathLike) else b
    given_a, given_b = arguments_of("arguments_a", arguments_a), arguments_of("arguments_b", arguments_b)
    class_name(model_class)
    flags(from_config=from_config, trust_remote_code=trust_remote_code, quiet=quiet)
    if not isinstance(a, str):
        target_only(arguments_a=given_a)
    if not isinstance(b, str):
        target_only(arguments_b=given_b)
    if not isinstance(a, str) and not isinstance(b, str):
        target_only(
            device=device, from_config=from_config, model_class=model_class, trust_remote_code=trust_remote_code
        )

    from .sources.target import builds_from_config

    # one --model-class for both sides: it goes to the side (or sides) built from a config, and the other is read
    # as it would be without it (a checkpoint or model code compared with a config of another class)
    built = [isinstance(side, str) and builds_from_config(side, from_config) for side in (a, b)]
    if model_class is not None and not any(built):
        raise UsageError("--model-class is for a model built from a config.json, and neither side is one: add "
                         "--from-config to build each checkpoint from the config.json beside it")  # fmt: skip

    def report_of(model: nn.Module | Report | str, arguments: Mapping[str, Any] | None, from_a_config: bool) -> Report:
        if isinstance(model, Report):
            return model
        if not isinstance(model, str):
            return inspect(model)
        return inspect(
            model,
            arguments,
            device=device,
            from_config=from_config,
            model_class=model_class if from_a_config else None,
            trust_remote_code=trust_remote_code,
            quiet=quiet,
        )

    reports: list[Report] = []
    models: list[nn.Module | None] = []
    for side, arguments, from_a_config in ((a, given_a, built[0]), (b, given_b, built[1])):
        with models_read() as read:
            reports.append(report_of(side, arguments, from_a_config))
        models.append(read[-1] if read and not isinstance(side, Report) else None)
    report_a, report_b = reports
    loaded = None
    # a model and a checkpoint: the names as the model's own load code loads them (hooks that rename or add keys)
    if is_checkpoint(report_a) != is_checkpoint(report_b):
        model, model_report, checkpoint = (
            (models[1], report_b, report_a) if is_checkpoint(report_a) else (models[0], report_a, report_b)
        )
        if model is not None and _is_transformers_model(model):
            # from_pretrained renames and converts a checkpoint's keys (ViT's legacy names, Mixtral's experts stored
            # one by one), as --check matches them; load_state_dict does none of it
            from ._check import loaded_names as loaded_by_transformers
            from .sources.hf import checkpoint_loading

            loaded = loaded_by_transformers(model_report, checkpoint, checkpoint_loading(model))
        elif model is not None:
            from .sources._loading import loaded_names

            loaded = loaded_names(model, model_report, checkpoint)
    found = compare(report_a, report_b, loaded)
    notes = _wrapper_notes(models, report_a, report_b) + _llama_cpp_names_notes(found)
    return dataclass_replace(found, notes=(*found.notes, *notes)) if notes else found


def _wrapper_notes(models: Sequence[nn.Module | None], a: Report, b: Report) -> list[str]:
    """A note for a side that is a model inside wrappers that keep their prefix in its state dict (DataParallel,
    torch.compile), compared with a checkpoint whose names lack it: the diff compares the model they wrap, whose
    ``load_state_dict`` takes such a checkpoint, where the wrapper's own would find each key unexpected."""
    from ._diff import is_checkpoint
    from .sources.module import state_dict_prefix

    notes = []
    for side, other, model, report in (("A", "B", models[0], b), ("B", "A", models[1], a)):
        if model is None or not is_checkpoint(report):
            continue
        prefix, wrappers = state_dict_prefix(model)
        if prefix and not any(record.name.startswith(prefix) for record in report.tensors):
            notes.append(f"{side} is the model inside {' inside '.join(wrappers)}, compared with {other}'s names as "
                         f"its load_state_dict takes them; the wrapper's own state_dict and load_state_dict put "
                         f"'{prefix}' before each name: loaded into {side} itself, each of {other}'s tensors would "
                         f"be unexpected and each of {side}'s missing; load {other} into "
                         f"{side}.{prefix.rstrip('.')}")  # fmt: skip
    return notes


def _llama_cpp_names_notes(found: Diff) -> list[str]:
    """A note when a GGUF file's tensors, named as llama.cpp names them, match none of the other side's (a model's,
    or a checkpoint in transformers' names): every tensor is on one side only."""
    files = [label for label, report in (("A", found.a), ("B", found.b)) if report.source.kind == "gguf"]
    if len(files) != 1 or not found.only_in_a or not found.only_in_b:
        return []
    matched = {name for record in found.a.tensors for name in (record.name, *record.aliases)} & {
        name for record in found.b.tensors for name in (record.name, *record.aliases)}  # fmt: skip
    if matched:
        return []
    return [f"{files[0]} is a GGUF file, which names its tensors as llama.cpp does (token_embd.weight, "
            "blk.0.attn_q.weight): no name matches the other side's, so every tensor is on one side only; compare "
            "with the safetensors it was converted from"]  # fmt: skip


def _is_transformers_model(model: nn.Module) -> bool:
    """Whether ``model`` is a transformers model (which only exists once transformers is imported)."""
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(model, transformers.PreTrainedModel)
