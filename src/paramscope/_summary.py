"""``paramscope.summary``: the Report of a model together with a forward pass through it, layer by layer."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ._checks import integer, parsed
from ._errors import TargetError, UsageError, first_line, is_meta_device_failure
from ._report import CallRecord, Report
from ._units import format_count, listed, shortened
from .sources._logged import Logged

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ._walk import ModuleWalk
    from .trace import ForwardError, ModuleCall, Trace

Shape = Sequence[int]
_MAX_OPS_IN_NOTE = 10
_MAX_INT64 = 2**63 - 1


def _dtype(value: Any) -> torch.dtype:
    import torch

    from . import dtypes as dtype_table

    if isinstance(value, torch.dtype):
        return value
    resolved = getattr(torch, parsed("input_dtype", dtype_table.lookup, str(value)).name, None)
    if not isinstance(resolved, torch.dtype):
        raise UsageError(f"input_dtype (--input-dtype): dtype {value!r} is not a torch dtype")
    return resolved


def shapes_of(input_size: Shape | Sequence[Shape]) -> list[tuple[int, ...]]:
    """One shape or a list of shapes, as a list of shapes; every dimension 1 or more, and an int64 as torch needs."""
    if not isinstance(input_size, Iterable):  # a bare 8: a shape is a sequence even of one dimension, (8,)
        raise UsageError(f"input_size {input_size!r} is not a shape or a list of shapes")
    items = list(input_size)
    nested = [list(item) if isinstance(item, Sequence) else item for item in items]
    shapes = [nested] if all(_dimension(dim) is not None for dim in nested) else nested
    dimensions = [[_dimension(dim) for dim in shape] if isinstance(shape, list) else [None] for shape in shapes]
    # a dimension from 1 to an int64 (a bool is no size; numpy's integers are); () is a 0-d input (a diffusion
    # model's timestep)
    if not all(dim is not None and 1 <= dim <= _MAX_INT64 for shape in dimensions for dim in shape):
        raise UsageError(f"input_size {input_size!r} is not a shape or a list of shapes")
    return [tuple(shape) for shape in dimensions]  # type: ignore[arg-type]


def _dimension(value: Any) -> int | None:
    """``value`` as a dimension's int (numpy's integers too), or None when it is none (a bool, a float, a shape)."""
    try:
        return integer("input_size", value)
    except UsageError:
        return None


def _input_tensor(
    shape: tuple[int, ...], dtype: torch.dtype, device: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """An input of ``shape``: empty on meta, random floats (drawn from ``generator``) or zero ids (valid everywhere)
    on CPU."""
    import torch

    size = math.prod(shape) * dtype.itemsize
    what = f"an input of shape {list(shape)} in {str(dtype).removeprefix('torch.')}"
    # torch keeps a tensor's size in bytes in an int64: beyond it even an empty meta tensor fails ("Storage size
    # calculation overflowed").
    if size > _MAX_INT64:
        raise UsageError(f"{what} would take {size:,} bytes, more than a tensor can hold ({_MAX_INT64:,} bytes)")
    if device == "meta":
        return torch.empty(shape, dtype=dtype, device="meta")
    try:
        if dtype.is_floating_point or dtype.is_complex:
            try:
                return torch.randn(shape, dtype=dtype, generator=generator)
            except NotImplementedError:  # no random numbers in this dtype (float8): drawn in float32, converted
                return torch.randn(shape, generator=generator).to(dtype)
        return torch.zeros(shape, dtype=dtype)
    except NotImplementedError as error:  # no kernel that makes one (qint8, float4)
        raise UsageError(f"torch cannot make {what} on cpu: {first_line(error)}") from None
    except RuntimeError:  # the allocator's: "DefaultCPUAllocator: can't allocate memory"
        raise UsageError(f"{what} ({size:,} bytes) cannot be allocated on cpu; on meta it takes no memory") from None


def make_inputs(
    input_size: Shape | Sequence[Shape] | None,
    input_data: Any,
    dtypes: Sequence[Any] | None,
    device: str,
    report: Report | None = None,
    token_ids: bool = False,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword inputs: ``input_data`` as given (a tensor, a tuple or list of inputs, or a dict of
    keyword inputs; a named tuple, such as a PackedSequence, is one input), or tensors of ``input_size`` in
    ``dtypes`` (by default the dtype of the floating-point parameters of the model ``report`` describes, see
    :func:`float_dtype`, but for the first input of a model that takes ``token_ids`` first, long: see
    :func:`takes_token_ids`): empty on meta, random floats / zero ids on CPU, the floats drawn from a generator of
    their own (what torch's draws next is the caller's, as it was)."""
    import torch

    if input_data is not None:
        if input_size is not None:
            raise UsageError("give input_size or input_data, not both")
        if dtypes is not None:
            raise UsageError("dtypes are of the inputs made from input_size: input_data is run as given")
        if isinstance(input_data, Mapping):
            return (), dict(input_data)
        return (tuple(input_data) if type(input_data) in (list, tuple) else (input_data,)), {}
    if input_size is None:
        raise UsageError("a forward pass needs inputs: give input_size (e.g. (1, 3, 224, 224) for an image, (1, 128) "
                         "for 128 token ids) or input_data")  # fmt: skip
    shapes = shapes_of(input_size)
    kinds = input_dtypes(dtypes, len(shapes)) or [float_dtype(report)] * len(shapes)
    if token_ids and not dtypes:
        kinds[0] = torch.long
    generator = None if device == "meta" else torch.Generator().manual_seed(0)
    inputs = tuple(_input_tensor(shape, dtype, device, generator) for shape, dtype in zip(shapes, kinds, strict=True))
    return inputs, {}


def input_dtypes(dtypes: Any, inputs: int) -> list[torch.dtype] | None:
    """The torch dtype of each of ``inputs`` inputs that ``dtypes`` gives: one for every input, or one each (names
    such as ``long`` or ``bf16``, or torch dtypes); None where it gives none. Checked before a model is built.

    >>> input_dtypes("long", 2), input_dtypes(None, 1)
    ([torch.int64, torch.int64], None)
    """
    if dtypes is None or (isinstance(dtypes, (list, tuple)) and not dtypes):
        return None
    if not isinstance(dtypes, (list, tuple)):
        dtypes = [dtypes]  # one dtype ("long", torch.long) for every input, not a string's characters
    kinds = [_dtype(value) for value in dtypes]
    if len(kinds) == 1:
        kinds *= inputs
    if len(kinds) != inputs:
        raise UsageError(f"{len(kinds)} dtypes for {inputs} inputs: give one dtype, or one per input")
    return kinds


def takes_token_ids(model: nn.Module) -> bool:
    """Whether ``model``'s main input is token ids, as transformers declares it (``main_input_name`` is
    ``input_ids``; ``pixel_values``, ``input_features`` are floats): its inputs made from sizes start with long ones.

    >>> from torch import nn
    >>> takes_token_ids(nn.Linear(2, 2))
    False
    """
    from .sources.module import forward_module

    return getattr(forward_module(model), "main_input_name", None) == "input_ids"


def summary_inputs(
    model: nn.Module,
    report: Report,
    input_size: Shape | Sequence[Shape] | None,
    input_data: Any,
    dtypes: Sequence[Any] | None,
    device: str,
) -> tuple[tuple[Any, ...], dict[str, Any], Report]:
    """A summary's inputs (:func:`make_inputs`'), and ``report`` with notes of what was made for it: token ids first
    for a model that takes them (:func:`takes_token_ids`; the rows show no dtype for int64, the default of integer
    tensors), and a decoder's ids (:func:`with_decoder_inputs`). Inputs given (``input_data``) run as they are."""
    token_ids = takes_token_ids(model)
    args, kwargs = make_inputs(input_size, input_data, dtypes, device, report, token_ids)
    if input_data is not None:
        return args, kwargs, report
    if token_ids and not dtypes:
        note = (
            "the first input is token ids (int64), as the model's main input is input_ids; --input-dtype sets another"
        )
        report = replace(report, notes=(*report.notes, note))
    kwargs, report = with_decoder_inputs(model, report, args, kwargs)
    return args, kwargs, report


def float_dtype(report: Report | None) -> torch.dtype:
    """The dtype most of the model's floating-point parameter values are in (from its ``report``), which its inputs
    must match (a bfloat16 model takes bfloat16, a float64 one float64); torch's default dtype for a model without
    any, as for a tensor the program makes itself.

    >>> import torch
    >>> from paramscope import inspect
    >>> float_dtype(inspect(torch.nn.Linear(2, 2).to(torch.bfloat16))), float_dtype(None)
    (torch.bfloat16, torch.float32)
    """
    import torch

    values: dict[torch.dtype, int] = {}
    for record in () if report is None else report.tensors:
        dtype = getattr(torch, record.dtype, None)
        if record.kind == "parameter" and isinstance(dtype, torch.dtype) and dtype.is_floating_point:
            values[dtype] = values.get(dtype, 0) + (record.numel or 0)  # a lazy parameter's is not known yet
    return max(values, key=values.__getitem__) if values else torch.get_default_dtype()


_DECODER_INPUTS = ("decoder_input_ids", "decoder_inputs_embeds", "labels")


def decoder_input_ids(model: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> torch.Tensor | None:
    """The token ids an encoder-decoder's decoder lacks, or None: a transformers encoder-decoder (T5, BART,
    Whisper) whose forward was given inputs but nothing for its decoder, neither by keyword nor by position, gets
    the same ids again when its first input is token ids (a 2-dimensional integer tensor), as transformers' own dummy
    inputs do (T5 and others raise without them; BART would shift the same ids right); for other inputs (Whisper's
    audio features, an image), one token per sample, as ``generate()`` starts. The caller notes that it did so."""
    import inspect as pyinspect

    import torch

    from .sources.module import forward_module

    module = forward_module(model)
    if getattr(getattr(module, "config", None), "is_encoder_decoder", False) is not True:
        return None
    parameters = list(pyinspect.signature(module.forward).parameters)
    if "decoder_input_ids" not in parameters or any(name in kwargs for name in _DECODER_INPUTS):
        return None
    if len(args) > parameters.index("decoder_input_ids") or not args:
        return None
    first = args[0]
    if not isinstance(first, torch.Tensor) or first.ndim < 2:
        return None
    if first.ndim == 2 and not (first.is_floating_point() or first.is_complex()):
        return first
    return torch.zeros(first.shape[0], 1, dtype=torch.long, device=first.device)  # the batch first, as transformers'


def with_decoder_inputs(
    model: nn.Module, report: Report, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[dict[str, Any], Report]:
    """``kwargs`` with :func:`decoder_input_ids` added when the model needs them, and ``report`` with a note that
    says so; both as they are otherwise. For inputs made from shapes: inputs given as they are stay so."""
    ids = decoder_input_ids(model, args, kwargs)
    if ids is None:
        return kwargs, report
    ran = "on the input ids again" if ids is args[0] else "on one token per sample, as generate() starts"
    note = (f"the decoder ran {ran} (decoder_input_ids {list(ids.shape)}): an encoder-decoder's decoder takes inputs "
            "of its own (the Python API's input_data gives others)")  # fmt: skip
    return {**kwargs, "decoder_input_ids": ids}, replace(report, notes=(*report.notes, note))


def forward_refusal(model: nn.Module, walk: ModuleWalk | None = None) -> str | None:
    """Why paramscope does not run ``model``'s forward, or None: a module that holds one of its ancestors makes
    torch's train() recurse without end, TorchScript modules take no module hooks, and a sharded model's forward runs
    collectives, which one rank alone would leave waiting (or break FSDP's state). ``walk`` is ``model``'s, when the
    caller has one."""
    from ._walk import ModuleWalk

    walk = walk or ModuleWalk(model)
    if walk.cycles:
        reference, contained = walk.cycles[0]
        return (
            f"module {reference!r} refers back to {contained or '(model)'!r}, which contains it (a cycle): torch's "
            "train() and eval() recurse through it without end; inspect reads the model, a forward needs the cycle "
            "broken"
        )
    classes = {cls.__name__ for kind in {type(module) for module in walk.modules} for cls in kind.__mro__}
    if "ScriptModule" in classes:
        return "the model holds TorchScript modules, which take no module hooks: summarise the eager model"
    sharded = (
        classes & {"FSDPModule", "FullyShardedDataParallel"}
        or any(type(param).__name__ == "DTensor" or hasattr(param, "ds_numel") for param in walk.parameters)
        or any(type(buffer).__name__ == "DTensor" for buffer in walk.buffers)
    )
    if sharded:
        return (
            "the model is sharded (FSDP, DTensor or ZeRO-3): its forward runs collectives across ranks; run it on the "
            "unsharded model (built on meta) instead"
        )
    return None


def check_runnable(model: nn.Module, device: str, walk: ModuleWalk | None = None) -> None:
    """Refuse a forward that paramscope does not run (see :func:`forward_refusal`), or that cannot run: lazy modules
    not yet initialised, a model without weights on cpu. ``walk`` is ``model``'s, when the caller has one."""
    from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

    from ._walk import ModuleWalk

    walk = walk or ModuleWalk(model)
    refusal = forward_refusal(model, walk)
    if refusal is not None:
        raise UsageError(refusal)

    tensors = [*walk.parameters, *walk.buffers]
    # by type: isinstance on a Parameter goes through its metaclass's __instancecheck__, slow on every tensor
    if any(issubclass(kind, (UninitializedParameter, UninitializedBuffer)) for kind in {type(t) for t in tensors}):
        raise UsageError("the model has uninitialised lazy modules: a forward would initialise (change) them; run one "
                         "forward yourself first")  # fmt: skip
    if device == "cpu" and any(t.is_meta for t in tensors):
        raise UsageError("the model is on the meta device, without weights: a forward on cpu needs real ones; use "
                         "device meta")  # fmt: skip
    # on cpu the forward runs on the model's own weights, where they are (copying them to the cpu would take their
    # size in host memory); on meta, their device does not matter
    if device != "cpu":
        return
    elsewhere = sorted({str(t.device) for t in tensors if t.device.type not in ("cpu", "meta")})
    if elsewhere:
        raise UsageError(
            f"the model's weights are on {', '.join(elsewhere)}: a forward on cpu runs on the weights where they are; "
            "move the model to the cpu, or use device meta, which reads no weights"
        )


@functools.cache  # per op name, once a process: a summary names the same ops again
def _elementwise_or_view(name: str) -> bool:
    """Whether the op named ``name`` (``aten.view``) is an element-wise op or a view, as torch's own op tags and
    schemas say: what FLOPs leave out by design. Any other op (a product without a formula, nn.Bilinear's before it
    had one) may carry the model's cost."""
    import torch

    namespace, _, op = name.partition(".")
    try:
        packet = getattr(getattr(torch.ops, namespace), op)
        overloads = [getattr(packet, overload) for overload in packet.overloads()]
    except (AttributeError, RuntimeError):  # an op torch cannot find by its name
        return False
    return any(torch.Tag.pointwise in overload.tags or overload.is_view for overload in overloads)


def _uncounted_note(ops: Mapping[str, int]) -> list[str]:
    if not ops:
        return []
    # ranked by calls, every op that may compute something named before the element-wise ops and views, which
    # alone are cut short: a rare op among them would otherwise be lost in "and N more"
    ranked = sorted(ops.items(), key=lambda item: (-item[1], item[0]))
    elementwise = {op for op in ops if _elementwise_or_view(op)}
    computing = [f"{op} ({count})" for op, count in ranked if op not in elementwise]
    rest = [f"{op} ({count})" for op, count in ranked if op in elementwise]
    kept = max(_MAX_OPS_IN_NOTE - len(computing), 3)
    shown = ", ".join(computing + rest[:kept])
    if len(rest) > kept:
        shown += f" and {len(rest) - kept} more element-wise ops and views"
    return [f"FLOPs count matrix products, convolutions and attention (torch's FlopCounterMode); these ops ran and "
            f"count 0: {shown}"]  # fmt: skip


_COMPILED_IN_THE_FORWARD = "torch.compile with fullgraph=True found no compiled frames"

# torch's refusal of an op on tensors of two devices (FakeTensorDeviceMismatchError), in either order; before torch
# 2.13 (2.11 seen) worded "Unhandled FakeTensor Device Propagation for aten.add.Tensor, found two different devices
# cpu, meta"
_CPU_AND_META = ("two devices, meta and cpu!", "two devices, cpu and meta!", "two different devices meta, cpu",
                 "two different devices cpu, meta")  # fmt: skip


def with_input_hint(error: ForwardError, argument: str | None = "dtypes") -> ForwardError:
    """``error``, with a hint when the inputs do not suit the model: float inputs to an embedding, which torch
    refuses (on cpu and on meta, worded differently for nn.EmbeddingBag), naming only the dtype. ``argument`` is the
    Python API's name for the dtypes of the inputs paramscope makes; None where the caller gave the inputs."""
    cause = error.__cause__
    message = first_line(cause) if isinstance(cause, RuntimeError) else ""
    if "argument #1 'indices' to have one of the following scalar types" in message or message.startswith(
        "expected indices to be long or int"
    ):
        hint = "an embedding looks up integer token ids: give it long inputs"
        if argument is not None:
            hint += f" (--input-dtype long, {argument}=['long'])"
        hinted = type(error)(f"{error}; {hint}")
        hinted.__cause__ = cause
        return hinted
    return error


def _held_outside_the_state(walk: ModuleWalk) -> list[str]:
    """The names of the cpu tensors the modules hold as plain attributes (not parameters nor buffers), themselves or
    in a list, tuple or dict, which ``model.to()`` does not move, nor a forward on meta."""
    import torch

    from .sources.module import own_attributes

    return [
        f"{path}.{where}" if path else where
        for path, module in walk.each_module
        for _, _, where, value in own_attributes(module)
        if isinstance(value, torch.Tensor) and value.device.type == "cpu"
    ]


def _explained(error: ForwardError, device: str, mode: str, inputs_given: bool, walk: ModuleWalk) -> ForwardError:
    """``error``, with a hint where its cause is one a summary's forward meets for a known reason (a tensor made on
    the cpu, code compiled in the forward, an op meta cannot run...)."""
    from .trace import ForwardError

    cause = error.__cause__
    if device == "meta" and cause is not None and first_line(cause).endswith(_CPU_AND_META):
        held = _held_outside_the_state(walk)
        if held:  # self.table = torch.randn(3, 4): on the cpu, where model.to("cuda") leaves it too
            hint = (f"the model holds a tensor on the cpu that is not a parameter nor a buffer ({listed(held, 3)}), "
                    "which model.to() does not move either (register_buffer moves it), or the forward made one there "
                    "(no device=); the meta device refuses to use it with the model's, as a GPU does: try --device "
                    "cpu")  # fmt: skip
        else:  # torch.zeros(3) in a forward, without device=: on the cpu, which a forward on a GPU refuses too
            hint = ("the forward made a tensor on the cpu (no device=) and used it with the model's, which the meta "
                    "device refuses as a GPU does: try --device cpu")  # fmt: skip
        return ForwardError(f"{error}; {hint}")
    if cause is not None and first_line(cause).startswith(_COMPILED_IN_THE_FORWARD):
        # dynamo imported by the forward itself: the summary could not set its stance to run compiled code eagerly
        hint = ("the forward compiled code at its first call in this process (torch.compile; FlexAttention "
                "compiles its kernel so), which torch refuses under the summary's recorder of ops: import "
                "torch.nn.attention.flex_attention (or torch._dynamo) before the summary, at the top of the "
                "model's module")  # fmt: skip
        return ForwardError(f"{error}; {hint}")
    if device == "meta" and cause is not None and first_line(cause).startswith("FlexAttention is only supported"):
        hint = ("torch runs FlexAttention on a real device alone: try --device cpu (in eval mode: torch runs its "
                "backward on a GPU alone)")  # fmt: skip
        return ForwardError(f"{error}; {hint}")
    if device == "meta" and isinstance(cause, AssertionError) and "shape_env" in first_line(cause):
        # torch's fake tensors make a jagged nested tensor's ragged size a symbol, from symbolic shapes alone
        hint = "the forward makes a jagged nested tensor, which cannot be made on meta: try --device cpu"
        return ForwardError(f"{error}; {hint}")
    if device == "meta" and cause is not None and is_meta_device_failure(cause):
        hint = "meta tensors have no values to read, and some ops no meta kernel: try --device cpu"
        return ForwardError(f"{error}; {hint}")
    if device == "meta" and isinstance(cause, RuntimeError) and str(cause).startswith("_apply(): Couldn't swap"):
        # torch swaps a fake tensor's parameter for the converted one, which fake tensors' weak references refuse
        # (SwitchTransformers' and NLLB-MoE's routers call self.classifier.to(self.dtype) in their forward)
        hint = ("the model's forward converts its own modules (Module.to()), which the forward on meta, on fake "
                "tensors, cannot do: try --device cpu")  # fmt: skip
        return ForwardError(f"{error}; {hint}")
    if mode == "eval" and isinstance(cause, RuntimeError) and "does not require grad" in first_line(cause):
        # torch.autograd.grad in the forward (forces from an energy): a plain model(x) runs with gradients on
        hint = ("an eval-mode summary runs the forward without gradients, as torch.no_grad() does: a forward that "
                "takes gradients itself needs torch.enable_grad() around them, or --mode train")  # fmt: skip
        return ForwardError(f"{error}; {hint}")
    return with_input_hint(error, None if inputs_given else "dtypes")


def summarize(
    model: nn.Module,
    report: Report,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    depth: int,
    device: str,
    mode: str,
    quiet: bool = True,
    inputs_given: bool = False,
) -> Report:
    """``report`` (of ``model``) with the call records, FLOPs and activation bytes of a forward pass; unless
    ``quiet``, with a progress bar on a terminal. ``inputs_given``: the caller's own inputs (``input_data``), not
    ones made from sizes."""
    from ._walk import ModuleWalk, path_depth
    from .sources._logged import logged_if_imported
    from .sources.module import forward_module, reported_paths
    from .trace import ForwardError, trace

    model = forward_module(model)
    walk = ModuleWalk(model)
    check_runnable(model, device, walk)
    renamed = reported_paths(walk.named_modules)
    # a wrapper's module is a level deeper than the report names it: described as deep as its row is shown
    deeper = max((path_depth(path) - path_depth(name) for path, name in renamed.items()), default=0)
    # what transformers warns in the forward (a fused kernel's package not installed) is a note, not a line above
    with logged_if_imported("transformers") as warned:
        try:
            result = trace(model, args, kwargs, device=device, train=mode == "train", quiet=quiet, walk=walk,
                           depth=depth + deeper)  # fmt: skip
        except ForwardError as error:
            explained = _explained(error, device, mode, inputs_given, walk)
            raise type(explained)(f"{explained}{warned.said('transformers')}") from error.__cause__
    params = {node.path: node.params for node in report.modules}
    types = {node.path: node.type or "" for node in report.modules}
    if renamed:
        _fold_wrappers(result, renamed)
    classes: dict[str, str] = {}  # each module's class name by path, made when first needed (rarely)

    def in_report(path: str) -> str:  # the trace's paths are the report's, wrappers folded; not replaced ones
        return renamed.get(path, path)

    def class_at(path: str) -> str:
        if not classes:
            classes.update((in_report(at), type(module).__name__) for at, module in walk.named_modules)
        return classes.get(path, "")

    def record(path: str, inputs: str, outputs: str, calls: int, flops: int, activations: int | None) -> CallRecord:
        reported = in_report(path)
        # a module the report folds into its owner (a parametrization's) has no node there: its class names its row
        kind = types.get(reported) or class_at(path)
        own_activations = result.own_activations.get(path, 0) if measured else None
        return CallRecord(path, kind, path_depth(path), inputs, outputs, params.get(reported, 0), flops, flops // 2,
                          calls, activations, result.own_flops.get(path, 0), own_activations)  # fmt: skip

    measured = result.total_activations is not None
    called = {call.path for call in result.calls}
    # modules that ran only in the train-mode forward that measured the activations (an auxiliary head run in
    # training): rows of their own, with those activations, so that the rows above them add up
    trained_only = [path for path in result.measured_calls if path not in called] if measured else []
    ran = called.union(trained_only)
    known: dict[str, list[str]] = {}
    ancestors = {path: _ancestors(path, known) for path in ran}
    uncalled = {a for path in ran for a in ancestors[path] if a not in ran}
    children: dict[str, list[str]] = {}
    for path in sorted(ran | uncalled):
        if path:
            children.setdefault(path.rpartition(".")[0], []).append(path)

    def summed(figures: Mapping[str, int], path: str) -> int:
        # A container that is never called itself (a ModuleList of layers) gets the sums of its children, called
        # or containers in turn, so every depth shows the whole model.
        if path in ran:
            return figures.get(path, 0)
        return sum(summed(figures, child) for child in children.get(path, ()))

    records: list[CallRecord] = []  # the rows as deep as asked for
    containers: set[str] = set()
    for call in result.calls:
        for ancestor in ancestors[call.path]:  # a row before the first called child
            if ancestor in uncalled and ancestor not in containers:
                containers.add(ancestor)
                if path_depth(ancestor) <= depth:
                    activations = summed(result.activations, ancestor) if measured else None
                    records.append(record(ancestor, "", "", 0, summed(result.flops, ancestor), activations))
        if path_depth(call.path) <= depth:
            activations = result.activations.get(call.path, 0) if measured else None
            records.append(record(call.path, call.inputs, call.outputs, call.calls, result.flops.get(call.path, 0),
                                  activations))  # fmt: skip
    if trained_only:
        _place_trained_only(records, trained_only, result.measured_calls, ancestors, depth, lambda path: record(
            path, "", "", 0, summed(result.flops, path), summed(result.activations, path)))  # fmt: skip
    if "" not in called:  # the model's forward never ran (its __call__ runs the layers itself): a container's row
        tops = children.get("", [])
        flops = result.total_flops
        activations = result.total_activations
        own_activations = None if activations is None else activations - sum(summed(result.activations, top)
                                                                             for top in tops)  # fmt: skip
        own = flops - sum(summed(result.flops, top) for top in tops)
        records.insert(0, CallRecord("", types.get("") or type(model).__name__, 0, "", "", params.get("", 0), flops,
                                     flops // 2, 0, activations, own, own_activations))  # fmt: skip
    calls = tuple(_under_their_parents(records))
    totals = replace(
        report.totals,
        flops=result.total_flops,
        macs=result.total_flops // 2,
        activations_bytes=result.total_activations,
    )
    if measured:
        where = "" if mode == "train" else f" on {result.activations_device}"
        activations_note = f"activations measured in a train-mode forward{where}"
    else:
        activations_note = f"activations not measured: {result.activations_failure}"
    notes = [
        f"forward pass in {mode} mode on {device}; {activations_note}",
        *_uncounted_note(result.uncounted_ops),
    ]
    if measured and result.activations_device == "meta":
        named = ((in_report(at), module) for at, module in walk.named_modules)
        notes.extend(unfused_recurrent_note(named, result.calls))
    notes.extend(forward_warning_notes(warned, measured))
    if result.unread_masks:
        notes.append(unread_masks_note(result.unread_masks))
    notes.extend(as_a_device_notes(result))
    if result.checkpoint_calls:
        notes.append(checkpoint_calls_note(result.checkpoint_calls, result.selective_calls - result.selective_unread))
    if result.selective_unread:
        notes.append(selective_unread_note(result.selective_unread))
    ran_here = {in_report(path) for path in called.union(trained_only)}
    # a module whose weights are tied to a module that ran (T5's `shared` embedding) is not idle
    tied_to_ran = {record.name.rpartition(".")[0] for record in report.tensors
                   if any(alias.rpartition(".")[0] in ran_here for alias in record.aliases)}  # fmt: skip
    used = ran_here | tied_to_ran | {in_report(path) for path in result.replaced}
    idle = [node.path for node in report.modules
            if node.own_params and node.same_as is None and node.path not in used]  # fmt: skip
    if "" not in called:
        notes.append("the model's forward did not run (its __call__ runs its modules itself): its row sums what ran "
                     "in the call, inside its modules and outside them")  # fmt: skip
    if result.replaced:
        notes.append(
            f"the forward replaced the forward of {listed(result.replaced, 5)} with one that does not call the old "
            "one: calls through it are not rows of their own, and their FLOPs count in the module that made them"
        )
    if result.other_threads:
        notes.append(other_threads_note(dict.fromkeys(map(in_report, result.other_threads))))
    if result.elsewhere:
        elsewhere = list(dict.fromkeys(map(in_report, result.elsewhere)))
        callers = list(dict.fromkeys(in_report(caller) for found in result.elsewhere.values() for caller in found))
        notes.append(
            f"{listed(elsewhere, 5)} ran inside {listed([shortened(c) or '(model)' for c in callers], 5)}, which "
            f"{'does' if len(callers) == 1 else 'do'} not hold {'it' if len(elsewhere) == 1 else 'them'}: the FLOPs "
            "and activations of those calls count in two rows, the caller's and the called module's, so the rows "
            "under a caller add up to less than it, and the rows at a depth to more than the total"
        )
    if idle:
        notes.append(
            f"{format_count(len(idle))} module(s) hold parameters but were not called in this forward (their parent "
            f"used the weights directly, as nn.MultiheadAttention and torch's fused kernels do, or they are unused): "
            f"{listed(idle, 5)}"
        )
    if trained_only:
        notes.append(
            f"{format_count(len(trained_only))} module(s) ran only in the train-mode forward that measured the "
            f"activations, not in this one: {listed(trained_only, 5)}; their rows hold those activations alone"
        )
    reused = [call for call in calls if call.calls > 1]
    if reused:
        first = f"{shortened(reused[0].path) or '(model)'} {format_count(reused[0].calls)} times"
        notes.append(
            f"{len(reused)} module(s) ran more than once ({first}, …): one row each, figures summed over calls"
        )
    return replace(report, totals=totals, calls=calls, notes=(*report.notes, *notes))


def _fold_wrappers(result: Trace, renamed: Mapping[str, str]) -> None:
    """Name ``result``'s figures by the report's paths (``renamed``): a wrapper that holds one module and nothing
    else (torch.compile's ``_orig_mod``, DataParallel's ``module``, a checkpoint wrapper's) and the module it wraps
    are one row, under the wrapper's path, with the figures of the wrapper's call (the inputs a checkpoint wrapper
    keeps are its own) and the own figures of both."""
    folded = {path: name for path, name in renamed.items() if path.rpartition(".")[0] == name}

    def subtree(figures: dict[str, int]) -> dict[str, int]:
        kept = {renamed.get(path, path): value for path, value in figures.items() if path not in folded}
        for (
            path,
            name,
        ) in folded.items():  # the wrapper's own figure stands for both; else, where it has none, the module's
            if path in figures:
                kept.setdefault(name, figures[path])
        return kept

    def own(figures: dict[str, int]) -> dict[str, int]:
        kept: dict[str, int] = {}
        for path, value in figures.items():
            name = renamed.get(path, path)
            kept[name] = kept.get(name, 0) + value
        return kept

    called = {call.path for call in result.calls}
    result.calls = [
        call if call.path not in renamed else replace(call, path=renamed[call.path])
        for call in result.calls
        if not (call.path in folded and folded[call.path] in called)  # the wrapper's row stands for both
    ]
    result.flops, result.activations = subtree(result.flops), subtree(result.activations)
    result.own_flops, result.own_activations = own(result.own_flops), own(result.own_activations)
    result.measured_calls = list(dict.fromkeys(renamed.get(path, path) for path in result.measured_calls))


def unfused_recurrent_note(named_modules: Iterable[tuple[str, nn.Module]], calls: Iterable[ModuleCall]) -> list[str]:
    """What the activations of recurrent layers measured on meta leave out: meta runs torch's unfused cells, where
    cpu runs oneDNN's LSTM kernel, which keeps a workspace besides, and copies the input of a bidirectional layer
    with ``batch_first`` for each direction; a GPU's cuDNN kernels keep a reserve of their own. A layer given a packed
    sequence runs the cells on cpu too, and copies nothing (what its first call's inputs describe)."""
    from torch import nn

    inputs = {call.path: call.inputs for call in calls}
    layers = [(path, module) for path, module in named_modules if path in inputs and isinstance(module, nn.RNNBase)]
    if not layers:
        return []
    unpacked = [(path, module) for path, module in layers if not inputs[path].startswith("PackedSequence(")]
    # oneDNN runs an LSTM without projections (torch's RNN.cpp falls back to the cells for proj_size)
    fused = [module for _, module in unpacked if isinstance(module, nn.LSTM) and not module.proj_size]
    copied = [module for _, module in unpacked if module.bidirectional and module.batch_first and module not in fused]
    on_cpu = [
        *(["oneDNN's LSTM kernel keeps a workspace besides, several times that"] if fused else []),
        *(["a bidirectional layer with batch_first saves its input once more"] if copied else []),
    ]
    cpu = f"on cpu, {' and '.join(on_cpu)}; " if on_cpu else ""
    names = [path or "(model)" for path, _ in layers]
    return [
        f"activations of the recurrent layers, as torch's unfused cells save them (on meta): "
        f"{listed(names, 5)}; {cpu}cuDNN's kernels on a GPU keep a reserve besides; a summary "
        "with --device cpu --mode train measures cpu's"
    ]


# transformers' warning when a function that a package's fused kernels run (mamba_ssm's selective scan,
# causal_conv1d's convolution, FLA's gated delta rule) runs transformers' own PyTorch code instead, the package not
# being installed (integrations/hub_kernels.py): transformers tells which implementation it took in this alone
_REFERENCE_CODE = re.compile(
    r"`(?P<function>\w+)` is falling back to its reference PyTorch implementation because `(?P<package>[\w.-]+)` is "
    r"not installed\b"
)


def forward_warning_notes(warned: Logged, measured: bool = True) -> list[str]:
    """The notes of what transformers warned in a forward: one for the functions it ran in its reference PyTorch
    code, without the package of their fused kernels, and what that does to the activations (when ``measured``);
    each other warning as it is.

    >>> from paramscope.sources._logged import Logged
    >>> warned = Logged()
    >>> for package, function in [("mamba_ssm", "selective_scan_fn"), ("causal_conv1d", "causal_conv1d_fn")]:
    ...     warned.keep(f"`{function}` is falling back to its reference PyTorch implementation because "
    ...                 f"`{package}` is not installed. This is correct but much slower; install `{package}`.")
    >>> print(forward_warning_notes(warned)[0])
    activations measured on transformers' reference PyTorch code for selective_scan_fn, causal_conv1d_fn, as \
mamba_ssm and causal_conv1d are not installed here (transformers warned): it materialises intermediates that their \
fused kernels do not, so a GPU that runs those kernels needs less than this estimate
    """
    functions: dict[str, None] = {}
    packages: dict[str, None] = {}
    others = Logged()
    for text in warned.texts:
        fallback = _REFERENCE_CODE.search(text)
        if fallback is None:
            others.keep(text)
        else:
            functions[fallback["function"]] = packages[fallback["package"]] = None
    others.more = warned.more
    notes = others.notes("transformers")
    if functions:
        missing = f"{' and '.join(packages)} {'is' if len(packages) == 1 else 'are'} not installed here"
        ran = f"transformers' reference PyTorch code for {', '.join(functions)}, as {missing} (transformers warned)"
        if measured:
            notes.insert(0, f"activations measured on {ran}: it materialises intermediates that their fused kernels do "
                            "not, so a GPU that runs those kernels needs less than this estimate")  # fmt: skip
        else:
            notes.insert(0, f"the forward ran {ran}")
    return notes


# What a forward on meta did as a device would, where the CPU would not, by the Trace's count of the calls it did so
# in: a note each, its count put in for {calls}
_AS_A_DEVICE = {
    "fused_with_dropout": (
        "activations of {calls} attention call(s) with dropout, as a GPU's fused kernel saves them (on meta); torch's "
        "CPU kernel refuses dropout and runs the math path, which also keeps the attention matrix and the dropout "
        "mask: a summary with --device cpu --mode train measures cpu's"
    ),
    "batch_first_attention": (
        "{calls} float32 attention call(s) laid their output out batch first, as a GPU's fused kernel does (on meta); "
        "torch's CPU kernel follows the query's layout, so the transpose and reshape before the output projection may "
        "copy it on one and not the other, and the projection save that copy: on cpu where the query is not batch "
        "first, on a GPU (and meta) in nn.MultiheadAttention: a summary with --device cpu --mode train measures cpu's"
    ),
    "grouped_float32_attention": (
        "activations of {calls} grouped-query attention call(s) in float32 (fewer key/value heads than query heads), "
        "as a GPU saves them (on meta): no fused GPU kernel takes them, and the math path keeps the attention matrix; "
        "torch's CPU kernel takes them and saves less: a summary with --device cpu --mode train measures cpu's"
    ),
    "float64_attention": (
        "activations of {calls} attention call(s) in float64, as a GPU saves them (on meta): no fused GPU kernel takes "
        "float64, and the math path keeps the attention matrix; torch's CPU kernel takes it and saves less: a summary "
        "with --device cpu --mode train measures cpu's"
    ),
    "value_head_attention": (
        "activations of {calls} attention call(s) whose values have a head size of their own (multi-head latent "
        "attention), as a GPU's memory-efficient kernel saves them (on meta); torch's CPU kernel wants one head size "
        "for queries, keys and values and runs the math path, which also keeps the attention matrix: a summary with "
        "--device cpu --mode train measures cpu's"
    ),
    "float32_layer_norm": (
        "{calls} LayerNorm call(s) of a float16 or bfloat16 input saved their mean and inverse standard deviation in "
        "float32, as a GPU does (on meta); the CPU saves them in the input's dtype: a summary with --device cpu --mode "
        "train measures cpu's"
    ),
    "mask_dropout": (
        "{calls} dropout call(s) kept a boolean mask for backward, as CUDA's fused kernel does (on meta); the CPU "
        "keeps its noise in the input's dtype, four times the bytes in float32: a summary with --device cpu --mode "
        "train measures cpu's"
    ),
    "padded_encoder": (
        "nn.TransformerEncoder ran its layers on the padded batch {calls} time(s) (on meta), as in training; in eval "
        "mode a real device's fast path packs the tokens its src_key_padding_mask keeps (padding on the right) into a "
        "nested tensor and runs those alone, fewer FLOPs: a summary with --device cpu counts them"
    ),
    # where values were wanted: tensors without values cannot answer a check for infinities
    "finite_checks": (
        "on meta, the forward read {calls} check(s) of its activations for infinities or NaNs (torch.isfinite, isinf, "
        "isnan: BART's guard against float16 overflow, DETR's in training), answered as for finite values, as a real "
        "device answers them in a healthy forward (a summary with --device cpu runs with the values)"
    ),
}


def as_a_device_notes(result: Trace) -> list[str]:
    """What a forward on meta did as a device would, where the CPU would not (a fused attention kernel's activations
    and layout) or where values were wanted (a check for infinities): the same notes in a summary and a memory plan."""
    return [note.format(calls=calls) for field, note in _AS_A_DEVICE.items() if (calls := getattr(result, field))]


CHECKPOINT_CALLS = "the train-mode forward ran torch.utils.checkpoint"


def checkpoint_calls_note(calls: int, selective: int = 0) -> str:
    """What the activations of a forward that checkpoints regions itself leave out."""
    kept = "the regions' inputs"
    if selective:
        kept += (f", and in the {selective} selective one(s) the outputs of the ops the policy saves, in the modules "
                 "that ran them")  # fmt: skip
    return (f"{CHECKPOINT_CALLS} {calls} time(s): the activations count what it keeps ({kept}), not the regions' "
            "saved tensors, which live again while backward recomputes them")  # fmt: skip


def selective_unread_note(regions: int) -> str:
    """What the activations leave out where torch's cache of what selective activation checkpointing keeps could not
    be read."""
    return (f"the tensors the selective activation checkpointing of {regions} region(s) keeps could not be read "
            "(torch's private cache of them is laid out otherwise than paramscope knows), so the activations count "
            "those regions as fully checkpointed, their inputs alone kept (a lower bound)")  # fmt: skip


def other_threads_note(paths: Iterable[str]) -> str:
    """What a forward did where it called modules (``paths``) in threads of its own: torch's dispatch modes and
    saved-tensor hooks, which see the ops, are the forward's thread's."""
    return (f"{listed([shortened(path) or '(model)' for path in paths], 5)} ran in another thread than the forward's, "
            "where paramscope sees none of their ops: their FLOPs and activations are not counted, and what they "
            "write is neither refused nor put back")  # fmt: skip


def unread_masks_note(checks: Iterable[str]) -> str:
    """What a forward on meta did where transformers' masks check the values of an input (``checks``: their
    functions), which meta has not."""
    return (f"on meta, transformers' masks could not read the values of an input they check ({', '.join(checks)}), "
            "and kept the mask as under a trace; on a real device the values decide (a mask of ones is skipped, "
            "position ids of one sequence each are not packed), and the attention kernel and the activations may "
            "follow them: --device cpu runs with them")  # fmt: skip


def _under_their_parents(records: Sequence[CallRecord]) -> list[CallRecord]:
    """``records`` (rows in the order their modules first ran) with each row among its parent's, siblings in the
    order they first ran: a module that ran inside one that does not hold it (a shared module a layer is handed, one
    a user's hook calls) or before its parent did (a grandchild the model calls itself) had its row drawn inside the
    rows of whatever ran before it, under a module that is not its parent. A subtree's place is its first row's.

    >>> from paramscope._walk import path_depth
    >>> rows = [CallRecord(path, "", path_depth(path), "", "", 0, 0, 0, 1, None)
    ...         for path in ["", "layers", "layers.0", "layers.0.a", "shared", "layers.0.b", "layers.1"]]
    >>> [row.path for row in _under_their_parents(rows)]
    ['', 'layers', 'layers.0', 'layers.0.a', 'layers.0.b', 'layers.1', 'shared']
    """
    first: dict[str, int] = {}  # each subtree's first row
    for index, record in enumerate(records):
        names = record.path.split(".") if record.path else []
        for end in range(1, len(names) + 1):
            first.setdefault(".".join(names[:end]), index)

    def place(record: CallRecord) -> tuple[int, ...]:
        names = record.path.split(".") if record.path else []
        return tuple(first[".".join(names[:end])] for end in range(1, len(names) + 1))

    return sorted(records, key=place)


def _place_trained_only(
    records: list[CallRecord],
    trained_only: Sequence[str],
    order: Sequence[str],
    ancestors: Mapping[str, list[str]],
    depth: int,
    make: Callable[[str], CallRecord],
) -> None:
    """Put in ``records`` (the rows of an eval-mode forward) a row made by ``make`` for each module that ran in the
    train-mode forward alone (``trained_only``; ``order``: that forward's modules in the order they were first
    called), and for each of its ancestors without one (a container), as deep as ``depth``: after the rows of the
    module that ran before it there, inside that module's rows where it is an ancestor."""
    from ._walk import path_depth

    rows = {record.path: record for record in records}
    # the rows as a list linked by path (None: before the first), so that placing one does not scan and shift the
    # rows (a list's index() and insert() for each would cost the square of the modules)
    following: dict[str | None, str | None] = dict(zip([None, *rows], [*rows, None], strict=True))
    position = {path: index for index, path in enumerate(order)}

    def shown(path: str) -> str:  # the row a module's figures are in: its own, or its ancestor's at ``depth``
        return ".".join(path.split(".")[:depth]) if path_depth(path) > depth else path

    for path in trained_only:
        for placed in (*ancestors[path], path):
            if placed in rows or path_depth(placed) > depth:
                continue
            parent = placed.rpartition(".")[0]
            ran_before = (shown(order[index]) for index in range(position[path] - 1, -1, -1))
            before = next((row for row in ran_before if row in rows), "")
            if parent and before != parent and not before.startswith(f"{parent}."):
                before = parent  # the first of its parent's modules to run: right under the parent's row
            after: str | None = before if before in rows else None
            if before != parent:
                while (next_row := following[after]) is not None and next_row.startswith(f"{before}."):
                    after = next_row  # after what it called
            following[placed], following[after] = following[after], placed
            rows[placed] = make(placed)
    records[:] = []
    row = following[None]
    while row is not None:
        records.append(rows[row])
        row = following[row]


def _ancestors(path: str, known: dict[str, list[str]]) -> list[str]:
    """The ancestors of a module path below the root, outermost first: ``a.b.c`` -> ``a``, ``a.b``. ``known`` keeps
    each parent's list for its siblings, which share it (not to be changed)."""
    parent = path.rpartition(".")[0]
    if not parent:
        return []
    found = known.get(parent)
    if found is None:
        found = known[parent] = [*_ancestors(parent, known), parent]
    return found


def check_mode(device: str | torch.device, mode: str) -> str:
    """The device a summary runs on, ``"meta"`` or ``"cpu"``, from its name or a ``torch.device`` (``"cpu:0"``, as
    torchinfo takes it), once ``mode`` is checked too."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):  # not a device's name
        parsed = None
    if parsed is None or parsed.type not in ("meta", "cpu") or parsed.index not in (None, 0):
        raise UsageError(f"device must be meta or cpu, not {str(device)!r}")
    if mode not in ("eval", "train"):
        raise UsageError(f"mode must be eval or train, not {mode!r}")
    return parsed.type


def module_of(value: Any) -> nn.Module:
    from torch import nn

    if not isinstance(value, nn.Module):
        raise TargetError(f"cannot run an object of type {type(value).__name__}: pass a torch.nn.Module or a target")
    return value
