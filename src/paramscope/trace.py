"""A forward pass, layer by layer: shapes, FLOPs and the activation memory autograd keeps, on meta by default.

The model runs through ``torch.func.functional_call`` with stand-ins for its tensors (meta copies on meta; on CPU
the real parameters and clones of the buffers), so its own parameters, buffers (BatchNorm statistics included),
devices and ``requires_grad`` never change; the train/eval flag of every module and the hooks added here are
restored even when the forward raises.

- Shapes: a wrapper of every module's ``forward`` (hooks, on a module with hooks of its own) counts its calls,
  records what goes in and comes out (down to the summary's depth), in execution order, and keeps the stack of
  running modules.
- FLOPs: the formulas of torch's ``FlopCounterMode`` (``flop_registry``), plus those it lacks for torch's fused CPU
  kernels, attributed to each module by what they add while it runs. The ops without a formula are named in the
  notes.
- Activations: the bytes autograd saves for backward in a train-mode forward with gradients, seen by
  ``torch.autograd.graph.saved_tensors_hooks`` and de-duplicated by storage (parameters and buffers are not
  activations). When a summary on meta runs in eval mode, a second forward, in train mode, measures them: on meta
  it costs neither memory nor compute. On a real device only the forward asked for runs.

On meta, the forward runs on torch's fake tensors (code that checks for a trace reads no values),
``scaled_dot_product_attention`` runs as a fused kernel, as it does on a GPU, and grouped matrix products take
float32 as torch's CPU kernel does (see ``_on_meta``); on CPU torch picks its kernel itself.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from itertools import chain
from threading import get_ident
from types import MethodType
from typing import Any

import torch
from torch import nn
from torch._ops import HigherOrderOperator
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensor,
    FakeTensorConverter,
    FakeTensorMode,
    UnsupportedOperatorException,
)
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from . import _flop_formulas
from ._autocast import AsUnderAutocast
from ._checkpointing import checkpoint_replaced, selectively_kept
from ._describe import PLAIN_DTYPES_IN_ERRORS, describe, describe_arguments
from ._errors import TargetError, first_line, raise_if_interrupted
from ._inputs import moved_tensors, to_device
from ._model_state import in_mode
from ._on_meta import KNOWN_VALUES_LIMIT, as_on_a_device, fake_tensors
from ._process_settings import (
    KEEPS_DYNAMO_OUT,
    as_the_forward_runs,
    compiled_code_run_eagerly,
    set_eval_frame,
    skipped_by_dynamo,
)
from ._progress import steps
from ._storages import has_plain_storage, input_storages, storage_key, storage_parts
from ._walk import ModuleWalk, path_depth

aten = torch.ops.aten


# the function of torch's that runs a module's forward and its hooks (nn.Module.__call__)
_CALL_IMPL = nn.Module._call_impl.__code__


class ParameterWriteError(RuntimeError):
    """A forward on the real weights was about to change one of them in place."""


# What FlopCounterMode leaves to a tensor subclass with its own sizes and strides (a jagged nested tensor).
_METADATA_QUERIES = {
    getattr(aten, name).default
    for name in ("sym_is_contiguous", "is_contiguous", "is_strides_like_format", "is_non_overlapping_and_dense",
                 "size", "sym_size", "stride", "sym_stride", "storage_offset", "sym_storage_offset", "numel",
                 "sym_numel", "dim")
    if hasattr(aten, name)
} | {aten.is_contiguous.memory_format, torch.ops.prim.layout.default, torch.ops.prim.device.default}  # fmt: skip


class _NoShape(Exception):
    """A formula on shapes met a tensor without one (a nested tensor's sequences have their own)."""


def _shapes(value: Any) -> Any:
    """``value`` with its tensors replaced by their shapes: what FlopCounterMode's ``shape_wrapper`` passes to a
    formula, without the pytree walk that costs more than the formula (aten arguments nest in lists, tuples and
    dicts only)."""
    if isinstance(value, torch.Tensor):
        if value.is_nested:
            raise _NoShape
        return value.shape
    if type(value) is tuple or type(value) is list:
        items = [_shapes(item) for item in value]
        return items if type(value) is list else tuple(items)
    if type(value) is dict:
        return {key: _shapes(item) for key, item in value.items()}
    return value


_KEYWORDS = object()
"""Where a flat key's keyword arguments start."""


def _flat_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    """An op's arguments, their tensors by shape, when none of them is a list, tuple or dict: a flat loop where
    :func:`_shapes` recurses, on every op with a formula; None otherwise."""
    key: list[Any] = []
    # keyword arguments after a marker, as name, value, name, value...
    for value in (*args, _KEYWORDS, *chain.from_iterable(kwargs.items())) if kwargs else args:
        if isinstance(value, torch.Tensor):
            if value.is_nested:
                raise _NoShape
            key.append(value.shape)
        elif type(value) is tuple or type(value) is list or type(value) is dict:
            return None
        else:
            key.append(value)
    return tuple(key)


# Each formula on shapes gives the same count for the same shapes, in any forward: its counts are kept between them
# (a model's layers repeat their shapes, and a summary is often run again), up to a bound.
_KNOWN_COUNTS_LIMIT = 4096
_OUTPUT_SHAPES_FOLLOW = {"torch.utils.flop_counter", _flop_formulas.__name__}


class _Counter:
    """A FLOP formula as FlopCounterMode calls it, on an op's arguments and output (``out_val``), in two steps:
    :meth:`known` before the op runs, :meth:`count` after, for a count not known yet. A formula on shapes (torch's
    ``shape_wrapper``) works out each count once. torch's and paramscope's are kept under the arguments' shapes and
    looked up before the kernel runs (their ops, matrix products, convolutions and attention, have outputs whose
    shapes their arguments decide); one registered elsewhere, under the output's shapes too. A formula on tensors
    gets them each time."""

    __slots__ = ("_before", "_formula", "_known", "_on_shapes")

    def __init__(self, formula: Callable[..., int]) -> None:
        self._formula = formula
        on_shapes = getattr(formula, "__wrapped__", None)  # torch's shape_wrapper keeps the formula it wraps (wraps)
        # on the op's tensors: torch's get_raw formulas (flash attention) and paramscope's own
        self._on_shapes = None if getattr(formula, "_get_raw", False) else on_shapes
        self._before = getattr(on_shapes, "__module__", None) in _OUTPUT_SHAPES_FOLLOW
        """Whether the count can be looked up before the kernel runs: torch's formulas and paramscope's are for ops
        whose outputs' shapes their arguments decide; one registered elsewhere may be for an op whose output
        depends on its inputs' values (a router's), so its key takes in the output's shapes, after."""
        self._known: dict[Any, int] = {}

    def known(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int | None, Any]:
        """The count for these arguments if it is known already, and its key (None for a formula on tensors).
        Raises :class:`_NoShape` for a tensor without a shape."""
        if not self._before:
            return None, None
        key: Any = _flat_key(args, kwargs)
        if key is not None:
            try:
                return self._known.get(key), key
            except TypeError:  # an argument that does not hash
                pass
        key = repr(_shapes((args, kwargs)))  # lists among them (a convolution's stride) do not hash
        return self._known.get(key), key

    def count(self, key: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        """The FLOPs of the op that ran on ``args`` and ``kwargs`` and gave ``out``: a count :meth:`known` did not
        find (under ``key``), or did not look for (``key`` None)."""
        if self._on_shapes is None:
            return self._formula(*args, **kwargs, out_val=out)
        arg_shapes, kwarg_shapes, out_shape = shapes = _shapes((args, kwargs, out))
        if key is None:  # not looked up before: the key takes in the output's shapes
            key = repr(shapes)
            flops = self._known.get(key)
            if flops is not None:
                return flops
        flops = int(self._on_shapes(*arg_shapes, out_shape=out_shape, **kwarg_shapes))
        if len(self._known) >= _KNOWN_COUNTS_LIMIT:
            self._known.clear()
        self._known[key] = flops
        return flops


_counters: dict[Callable[..., int], _Counter] = {}


def _counter(formula: Callable[..., int]) -> _Counter:
    """The one :class:`_Counter` of ``formula``, whose counts every forward shares."""
    counter = _counters.get(formula)
    if counter is None:
        counter = _counters[formula] = _Counter(formula)
    return counter


# Each overload's traits, kept for good: torch keeps every overload it makes for good too.
_traits: dict[Any, tuple[bool, tuple[tuple[int, str], ...]]] = {}


def _op_traits(func: Any) -> tuple[bool, tuple[tuple[int, str], ...]]:
    """Whether the op overload ``func`` has a decomposition (a CompositeImplicitAutograd kernel), and the arguments
    it writes to, by position and name, from torch's dispatcher and schema."""
    traits = _traits.get(func)
    if traits is None:
        composite = func is not torch.ops.prim.device.default and (
            torch._C.DispatchKey.CompositeImplicitAutograd in func.py_kernels
            or torch._C._dispatch_has_kernel_for_dispatch_key(
                func.name(), torch._C.DispatchKey.CompositeImplicitAutograd
            )
        )
        arguments = func._schema.arguments
        written = tuple(
            (i, a.name) for i, a in enumerate(arguments) if a.alias_info is not None and a.alias_info.is_write
        )
        traits = _traits[func] = (composite, written)
    return traits


@dataclass(slots=True)  # slots: the handler reads a plan on every op
class _OpPlan:
    """How :class:`_OpRecorder` handles one op overload, worked out once, and how often it ran."""

    packet: Any
    counter: _Counter | None
    """Counts its FLOPs, when it has a formula and the recorder counts them."""
    decomposes: bool
    """No formula, but a decomposition into ops that may have one (FlopCounterMode decomposes these too)."""
    written: tuple[tuple[int, str], ...]
    """The arguments the op writes to (``self`` of ``clamp_``, ``out=``), by position and name."""
    run: Callable[..., Any]
    """Runs the op: an overload's own kernel, without the Python frame of its ``__call__``."""
    only_counted: bool = False
    """Nothing to do but count its runs and run it (most ops: views, pointwise ops)."""
    runs: int = 0


_UNPLANNED: Any = object()


def _checkpoint_calls_counted(found: Trace, saved: _SavedTensors) -> contextlib.AbstractContextManager[None]:
    """Within the block, count the forward's calls of ``torch.utils.checkpoint``, both ways, in
    ``found.checkpoint_calls``, and have what selective activation checkpointing keeps counted as saved, in the
    module whose op made it."""

    def counted_function(function: Any) -> Any:
        class Counted:
            @staticmethod
            def apply(*args: Any) -> Any:
                found.checkpoint_calls += 1
                with saved.checkpointed():
                    return function.apply(*args)

        return Counted

    def keep(tensor: torch.Tensor) -> None:
        saved.pack(tensor)  # kept, and boxed as what autograd saves is, until the run is over

    def selective() -> None:
        found.selective_calls += 1

    def unread() -> None:
        found.selective_unread += 1

    def counted_generator(generator: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Iterator[None]:
            found.checkpoint_calls += 1
            args, kwargs, _ = selectively_kept(generator, args, kwargs, keep, selective, unread)
            with saved.checkpointed():  # checkpoint runs the function between the generator's two steps
                yield from generator(*args, **kwargs)

        return counted

    return checkpoint_replaced(
        {"CheckpointFunction": counted_function, "_checkpoint_without_reentrant_generator": counted_generator}
    )


# Higher-order ops whose eager kernel runs its ops under a dispatch mode (see _OpRecorder._higher_order_plan)
_HIGHER_ORDER_OPS_RUN = frozenset({"flex_attention"})


class _OpRecorder(TorchDispatchMode):
    """The one dispatch mode of a forward on a real device (on meta, ``_on_meta`` adds two): counts the aten ops it
    runs (to name those without a FLOP formula); with ``count_flops``, counts FLOPs with FlopCounterMode's formulas
    into a running total (which :class:`_Hooks` reads as each module enters and leaves); with ``protected``
    (parameter storages by address), refuses an op that would write to one before it runs: on a real device the
    forward runs on the user's own weights, which must come back unchanged; with ``restorable`` (the storages of the
    model's tensors the forward may reach through a reference of its own, and of the caller's inputs, by address),
    keeps what one holds before its first write, for :meth:`put_back` to restore once the forward is over.

    Why not FlopCounterMode itself: it is a second Python dispatch mode plus module hooks of its own that flatten
    every module's inputs and outputs, about 10 % of a GPT-2 forward on CPU; this one mode does its counting with the
    same formulas (``flop_registry``) and the same decompositions, and tests hold the two equal.
    """

    supports_higher_order_operators = True  # see _higher_order_plan

    def __init__(self, protected: dict[int, str] | None = None, *, count_flops: bool = False) -> None:
        super().__init__()
        self.protected = protected or {}
        self.count_flops = count_flops
        self.total_flops = 0
        self.stack: list[str] = []
        """The paths of the modules running (the :class:`_Hooks`' stack), innermost last."""
        self.own_flops: dict[str, int] = {}
        """FLOPs per module path of the ops that ran in the module itself, innermost on the stack (not in a child)."""
        self.unsized: dict[Any, int] = {}
        """Ops with a formula on shapes that ran on nested tensors, by packet: counted 0."""
        self.formulas = _flop_formulas.flop_formulas()
        # by id: an op overload hashes in Python, a cost on every op; torch.ops makes each overload once and keeps
        # it, so its id stays its own
        self._plans: dict[int, _OpPlan | None] = {}
        self.restorable: dict[int, torch.Tensor] = {}
        """The storages of :meth:`restore_after`'s tensors, by their ``_cdata`` (which a reallocation keeps: a
        ``resize_`` moves the bytes, not the storage): what :meth:`put_back` restores."""
        self._owned: set[int] = set()
        """:meth:`restore_after`'s tensors, by id: those whose layout is kept too (not the forward's own views)."""
        self._kept: set[int] = set()
        """The storages of :attr:`restorable` whose bytes are kept (at the first write)."""
        self._layouts: dict[int, tuple[torch.Tensor, torch.UntypedStorage, int, torch.Size, tuple[int, ...]]] = {}
        """Each tensor written to one of them, by id, with its storage, offset, sizes and strides at its first write:
        an op may resize it (``resize_``, an ``out=``), and its storage comes back at its old size."""
        self._before_writes: list[tuple[torch.UntypedStorage, torch.Tensor]] = []

    @property
    def counts(self) -> dict[Any, int]:
        """How often each op ran, by overload packet (``aten.addmm``)."""
        counts: dict[Any, int] = {}
        for plan in self._plans.values():
            if plan is not None and plan.runs:
                counts[plan.packet] = counts.get(plan.packet, 0) + plan.runs
        return counts

    def _plan(self, func: Any) -> _OpPlan | None:
        if func in _METADATA_QUERIES:
            plan = None
        elif isinstance(func, HigherOrderOperator):
            plan = self._higher_order_plan(func)
        else:
            formula = self.formulas.get(func.overloadpacket)
            counter = None if formula is None or not self.count_flops else _counter(formula)
            composite, written = _op_traits(func)
            decomposes = counter is None and self.count_flops and composite
            written = written if self.protected or self.restorable else ()
            run = func._op if type(func) is torch._ops.OpOverload else func
            only_counted = counter is None and not decomposes and not written
            plan = _OpPlan(func.overloadpacket, counter, decomposes, written, run, only_counted)
        self._plans[id(func)] = plan
        return plan

    def _higher_order_plan(self, func: HigherOrderOperator) -> _OpPlan:
        """How a higher-order op runs: FlexAttention's eager kernel under this mode, whose ops (its products, the
        score and mask functions') are counted and checked for writes as any other: what the eager forward runs.
        FlopCounterMode leaves it to fail ("no implementation found"). Other higher-order ops (``cond``, ``scan``)
        run subgraphs that their eager kernels refuse to run under a mode: refused, with a message that says so."""

        def run(*args: Any, **kwargs: Any) -> Any:
            plan.runs -= 1  # the ops it runs are counted instead
            if func.name() not in _HIGHER_ORDER_OPS_RUN:
                run_alone = ", ".join(sorted(_HIGHER_ORDER_OPS_RUN))
                raise NotImplementedError(
                    f"torch.ops.higher_order.{func.name()} runs subgraphs of its own, which paramscope cannot record "
                    f"op by op (of the higher-order ops, it runs {run_alone} alone)"
                )
            with self:
                return func.dispatch(torch._C.DispatchKey.CompositeExplicitAutograd, *args, **kwargs)

        plan = _OpPlan(func, None, False, (), run, True)
        return plan

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return not KEEPS_DYNAMO_OUT  # torch's wrapper only where the handler cannot keep dynamo out itself

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        callback = set_eval_frame(None)  # dynamo kept out of what runs from here (see skipped_by_dynamo)
        try:
            plan = self._plans.get(id(func), _UNPLANNED)
            if plan is _UNPLANNED:
                plan = self._plan(func)
            if plan is None:
                return NotImplemented
            plan.runs += 1
            if plan.only_counted:
                return plan.run(*args, **kwargs) if kwargs else plan.run(*args)
            kwargs = kwargs or {}
            # torch's decompositions work on sizes, which a nested tensor does not have: its op runs whole
            if plan.decomposes and not any(isinstance(arg, torch.Tensor) and arg.is_nested for arg in args):
                with self:
                    out = func.decompose(*args, **kwargs)
                if out is not NotImplemented:
                    plan.runs -= 1  # its decomposition's ops are counted instead
                    return out
            if plan.written:
                self._check_writes(func, plan, args, kwargs)
            counter = plan.counter
            if counter is None:
                return plan.run(*args, **kwargs)
            try:
                flops, key = counter.known(args, kwargs)
            except _NoShape:  # counted as 0 once it has run, and named with the ops that have no formula
                out = plan.run(*args, **kwargs)
                self.unsized[plan.packet] = self.unsized.get(plan.packet, 0) + 1
                return out
            out = plan.run(*args, **kwargs)
            if flops is None:
                try:
                    flops = counter.count(key, args, kwargs, out)
                except _NoShape:
                    self.unsized[plan.packet] = self.unsized.get(plan.packet, 0) + 1
                    return out
            self.total_flops += flops
            if flops and self.stack:
                innermost = self.stack[-1]
                self.own_flops[innermost] = self.own_flops.get(innermost, 0) + flops
            return out
        finally:
            set_eval_frame(callback)

    def restore_after(self, tensors: Iterable[torch.Tensor]) -> None:
        """Have :meth:`put_back` restore what the forward writes in place to ``tensors`` (those with values): their
        storages' bytes, and their layouts; a sparse, nested or wrapper tensor's values, in the tensors it is made of
        (a sparse one's are made anew each time they are asked for: their layouts are not kept)."""
        for tensor in tensors:
            plain = has_plain_storage(tensor)
            for part in (tensor,) if plain else storage_parts(tensor):
                if has_plain_storage(part) and (storage := part.untyped_storage()).data_ptr():
                    self.restorable.setdefault(storage._cdata, part)
                    if plain:
                        self._owned.add(id(tensor))

    def _check_writes(self, func: Any, plan: _OpPlan, args: Any, kwargs: dict[str, Any]) -> None:
        """Refuse a write to a parameter; keep what a storage of :attr:`restorable` holds before its first write,
        and the layout of each tensor written to it."""
        for index, name in plan.written:
            written = args[index] if index < len(args) else kwargs.get(name)
            # a list for the foreach ops (torch._foreach_mul_), a tensor for the others
            targets = written if isinstance(written, (list, tuple)) else (written,)
            # a wrapper subclass's storage is none: its inner tensors' are what it writes to, a sparse tensor's its
            # indices' and values'
            for target in chain.from_iterable(storage_parts(t) for t in targets if isinstance(t, torch.Tensor)):
                # mkldnn tensors have no storage to ask for, and cannot alias a dense parameter; a meta or fake
                # tensor holds no values to keep (a fake one told by its type: asking is_meta of it is an op)
                if (isinstance(target, FakeTensor) or target.layout != torch.strided or target.is_nested
                        or target.is_meta):  # fmt: skip
                    continue
                storage = target.untyped_storage()
                address = storage.data_ptr()
                parameter = self.protected.get(address)
                if parameter is not None:
                    raise ParameterWriteError(
                        f"{func.overloadpacket} would change the parameter {parameter!r} in place: paramscope does "
                        "not run that on your weights; summarise on meta (the default) instead"
                    )
                key = storage._cdata
                if key not in self.restorable:
                    continue
                if id(target) in self._owned and id(target) not in self._layouts:
                    self._layouts[id(target)] = (target, storage, int(target.storage_offset()), target.shape,
                                                 target.stride())  # fmt: skip
                if key not in self._kept:
                    self._kept.add(key)
                    # the whole storage, as bytes: every view of it (and so what aliases it) comes back; copied as
                    # it is, on its device (on meta, a cpu tensor of the model's is written for real)
                    with _disable_current_modes():
                        before = torch.empty(0, dtype=torch.uint8, device=storage.device).set_(storage).clone()
                    self._before_writes.append((storage, before))

    def put_back(self) -> None:
        """Restore what the storages of :attr:`restorable` that the forward wrote to held before, each to its size
        (a forward may resize one: FSDP frees storages so), and the layout of each tensor written to them (one the
        forward grew would read past its storage, shrunk back); every one is tried before an error is raised."""
        errors: list[Exception] = []
        with torch.no_grad():
            for storage, before in reversed(self._before_writes):
                try:
                    if storage.nbytes() != before.numel():
                        storage.resize_(before.numel())
                    torch.empty(0, dtype=torch.uint8, device=before.device).set_(storage).copy_(before)
                except Exception as error:  # a storage that cannot be resized (one numpy or a file holds)
                    errors.append(error)
            for tensor, storage, offset, shape, stride in self._layouts.values():
                if (tensor.untyped_storage()._cdata != storage._cdata or tensor.storage_offset() != offset
                        or tensor.shape != shape or tensor.stride() != stride):  # fmt: skip
                    try:
                        with torch.inference_mode(tensor.is_inference()):  # a buffer made under inference_mode
                            tensor.set_(storage, offset, shape, stride)
                    except Exception as error:
                        errors.append(error)
        self._before_writes.clear()
        self._kept.clear()
        self._layouts.clear()
        if errors:
            raise errors[0]


if KEEPS_DYNAMO_OUT:
    skipped_by_dynamo(_OpRecorder.__torch_dispatch__)


def _restore_callers_tensors(recorder: _OpRecorder, arguments: Any, memo: dict[Any, Any], device: str) -> None:
    """Have ``recorder`` put back what the forward writes to the caller's own tensors among ``arguments``, those
    already on ``device`` (the forward runs on them, not on copies): an in-place ReLU on the input, a state the
    forward updates in place. The caller gets their inputs back as they gave them. Those ``to_device`` moved with
    ``memo``, however deep, and those in the objects it passed as they are (one that cannot be copied)."""
    given = chain((tensor for tensor, _ in moved_tensors(memo)), _tensors_in(arguments))
    recorder.restore_after(tensor for tensor in given if tensor.device.type == device)


def _parameter_storages(walk: ModuleWalk) -> dict[int, str]:
    """The storages of the model's real parameters, by address, with a name of each."""
    storages: dict[int, str] = {}
    for name, param in walk.named_tensors("parameters"):
        # a wrapper subclass's (torchao's quantized weights) are its inner tensors', a sparse one's its indices' and
        # values'
        for part in storage_parts(param):
            if not part.is_meta and part.numel():
                storages.setdefault(part.untyped_storage().data_ptr(), name)
    return storages


@dataclass(slots=True)
class ModuleCall:
    """What one module did during the forward: its first call's inputs and outputs, how often it ran."""

    path: str
    type: str
    inputs: str
    """Its first call's inputs (:func:`describe`); empty for a module deeper than the trace describes."""
    outputs: str = ""
    """Its first call's outputs, as ``inputs``."""
    calls: int = 0
    input_bytes: int = 0
    """The bytes of the first call's tensor inputs, by position or keyword, in a tuple, list or dict among them too
    (a block's hidden states, and a decoder layer's encoder states and position bias), each storage once."""
    input_storages: dict[int, int] = field(default_factory=dict)
    """The storages of those inputs (:func:`storage_key`) with their bytes: a storage that several blocks receive
    (the encoder states every decoder layer reads) is kept once by a checkpoint of them all."""
    described: bool = True
    """Whether its inputs and outputs are described: False deeper than the trace's ``depth``."""
    returned: bool = False
    """Whether a call of it has returned: its outputs are recorded then."""


@dataclass
class Trace:
    """The result of :func:`trace`."""

    calls: list[ModuleCall] = field(default_factory=list)
    flops: dict[str, int] = field(default_factory=dict)
    """FLOPs per module path, each module's subtree included; the root is ``""``."""
    own_flops: dict[str, int] = field(default_factory=dict)
    """FLOPs per module path of the ops the module ran itself, outside the modules it called."""
    total_flops: int = 0
    uncounted_ops: dict[str, int] = field(default_factory=dict)
    """Ops that ran but have no FLOP formula, with how often they ran."""
    activations: dict[str, int] = field(default_factory=dict)
    """Bytes saved for backward per module path, each module's subtree included."""
    own_activations: dict[str, int] = field(default_factory=dict)
    """Bytes saved for backward per module path by the module's own ops, outside the modules it called."""
    total_activations: int | None = 0
    saved_storages: dict[int, tuple[int, set[tuple[int | None, tuple[str, ...]]]]] = field(default_factory=dict)
    """Each storage saved for backward (the parameters' and buffers' left out), by key: its bytes, and where it was
    each time it was saved: the outermost call of ``torch.utils.checkpoint`` running (by its place among the
    forward's, None outside them) and the paths of the modules running, outermost first. A storage saved inside a
    checkpointed block may be saved outside it too (a head's input is the last block's tanh output), where it is
    kept, and a module the model checkpoints again and again saves anew in each call."""
    activations_device: str = ""
    """Where the train-mode forward that measured the activations ran."""
    activations_failure: str = ""
    """Why the activations were not measured, when they were not."""
    replaced: list[str] = field(default_factory=list)
    """Modules whose forward the model replaced with one that did not call the recorder (see :class:`_Hooks`)."""
    elsewhere: dict[str, list[str]] = field(default_factory=dict)
    """The modules called from modules that do not hold them, with those callers (see :class:`_Hooks`), in either
    forward."""
    fused_attention: int = 0
    """On meta: the attention calls that ran fused, as on a GPU (the rest, if any, took the math path)."""
    fused_with_dropout: int = 0
    """On meta: the attention calls with dropout, for backward, that ran fused as on a GPU (the CPU runs them on its
    math path, which saves more)."""
    batch_first_attention: int = 0
    """On meta: the float32 attention calls whose output is laid out batch first, as on a GPU, where the CPU's follows
    a query laid out otherwise."""
    grouped_float32_attention: int = 0
    """On meta: the grouped-query attention calls in float32, for backward, run on the math path as on a GPU, where
    the CPU's fused kernel takes them and saves less."""
    mask_dropout: int = 0
    """On meta: the dropout calls, for backward, that kept a boolean mask as CUDA's fused kernel does, where the CPU
    keeps its noise in the input's dtype (four times the bytes in float32)."""
    float64_attention: int = 0
    """On meta: the attention calls in float64, for backward, run on the math path as on a GPU, where the CPU's fused
    kernel takes them and saves less."""
    value_head_attention: int = 0
    """On meta: the attention calls whose values' head size is not the queries', for backward, run fused as on a GPU
    (its memory-efficient kernel), where the CPU runs them on its math path, which saves more."""
    float32_layer_norm: int = 0
    """On meta: the LayerNorm calls of a float16 or bfloat16 input, for backward, that saved float32 statistics as on
    a GPU, where the CPU saves them in the input's dtype."""
    padded_encoder: int = 0
    """On meta: the nn.TransformerEncoder calls given a padding mask that ran their layers on the padded batch, where
    a real device's eval fast path packs the real tokens (fewer FLOPs)."""
    measured_calls: list[str] = field(default_factory=list)
    """The modules the forward that measured the activations called, in order, where it is a forward of its own (on
    meta, the train-mode one beside an eval-mode summary's): a module may run in training alone."""
    autocast_copies: int = 0
    """Under autocast (:class:`AsUnderAutocast`): the bytes of its copies of the weights in the compute dtype (each
    lives to the end of the forward, and until backward where the forward saves it), which are not activations."""
    finite_checks: int = 0
    """On meta: the reads of a check for infinities or NaNs of a tensor without values (BART's float16 guard), each
    answered as for finite values; the most of one forward."""
    checkpoint_calls: int = 0
    """The calls of ``torch.utils.checkpoint`` by the forward that measured the activations: what a checkpointed
    region saves is kept by the checkpoint, out of the measuring hooks' sight, and recomputed in backward."""
    selective_calls: int = 0
    """Those of :attr:`checkpoint_calls` under torch's selective activation checkpointing: the outputs of the ops its
    policy saves are kept until backward, and count as saved (in the module of the op)."""
    selective_unread: int = 0
    """Those of :attr:`selective_calls` whose kept tensors could not be read from torch's private cache (another
    layout): their regions count as fully checkpointed, what they keep beyond their inputs left out."""
    other_threads: list[str] = field(default_factory=list)
    """The modules called in a thread other than the forward's, in either forward: their ops went unseen."""
    unread_masks: list[str] = field(default_factory=list)
    """On meta: the checks of transformers' masks that met a tensor without values (a mask or position ids given)
    and went the way they go under a trace, where a real device reads the values."""
    trained: frozenset[str] | None = None
    """From :func:`saved_for_backward`: the names of the parameters a backward from the forward's outputs reaches
    (those that get a gradient); None when no output carries one."""


class ForwardError(TargetError):
    """The model's forward raised; the message names the module, its inputs and the exception."""


class _Hooks:
    """What keeps the stack of running modules, a record of each module's calls, and each module's FLOPs: a wrapper
    of each module's ``forward`` (:class:`_RecordedForward`), or module hooks on a module with hooks of its own.

    A module's FLOPs are what the recorder's running total gained while it ran (its subtree's), read as it enters
    and leaves: an op adds to the total alone, not to each module on the stack. A module already running further up
    the stack (one that calls itself) adds only from its outermost call: an op counts once per module, as
    FlopCounterMode means to (its module tracker drops a module when its inner call returns, and with it the rest
    of the outer call). A module called by an ancestor other than its parent, outside the modules between them
    (Gemma 3n's layers call their AltUp's ``predict``, which runs its children; a multimodal model calls its
    language model's ``embed_tokens``), counts in those modules too, as if they ran around it: their rows hold the
    rows under them.

    Why wrappers: a module with hooks takes ``nn.Module``'s slow call path, and each hook needs a handle made and
    removed; four hooks on every module cost a GPT-2 forward on CPU several times what one wrapper does. A user's
    own hooks keep the hooks here, so that what they compute counts where FlopCounterMode counts it (see
    :meth:`_hook`)."""

    def __init__(self, walk: ModuleWalk, depth: int | None = None) -> None:
        self.paths = walk.paths
        self.depth = depth
        """How deep the modules whose inputs and outputs are described lie (None: all of them); deeper ones are
        counted, not described: a summary shows rows down to its depth alone."""
        self.calls: dict[str, ModuleCall] = {}
        self.stack: list[str] = []
        self.arguments: list[tuple[Any, dict[str, Any]]] = []
        """The inputs of each module on the stack, for the message if the forward fails inside."""
        self.failure: tuple[BaseException, str, Any, dict[str, Any]] | None = None
        """The last exception that left a wrapped module, with the module it was raised in and its inputs."""
        self.held: list[tuple[Any, dict[str, Any]]] | None = None
        """Where a list, the inputs of each module's first call, held until the hooks are removed: a storage freed
        in the forward would leave its address, by which :attr:`ModuleCall.input_storages` knows it, to one made
        later (on meta, where holding them costs nothing)."""
        self._hooks_ran: dict[str, int] = {}
        """Calls of each hooked module whose forward hooks have all run, not yet seen by its last hook."""
        self.recorder = _OpRecorder()
        """The op recorder, whose running total of FLOPs each module's are read from (the forward's, once it has
        one; until then one that never runs, its total 0)."""
        self.flops: dict[str, int] = {}
        """FLOPs per module path, each module's subtree included (none where it has none)."""
        self.hooked_calls: list[tuple[int, int, bool, tuple[str, ...]]] = []
        """For each hooked module's call on the stack: its place on the stack, the running total as it entered,
        whether it is the module's outermost call, and the modules put on the stack around it (:meth:`around`)."""
        self._between: dict[tuple[str, str], tuple[str, ...]] = {}
        """The paths strictly between a caller and a module it calls below its children, by (module, caller), but
        containers' (:attr:`_containers`)."""
        self._containers: set[str] | None = None
        """The paths of the modules that hold others and run none (a ModuleList of layers): their rows are their
        children's sums, so a call through them (a layer's, from the model) need not count in them as it runs."""
        self.advance: Callable[[], None] | None = None
        """Called as each module first completes: a progress bar's step."""
        self._handles: list[Any] = []
        self._wrapped: list[_RecordedForward] = []
        self.replaced: list[str] = []
        """Modules whose wrapper the forward put another forward in place of, one that never called it: the calls
        through that one went unrecorded."""
        self.thread = get_ident()
        """The thread the forward runs in (set again as the hooks are registered): the recorder's dispatch mode and
        the saved-tensor hooks are that thread's."""
        self.other_threads: list[str] = []
        """The modules called in another thread (a pool the forward hands branches to), whose ops the summary does
        not see: each passed through, once."""
        self.elsewhere: dict[str, list[str]] = {}
        """The modules called from a module that does not hold them (a shared module a layer is handed), with those
        callers: their figures count in their callers' too."""
        self._aliases: dict[str, list[str]] | None = None
        """Every path of each module, by its first one (made when first needed)."""
        self._walk = walk

    def register(self) -> None:
        self.thread = get_ident()
        for module in self._walk.modules:
            path = self.paths[id(module)]
            if module._forward_pre_hooks or module._forward_hooks or not self.wrap(path, module):
                self._hook(path, module)

    def in_another_thread(self, path: str) -> bool:
        """Whether this call of the module at ``path`` runs in a thread other than the forward's (kept to be noted),
        where it is passed through: its ops are out of the recorder's sight, and the stack is the forward's."""
        if get_ident() == self.thread:
            return False
        if path not in self.other_threads:
            self.other_threads.append(path)
        return True

    def wrap(self, path: str, module: nn.Module) -> bool:
        """Record ``module``'s calls from a wrapper of its ``forward``; False where the wrapper would not be called
        (a class whose ``forward`` is a property)."""
        wrapper = _RecordedForward(self, path, module)
        # The instance's dict, as nn.Module.__setattr__ would store it, without a user's __setattr__ in the way.
        module.__dict__["forward"] = wrapper
        if module.forward is not wrapper:
            wrapper.unwrap()
            return False
        self._wrapped.append(wrapper)
        return True

    def _hook(self, path: str, module: nn.Module) -> None:
        """Record ``module``'s calls from hooks: the stack first among its hooks, as FlopCounterMode's global hooks
        are (what a user's own hooks compute counts inside the module before it runs, and outside it after); the
        rows last (the inputs as forward gets them and the output as its caller does, so they chain)."""

        parent = path.rpartition(".")[0]

        def enter(module: nn.Module, args: Any, kwargs: Any) -> None:
            if self.in_another_thread(path):
                return
            stack = self.stack
            entry = (len(stack), self.recorder.total_flops, path not in stack)
            caller = stack[-1] if stack else ""
            self.hooked_calls.append((*entry, () if caller == parent else self.around(path, caller)))
            stack.append(path)
            self.arguments.append((args, kwargs))

        def record_call(module: nn.Module, args: Any, kwargs: Any) -> None:
            if self.in_another_thread(path):
                return
            self.arguments[-1] = (args, kwargs)  # as the user's pre-hooks left them
            self.called(path, module, args, kwargs)

        def record_output(module: nn.Module, args: Any, output: Any) -> None:
            if self.in_another_thread(path):
                return
            self.record_output(self.calls[path], output)
            self._hooks_ran[path] = self._hooks_ran.get(path, 0) + 1  # this call's hooks all ran: none to blame

        def blame(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
            # always_call, last: torch calls it in its except block when one of the user's forward hooks raised,
            # after `leave` took the module off the stack; the error is the module's, not its caller's (one the
            # forward raised is kept already, where it was raised)
            if self.in_another_thread(path):
                return
            ran = self._hooks_ran.get(path, 0)
            if ran:
                self._hooks_ran[path] = ran - 1
                return
            error = sys.exc_info()[1]
            if error is not None and (self.failure is None or self.failure[0] is not error):
                self.failure = (error, path, args, kwargs)

        def leave(module: nn.Module, args: Any, output: Any) -> None:
            # always_call: torch also calls it as the forward raises (with no output, inside its except block)
            if self.in_another_thread(path):
                return
            error = sys.exc_info()[1]
            if output is None and error is not None:
                self.failed(error)
            if path not in self.stack:  # a global pre-hook raised before enter ran
                return
            depth = len(self.stack) - 1 - self.stack[::-1].index(path)  # this call's place: the last of its path
            self.drop_unreturned(depth + 1)
            _, at_entry, outermost, around = self.hooked_calls.pop()
            del self.stack[depth - len(around) :], self.arguments[depth - len(around) :]
            if outermost:
                self.add_flops(path, at_entry)
            for between in around:
                self.add_flops(between, at_entry)

        self._handles += [
            module.register_forward_pre_hook(enter, prepend=True, with_kwargs=True),
            module.register_forward_hook(leave, prepend=True, always_call=True),
            module.register_forward_pre_hook(record_call, with_kwargs=True),
            module.register_forward_hook(record_output),
            module.register_forward_hook(blame, with_kwargs=True, always_call=True),
        ]

    def called(self, path: str, module: nn.Module, args: Any, kwargs: dict[str, Any]) -> ModuleCall:
        """Count a call of ``module``; the first one also records its inputs."""
        call = self.calls.get(path)
        if call is None:
            described = self.depth is None or path_depth(path) <= self.depth
            inputs = describe_arguments(args, kwargs) if described else ""
            storages = input_storages(args, kwargs)
            if self.held is not None:
                self.held.append((args, kwargs))
            size = sum(storages.values())
            call = self.calls[path] = ModuleCall(path, type(module).__name__, inputs, input_bytes=size,
                                                 input_storages=storages, described=described)  # fmt: skip
        call.calls += 1
        return call

    def drop_unreturned(self, depth: int) -> None:
        """Forget the hooked calls from ``depth`` up the stack that never returned: torch runs no always-call hook
        as a BaseException leaves a module, and the model may catch it and go on. Their FLOPs count in their
        callers' (when they left is unknown); the stack and inputs above ``depth`` are the caller's to cut."""
        entries = self.hooked_calls
        while entries and entries[-1][0] >= depth:
            entries.pop()

    def around(self, path: str, caller: str) -> tuple[str, ...]:
        """Put on the stack the modules between ``caller`` and ``path`` (a call below its children: a layer of a
        ``ModuleList``, or a grandchild run through its parent's method), as if they ran around the call: what it
        saves and, from the caller of :meth:`add_flops`, its FLOPs count in them. Returns those put there."""
        key = (path, caller)
        between = self._between.get(key)
        if between is None:
            between = ()
            if not caller or path.startswith(caller + "."):  # a call from an ancestor, not from elsewhere
                if self._containers is None:
                    kinds = (nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict)
                    self._containers = {self.paths[id(m)] for m in self._walk.modules if isinstance(m, kinds)}
                parts = path.split(".")
                start = caller.count(".") + 2 if caller else 1
                between = tuple(
                    ancestor
                    for ancestor in (".".join(parts[:end]) for end in range(start, len(parts)))
                    if ancestor not in self._containers
                )
            elif not self._holds(caller, path):
                self.elsewhere.setdefault(path, []).append(caller)
            self._between[key] = between
        if not between:
            return ()
        stack = self.stack
        around = tuple(ancestor for ancestor in between if ancestor not in stack)
        stack.extend(around)
        self.arguments.extend(((), {}) for _ in around)
        return around

    def _holds(self, caller: str, path: str) -> bool:
        """Whether the module at ``caller`` holds the one at ``path`` under another of their names (a module two
        parents hold is known by its first path)."""
        if self._aliases is None:
            self._aliases = {}
            for alias, module in self._walk.named_modules:
                self._aliases.setdefault(self.paths[id(module)], []).append(alias)
        callers, names = self._aliases.get(caller, [caller]), self._aliases.get(path, [path])
        return any(name.startswith(f"{held_as}.") for held_as in callers for name in names)

    def add_flops(self, path: str, at_entry: int) -> None:
        """Add to ``path``'s FLOPs what the running total gained since its call entered (at ``at_entry``)."""
        flops = self.recorder.total_flops - at_entry
        if flops:
            self.flops[path] = self.flops.get(path, 0) + flops

    def record_output(self, call: ModuleCall, output: Any) -> None:
        """Record a call's output, the first time."""
        if not call.returned:
            call.returned = True
            if self.advance is not None:
                self.advance()
            if call.described:
                call.outputs = describe(output)

    def failed(self, error: BaseException) -> None:
        """Keep where ``error`` was raised: the module on top of the stack as it first leaves a wrapped module, or
        one whose call it left after that module's wrapper had returned (:meth:`_raised_by_hooks`)."""
        if self.failure is None or self.failure[0] is not error:
            self.failure = self._raised_by_hooks(error) or (error, self.stack[-1], *self.arguments[-1])

    def _raised_by_hooks(self, error: BaseException) -> tuple[BaseException, str, Any, dict[str, Any]] | None:
        """The innermost call of one of the model's modules that ``error``, caught by a wrapper that had not seen it,
        left: torch's ``Module._call_impl`` runs a module's forward, then its hooks, so an error that leaves the call
        of a module whose wrapped forward returned was raised by a hook (one the forward registered after the
        wrappers were made; a module with hooks before is recorded by hooks, which see its own). None where the error
        left no module's call below the wrapper: the wrapper's own module raised it."""
        found = None
        trace = error.__traceback__
        while trace is not None:  # from the frame that caught it to the one that raised it
            frame = trace.tb_frame
            if frame.f_code is _CALL_IMPL:
                path = self.paths.get(id(frame.f_locals.get("self")))
                if path is not None:
                    found = (error, path, frame.f_locals.get("args", ()), frame.f_locals.get("kwargs", {}))
            trace = trace.tb_next
        return found

    def failed_in(self, error: BaseException) -> tuple[str, str] | None:
        """The module the forward failed in with ``error`` and its inputs; None when it failed outside them."""
        if self.failure is not None and self.failure[0] is error:
            _, path, args, kwargs = self.failure
        elif self.stack:  # raised in a hooked module's own hooks
            path, (args, kwargs) = self.stack[-1], self.arguments[-1]
        else:
            return None
        try:
            inputs = describe_arguments(args, kwargs, PLAIN_DTYPES_IN_ERRORS)
        except Exception:  # inputs the failure left unreadable (a nested tensor torch made inconsistent)
            inputs = ""
        return path, inputs

    def remove(self) -> None:
        """Take every hook and wrapper away, and let go of the inputs held; again, it does nothing."""
        self.held = None
        for handle in self._handles:
            handle.remove()
        for wrapper in reversed(self._wrapped):  # a module that rebound its forward was wrapped again, later
            if not wrapper.unwrap() and wrapper.path not in self.replaced:
                self.replaced.append(wrapper.path)
        self._handles, self._wrapped = [], []


_ABSENT = object()


class _InstanceForward:
    """A ``forward`` set on a module instance for a forward pass, in the place of the one it held itself (or of
    none), given back after."""

    __slots__ = ("_module", "_previous")

    def __init__(self, module: nn.Module) -> None:
        self._module = module
        self._previous = module.__dict__.get("forward", _ABSENT)
        """The ``forward`` the instance held itself (accelerate's hooks set one), or ``_ABSENT``."""

    def _give_back(self) -> bool:
        """Give the module back the ``forward`` it had, unless something else has taken this one's place since
        (then False)."""
        attributes = self._module.__dict__
        if attributes.get("forward") is not self:
            return False
        if self._previous is _ABSENT:
            del attributes["forward"]
        else:
            attributes["forward"] = self._previous
        return True

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        # A copy of the module made in its forward (an EMA copy) runs the forward it has without the summary.
        if self._previous is not _ABSENT:
            return deepcopy(self._previous, memo)
        twin = memo.get(id(self._module))
        return self if twin is None else MethodType(type(twin).forward, twin)


class _RecordedForward(_InstanceForward):
    """A module's ``forward`` that records each call for :class:`_Hooks` (the work of its hooks, inline: this runs
    on every module call)."""

    __slots__ = ("__wrapped__", "_hooks", "_parent", "_path", "_superseded")

    def __init__(self, hooks: _Hooks, path: str, module: nn.Module) -> None:
        super().__init__(module)
        self._hooks, self._path, self._parent = hooks, path, path.rpartition(".")[0]
        self.__wrapped__ = module.forward  # the signature callers inspect (transformers does)
        self._superseded = False
        """True once the model has put another forward in this one's place, and a wrapper around that records the
        calls: the new forward may still call this one (a patch that calls through), which then only calls on."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        hooks, path = self._hooks, self._path
        if self._superseded or hooks.in_another_thread(path):
            return self.__wrapped__(*args, **kwargs)
        stack, arguments = hooks.stack, hooks.arguments
        depth = len(stack)
        at_entry, outermost = hooks.recorder.total_flops, path not in stack
        caller = stack[-1] if depth else ""
        around = () if caller == self._parent else hooks.around(path, caller)
        stack.append(path)
        arguments.append((args, kwargs))
        call = hooks.called(path, self._module, args, kwargs)
        try:
            output = self.__wrapped__(*args, **kwargs)
        except BaseException as error:
            hooks.failed(error)
            del stack[depth:], arguments[depth:]  # the model may catch it and go on
            hooks.drop_unreturned(depth)
            if outermost:
                hooks.add_flops(path, at_entry)
            for between in around:
                hooks.add_flops(between, at_entry)
            raise
        if not call.returned:
            hooks.record_output(call, output)
        del stack[depth:], arguments[depth:]
        if hooks.hooked_calls:  # none but inside a module with hooks of its own
            hooks.drop_unreturned(depth)
        if outermost and hooks.recorder.total_flops != at_entry:
            hooks.add_flops(path, at_entry)
        for between in around:
            hooks.add_flops(between, at_entry)
        if self._module.__dict__.get("forward") is not self:  # the forward rebound itself (self.forward = ...)
            self._superseded = True
            hooks.wrap(path, self._module)
        return output

    @property
    def path(self) -> str:
        return self._path

    def unwrap(self) -> bool:
        """Give the module back the ``forward`` it had, unless something else has taken the wrapper's place; False
        when something has, without this wrapper seeing it (it never ran after): calls through that went unseen."""
        return self._give_back() or self._superseded


class _RunsItsModule(_InstanceForward):
    """The ``forward`` of a DataParallel or DistributedDataParallel inside a model, for a forward on meta: the
    module it wraps, which is what runs on a single device. Their own forward would check that the weights are on
    their first device (``device_ids[0]``: cuda:0 wherever CUDA is, not meta) and move the inputs there."""

    __slots__ = ("_inner",)

    def __init__(self, module: nn.DataParallel[nn.Module] | nn.parallel.DistributedDataParallel) -> None:
        super().__init__(module)
        self._inner = module.module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner(*args, **kwargs)


def _data_parallel_runs_its_module(stack: contextlib.ExitStack, walk: ModuleWalk) -> None:
    """On meta, have each DataParallel and DistributedDataParallel among the modules run the module it wraps (see
    :class:`_RunsItsModule`) for the block; the model's own is unwrapped before (``forward_module``)."""
    for module in walk.modules:
        if isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            forward = _RunsItsModule(module)
            module.__dict__["forward"] = forward  # as the wrappers are set: no user's __setattr__ in the way
            stack.callback(forward._give_back)


def _stand_ins(
    walk: ModuleWalk,
    device: str,
    dtype: torch.dtype | None = None,
    fake: FakeTensorMode | None = None,
    made: dict[int, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Tensors to run the model with in place of its own, under every name they are registered as (so ties stay
    ties). On meta, empty copies of the parameters (Parameters themselves) and buffers, fake tensors of ``fake``
    (the mode the forward runs in), ``dtype`` (a compute dtype, for memory planning) replacing the floating-point
    dtypes, but for a counter's copy with its value (:func:`_is_counter`); on a real device, clones of the buffers
    (a train-mode forward updates BatchNorm's statistics in place, on the clones) and the real parameters run as
    they are. ``made`` holds stand-ins already made, by the id of the tensor they stand in for: those are used
    again, and the new ones added to it."""
    replacements: dict[int, torch.Tensor] = {} if made is None else made
    named: dict[str, torch.Tensor] = {}
    tensors = walk.named_tensors("parameters", remove_duplicate=False) if device == "meta" else []
    for name, tensor in [*tensors, *walk.named_tensors("buffers", remove_duplicate=False)]:
        if id(tensor) not in replacements:
            replacements[id(tensor)] = _meta_stand_in(tensor, dtype, fake) if device == "meta" else tensor.clone()
        named[name] = replacements[id(tensor)]
    return named


def _meta_stand_in(tensor: torch.Tensor, dtype: torch.dtype | None, fake: FakeTensorMode | None) -> torch.Tensor:
    """The stand-in of ``tensor`` on meta (see :func:`_stand_ins`)."""
    if _is_counter(tensor):
        # a count the forward may read (BatchNorm's num_batches_tracked with momentum=None): a copy with its value,
        # on the cpu, where the ops on it alone run for real
        stand_in = tensor.clone()
    else:
        as_dtype = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
        stand_in = torch.empty_like(tensor, device="meta", dtype=as_dtype).requires_grad_(tensor.requires_grad)
    # A parameter's stand-in is a Parameter too (a fake one passes for one): nn.Module.__setattr__ takes nothing
    # else under a parameter's name, and a forward may assign one back to its module (self.weight = self.weight).
    if isinstance(tensor, nn.Parameter):
        stand_in = nn.Parameter(stand_in, requires_grad=tensor.requires_grad)
    return stand_in if fake is None or not stand_in.is_meta else fake.from_tensor(stand_in)


_StandInState = tuple[tuple[Any, ...], tuple[tuple[str, Any], ...]]


class _StandInsOnMeta:
    """The stand-ins (:func:`_stand_ins`) of a summary's two forwards on meta, in eval mode then in train mode, made
    once, in one fake tensor mode, for both: making a fake tensor costs about what running a small layer on fake
    tensors costs. Each forward gets the stand-ins as they are made: one that the forward before changed (an
    in-place op on it, a size, stride, storage or ``requires_grad`` set, a gradient, a hook, an attribute of its
    own) is made again, and so is every counter (a real tensor, whose value a forward may change through ``.data``,
    which no version counter sees)."""

    def __init__(self, walk: ModuleWalk) -> None:
        self.walk = walk
        self.fake: FakeTensorMode | None = None
        self.made: dict[int, torch.Tensor] = {}
        """The fake stand-ins, by the id of the tensor each stands in for."""
        self.states: dict[int, _StandInState] = {}
        """Each one's state as the last forward got it."""

    def for_a_forward(self) -> tuple[FakeTensorMode, dict[str, torch.Tensor]]:
        """The fake tensor mode to run a forward in, and the stand-ins by name."""
        if self.fake is None:
            self.fake = fake_tensors()
        else:
            fake = self.fake
            try:
                # as torch's own passes that run again in one mode do (fx's FakeTensorProp); and the tensors that
                # are no stand-ins (a constant the model holds) made fake anew, as in a mode of their own
                fake.epoch += 1
                fake.reset_nt_tensor_id_counter()
                converter = fake.fake_tensor_converter
                fake.fake_tensor_converter = FakeTensorConverter(
                    copy_data=converter.meta_converter.copy_data, export=converter.export
                )
            except Exception:  # torch's private fields differ in this version: a mode and stand-ins of its own
                self.fake, self.made = fake_tensors(), {}
            for key, stand_in in list(self.made.items()):
                if not _unchanged(stand_in, self.states[key]):
                    del self.made[key]
        named = _stand_ins(self.walk, "meta", None, self.fake, self.made)
        for key, stand_in in list(self.made.items()):
            if isinstance(stand_in, FakeTensor) and stand_in.layout is torch.strided:
                self.states[key] = _stand_in_state(stand_in)
            else:
                del self.made[key]  # a counter, or a sparse tensor (whose storage cannot be read): made again
        return self.fake, named


def _stand_in_state(tensor: torch.Tensor) -> _StandInState:
    """What a forward may see of a fake stand-in, and change: its metadata, and its attributes."""
    storage = tensor.untyped_storage()
    leaf = tensor.grad_fn is None
    plain = (type(tensor), tensor._version, tensor.shape, tensor.stride(), tensor.storage_offset(), tensor.dtype,
             tensor.requires_grad, leaf, leaf and tensor.grad is None, storage._cdata, storage.nbytes(),
             tensor._backward_hooks is None, tensor._post_accumulate_grad_hooks is None)  # fmt: skip
    return plain, tuple(vars(tensor).items())


def _unchanged(tensor: torch.Tensor, state: _StandInState) -> bool:
    """Whether ``tensor`` is as it was in ``state``: its attributes the same objects (== on a tensor compares
    values)."""
    plain, attributes = _stand_in_state(tensor)
    before, attributes_before = state
    if plain != before or len(attributes) != len(attributes_before):
        return False
    pairs = zip(attributes, attributes_before, strict=True)
    return all(key == old_key and value is old_value for (key, value), (old_key, old_value) in pairs)


def _is_counter(tensor: torch.Tensor) -> bool:
    """A scalar integer tensor with a value, on the cpu (a buffer that counts batches or steps)."""
    integer = not (tensor.is_floating_point() or tensor.is_complex())
    return tensor.dim() == 0 and integer and tensor.device.type == "cpu" and has_plain_storage(tensor)


class _SavedTensors:
    """Bytes autograd saves for backward, per module on the stack, each storage counted once.

    What autograd keeps is a box holding the saved tensor, and each box is kept here until the run is over, then
    emptied. Kept: a forward can free storages it saved, in a part of the graph it then drops (a mixture of experts'
    router saves masks and indices to pick its top-k experts, and keeps only the picks), and the allocator may give
    their addresses to new ones, which would then pass for storages already counted: an undercount that changed
    from run to run. Those storages count (they were saved), as in the tests' measure on CPU. Emptied: an op that
    saves its own output (tanh, softmax) would otherwise keep it from its own ``grad_fn`` through the saved object:
    a cycle through C++, which Python's garbage collector cannot see, and every such output leaked, with (on meta)
    the fake tensor mode of the run. ``tensor.detach()`` would break it too, but as an op that each dispatch mode of
    the run sees."""

    def __init__(self, hooks: _Hooks, weights: Iterable[torch.Tensor]) -> None:
        self.hooks = hooks
        # parameters and buffers are not activations
        self.weights = {storage_key(part) for tensor in weights for part in storage_parts(tensor)}
        self.storages: dict[int, tuple[int, set[tuple[int | None, tuple[str, ...]]]]] = {}
        """Each storage saved, by key: its bytes, and the checkpoint region and the stack of modules running each
        time it was saved (:attr:`Trace.saved_storages`)."""
        self.region: int | None = None
        """The outermost call of ``torch.utils.checkpoint`` running, by its place among the forward's."""
        self.regions = 0
        self._checkpoints = 0
        self.boxes: list[list[torch.Tensor]] = []
        self.per_module: dict[str, int] = {}
        self.own: dict[str, int] = {}
        """Bytes per module path saved while it was innermost on the stack (not in a module it called)."""
        self.total = 0
        self.weight_copies = 0
        """The bytes of the copies :meth:`add_weight` was given."""

    def add_weight(self, tensor: torch.Tensor) -> None:
        """Count ``tensor`` (a copy of a weight in another dtype, as autocast makes) as a weight, not an activation."""
        key = storage_key(tensor)
        if key not in self.weights:
            self.weights.add(key)
            self.weight_copies += tensor.untyped_storage().nbytes()

    def pack(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        for part in storage_parts(tensor):
            self._count(part)
        box = [tensor]
        self.boxes.append(box)
        return box

    def _count(self, tensor: torch.Tensor) -> None:
        key = storage_key(tensor)
        if key in self.weights:
            return
        stack = self.hooks.stack
        if key in self.storages:
            self.storages[key][1].add((self.region, tuple(stack)))
        else:
            size = tensor.untyped_storage().nbytes()
            self.storages[key] = (size, {(self.region, tuple(stack))})
            self.total += size
            for path in set(stack):  # a reused module may be on the stack twice
                self.per_module[path] = self.per_module.get(path, 0) + size
            if stack:
                self.own[stack[-1]] = self.own.get(stack[-1], 0) + size

    @contextlib.contextmanager
    def checkpointed(self) -> Iterator[None]:
        """Within the block, a call of ``torch.utils.checkpoint`` runs: the saves are in its region, or in the one
        around it."""
        if not self._checkpoints:
            self.region, self.regions = self.regions, self.regions + 1
        self._checkpoints += 1
        try:
            yield
        finally:
            self._checkpoints -= 1
            if not self._checkpoints:
                self.region = None

    @staticmethod
    def unpack(box: list[torch.Tensor]) -> torch.Tensor:
        if not box:
            raise RuntimeError("a backward through the graph of a paramscope summary, after the summary: its saved "
                               "tensors are gone")  # fmt: skip
        return box[0]

    def release(self) -> None:
        """Let go of every saved tensor (and so its storage): the run is over."""
        for box in self.boxes:
            box.clear()
        self.boxes.clear()


def _forward(model: nn.Module, weights: dict[str, torch.Tensor], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not weights:  # nothing to stand in for (a model without buffers on a real device): no swapping to pay for
        return model(*args, **kwargs)
    depth = 0  # the model may call itself: only the outermost call's return is the forward's
    returned: list[Any] = []

    def entered(_module: nn.Module, _args: Any) -> None:
        nonlocal depth
        depth += 1

    def left(_module: nn.Module, _args: Any, output: Any) -> None:
        nonlocal depth
        depth -= 1
        if not depth:
            returned.append(output)

    handles = [model.register_forward_pre_hook(entered), model.register_forward_hook(left)]
    try:
        return torch.func.functional_call(model, weights, args, kwargs, tie_weights=True, strict=False)
    except Exception:
        # A forward that returned, and whose weights torch could not swap back: it moved them itself (a
        # parametrization it registers on its first call makes a weight a property of the class). in_mode puts the
        # model back as it was, whatever functional_call left.
        if returned:
            return returned[0]
        raise
    finally:
        for handle in handles:
            handle.remove()


# What a fake tensor's exceptions name (an op) means: the forward needs values, which a forward on meta has not
_NEEDS_VALUES: dict[type[BaseException], str] = {
    DataDependentOutputException: "reads a tensor's values (.item(), bool(), a branch on a tensor)",
    DynamicOutputShapeException: "makes a tensor whose size follows values (as nonzero() and a boolean mask do)",
    UnsupportedOperatorException: "has no meta kernel (nor a fake implementation)",
}


def _refusal_behind(error: BaseException) -> BaseException:
    """The summary's own refusal to write to a weight that ``error`` was raised in handling, or ``error``: torch's
    ``remove_parametrizations`` catches the refusal of its ``set_`` and raises an error of its own, which says
    nothing of it."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ParameterWriteError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return error


def _failure(hooks: _Hooks, error: BaseException, inputs_without_values: Sequence[int] = ()) -> ForwardError:
    """The error a failed forward raises; ``inputs_without_values``: the elements of each input given whose values
    a forward on meta did not keep (too many), a likely cause of a read of values failing."""
    needs_values = _NEEDS_VALUES.get(type(error))
    if inputs_without_values and type(error) in (DataDependentOutputException, DynamicOutputShapeException):
        needs_values = (f"{needs_values}; an input given holds {max(inputs_without_values):,} elements, "
                        f"more than the {KNOWN_VALUES_LIMIT:,} whose values a forward on meta keeps")  # fmt: skip
    told = _refusal_behind(error)
    message = f"{type(told).__name__}: {first_line(told)}" + (f" {needs_values}" if needs_values else "")
    # where a forward nests too deep is no module's fault, and its path as long as the nesting: not named
    failed_in = None if isinstance(error, RecursionError) else hooks.failed_in(error)
    # what it kept (the error, so its traceback and frames, and the failing module's inputs) would hold tensors and,
    # on meta, the run's fake tensor mode in a cycle that goes through C++, out of the garbage collector's sight
    hooks.failure = None
    if isinstance(error, RecursionError):
        limit = sys.getrecursionlimit()
        return ForwardError(
            f"the forward failed: {message} (Python's limit is {limit}: sys.setrecursionlimit raises it)"
        )
    if failed_in is None:
        return ForwardError(f"the forward failed: {message}")
    path, inputs = failed_in
    where = path or "(model)"
    shown = f" with inputs {inputs}" if inputs else ""
    return ForwardError(f"the forward failed in '{where}'{shown}: {message}")


# Inside a caller's torch.inference_mode(), autograd records nothing even with gradients on (no activations), and the
# tensors made are inference tensors, which autograd cannot save and which cannot be written outside it.
@torch.inference_mode(False)
def _run(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    device: str,
    train: bool,
    count_flops: bool,
    measure_activations: bool,
    trace_result: Trace,
    dtype: torch.dtype | None = None,
    quiet: bool = True,
    walk: ModuleWalk | None = None,
    find_trained: bool = False,
    depth: int | None = None,
    stand_ins: _StandInsOnMeta | None = None,
    autocast: torch.dtype | None = None,
) -> None:
    walk = walk or ModuleWalk(model)
    hooks = _Hooks(walk, depth)
    hooks.held = [] if device == "meta" else None
    values = None
    try:
        fake: FakeTensorMode | None
        if stand_ins is not None:  # the summary's, made once for its forwards
            fake, weights = stand_ins.for_a_forward()
        else:
            fake = fake_tensors() if device == "meta" else None
            weights = _stand_ins(walk, device, dtype, fake)
        saved = None
        if measure_activations:
            # on a real device the parameters are the model's own
            kept = [*weights.values()] if device == "meta" else [*weights.values(), *walk.parameters]
            saved = _SavedTensors(hooks, kept)
        # on a real device the forward runs on the weights themselves
        protected = None if device == "meta" else _parameter_storages(walk)
        recorder = _OpRecorder(protected, count_flops=count_flops)
        hooks.recorder, recorder.stack = recorder, hooks.stack
        with contextlib.ExitStack() as stack:
            as_the_forward_runs(stack, model, walk)
            description = f"forward pass ({'train' if train else 'eval'}) on {device}"
            hooks.advance = stack.enter_context(steps(description, len(hooks.paths), quiet=quiet))
            # the mode first, so that a model's train() that rebinds a forward is seen by the wrappers
            state = stack.enter_context(in_mode(model, walk, train, real_weights=device != "meta"))
            # what the model holds and a forward may write to in place: a cache; its buffers, which the forward
            # runs on copies (or stand-ins) of and reaches only through a reference of its own (a hook's closure over
            # a running statistic); on meta its real parameters too (a helper object that clamps the weights), where
            # an op on cpu tensors alone runs for real (on a real device a write to one is refused)
            recorder.restore_after(state.with_values)
            if device == "meta":
                _data_parallel_runs_its_module(stack, walk)  # before the wrappers, which wrap what it sets
            stack.callback(recorder.put_back)  # what the forward wrote to them, and to the caller's inputs
            stack.callback(hooks.remove)  # before the mode restores the modules' attributes
            hooks.register()  # in the stack: a module refusing a hook leaves none of them behind
            if autocast is not None:  # outside the forward's own modes, so that it sees the calls they make too
                on_weight_cast = None if saved is None else saved.add_weight
                stack.enter_context(AsUnderAutocast(autocast, on_weight_cast))
            if fake is not None:  # before the recorder, which must see each op before it is run on meta
                values = stack.enter_context(as_on_a_device(fake, one_dtype=dtype is None))  # weights cast: autocast's
            stack.enter_context(torch.set_grad_enabled(measure_activations))
            if saved is not None:
                stack.callback(saved.release)
                stack.enter_context(torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack))
                stack.enter_context(_checkpoint_calls_counted(trace_result, saved))
            stack.enter_context(compiled_code_run_eagerly())
            memo: dict[int, Any] = {}  # not ops of the model's: made before the recorder sees any
            try:
                inputs, keywords = to_device(args, device, memo), to_device(kwargs, device, memo)
            except Exception as error:  # an input that cannot be made on meta: the model's own, with those inputs
                hooks.failure = (error, "", args, kwargs)
                raise
            if values is not None:
                for given, twin in moved_tensors(memo):
                    values.know(twin, given)
            if device != "meta":
                _restore_callers_tensors(recorder, (args, kwargs), memo, device)
            if count_flops or recorder.protected or recorder.restorable:
                stack.enter_context(recorder)
            output = _forward(model, weights, inputs, keywords)
            if values is not None:
                trace_result.unread_masks = sorted({*trace_result.unread_masks, *values.unread})
                trace_result.fused_attention += values.fused_attention
                trace_result.fused_with_dropout += values.fused_with_dropout
                if count_flops:  # what it says is of the FLOPs counted
                    trace_result.padded_encoder += values.padded_encoder
                if measure_activations:  # what it says is of the bytes saved: the forward that measures them
                    trace_result.batch_first_attention += values.batch_first_attention
                    trace_result.grouped_float32_attention += values.grouped_float32_attention
                    trace_result.float64_attention += values.float64_attention
                    trace_result.value_head_attention += values.value_head_attention
                    trace_result.float32_layer_norm += values.float32_layer_norm
                    trace_result.mask_dropout += values.mask_dropout
                trace_result.finite_checks = max(trace_result.finite_checks, values.finite_reads)
            if find_trained:  # on meta, where the stand-ins are the graph's leaves
                trace_result.trained = _reached_parameters(output, weights.items())
            del output
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # sys.exit() or the model's own BaseException must not end the caller
        raise_if_interrupted(error)
        raise _failure(hooks, error, values.too_large if values is not None else ()) from error
    finally:
        hooks.remove()
    trace_result.other_threads += [path for path in hooks.other_threads if path not in trace_result.other_threads]
    for path, callers in hooks.elsewhere.items():
        known = trace_result.elsewhere.setdefault(path, [])
        known.extend(caller for caller in callers if caller not in known)
    if count_flops or not trace_result.calls:  # a summary's calls are its requested pass's
        trace_result.calls = list(hooks.calls.values())
        trace_result.replaced = hooks.replaced
    if count_flops:
        trace_result.flops, trace_result.own_flops = hooks.flops, recorder.own_flops
        trace_result.total_flops = recorder.total_flops
        uncounted = {op: n for op, n in recorder.counts.items() if op not in recorder.formulas}
        trace_result.uncounted_ops = {str(op): n for op, n in (uncounted | recorder.unsized).items()}
    if saved is not None:
        trace_result.activations, trace_result.own_activations = saved.per_module, saved.own
        trace_result.total_activations = saved.total
        trace_result.autocast_copies = saved.weight_copies
        trace_result.saved_storages = saved.storages
        if not count_flops:
            trace_result.measured_calls = list(hooks.calls)


def trace(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    device: str,
    train: bool,
    quiet: bool = True,
    walk: ModuleWalk | None = None,
    depth: int | None = None,
) -> Trace:
    """Run ``model(*args, **kwargs)`` for a summary: shapes and FLOPs in the requested mode on ``device``, and the
    activations of a train-mode forward: the same forward when it is one; on meta, a second forward in train mode
    when it is not (free there). On a real device only the forward asked for runs (a summary costs what a forward
    costs): in eval mode it runs without autograd and saves nothing. Activations not measured are None, and
    ``activations_failure`` says why. Unless ``quiet``, a progress bar on a terminal follows the modules. ``walk``
    is ``model``'s, when the caller has one. Modules deeper than ``depth`` are counted and their FLOPs and
    activations measured, but their inputs and outputs are not described (a summary does not show them)."""
    result = Trace()
    walk = walk or ModuleWalk(model)
    stand_ins = _StandInsOnMeta(walk) if device == "meta" and not train else None  # for both forwards
    _run(model, args, kwargs, device=device, train=train, count_flops=True, measure_activations=train,
         trace_result=result, quiet=quiet, walk=walk, depth=depth, stand_ins=stand_ins)  # fmt: skip
    if train:
        result.activations_device = device
        return result
    result.activations, result.own_activations, result.total_activations = {}, {}, None
    if device != "meta":
        result.activations_failure = (
            f"on {device} the summary runs only the forward asked for, and an eval-mode forward saves nothing for "
            "backward (a train-mode summary measures them, and so does one on meta)"
        )
        return result
    try:
        _run(model, args, kwargs, device="meta", train=True, count_flops=False, measure_activations=True,
             trace_result=result, quiet=quiet, walk=walk, depth=depth, stand_ins=stand_ins)  # fmt: skip
    except ForwardError as error:
        result.activations_failure = f"no train-mode forward could run ({error})"
        result.checkpoint_calls = result.selective_calls = result.selective_unread = 0  # the failed forward's
        result.batch_first_attention = result.grouped_float32_attention = result.mask_dropout = 0
        result.float64_attention = result.float32_layer_norm = result.value_head_attention = 0
    else:
        result.activations_device = "meta"
    return result


def saved_for_backward(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    dtype: torch.dtype | None = None,
    autocast: torch.dtype | None = None,
    quiet: bool = True,
) -> Trace:
    """A train-mode forward on meta, floating-point weights in ``dtype``: the bytes autograd saves for backward
    (``total_activations``, and per module), each module's calls with the bytes of its first input, and the
    parameters a backward would reach (``trained``). With ``autocast``, the forward casts as CUDA's autocast to that
    dtype casts (:class:`AsUnderAutocast`); its copies of the weights are weights, not activations."""
    result = Trace()
    _run(model, args, kwargs, device="meta", train=True, count_flops=False, measure_activations=True,
         trace_result=result, dtype=dtype, quiet=quiet, find_trained=True, autocast=autocast)  # fmt: skip
    return result


class _LiveTensors(TorchDispatchMode):
    """The allocations and frees of the tensors made during a forward, in order (each storage once, freed when the
    last tensor viewing it is gone), to find the peak of the bytes live at one time."""

    def __init__(self, weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.ignored = {storage_key(tensor) for tensor in weights.values()}
        self.holders: dict[int, int] = {}
        self.events: list[tuple[int, int]] = []
        """``(storage key, +bytes)`` when a storage appears, ``(key, -bytes)`` when it is freed."""

    def _release(self, key: int, size: int) -> None:
        self.holders[key] -= 1
        if not self.holders[key]:
            del self.holders[key]
            self.events.append((key, -size))

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if not isinstance(tensor, torch.Tensor):
                continue
            key = storage_key(tensor)
            if key in self.ignored:
                continue
            if key not in self.holders:
                self.holders[key] = 0
                self.events.append((key, tensor.untyped_storage().nbytes()))
            self.holders[key] += 1
            weakref.finalize(tensor, self._release, key, tensor.untyped_storage().nbytes())
        return out

    def peak(self, excluded: Mapping[int, int]) -> tuple[int, int]:
        """The most bytes live at one time, each storage in ``excluded`` less the bytes given for it, and how many
        of them, at that time, were the rest of those storages."""
        # the storage live at the end under each key: an earlier one freed before it may have had its address
        last = {key: index for index, (key, change) in enumerate(self.events) if change > 0 and key in excluded}
        live = peak = rest = rest_at_peak = 0
        for index, (key, change) in enumerate(self.events):
            if last.get(key) == index:
                change -= min(excluded[key], change)
                rest += change
            live += change
            if live > peak:
                peak, rest_at_peak = live, rest
        return peak, rest_at_peak


def _reached_parameters(output: Any, named: Iterable[tuple[str, torch.Tensor]]) -> frozenset[str] | None:
    """The names of the parameters in ``named`` that a backward from ``output`` reaches: the leaves of its autograd
    graph, which get a gradient (a parameter the forward did not use, or used under no_grad, gets none; an output
    computed under no_grad reaches none). None when ``output`` holds no tensor that can have a gradient: the loss is
    made elsewhere."""
    names: dict[int, list[str]] = {}
    for name, tensor in named:
        names.setdefault(id(tensor), []).append(name)
    tensors = list(_tensors_in(output, depth=8))
    if not any(tensor.is_floating_point() or tensor.is_complex() for tensor in tensors):
        return None  # nothing a backward could start from (integer codes): the loss is made elsewhere
    nodes: list[Any] = [tensor.grad_fn for tensor in tensors if tensor.grad_fn is not None]
    # a parameter returned as it is: a leaf, its own gradient's end
    reached: set[str] = {name for tensor in tensors if tensor.requires_grad for name in names.get(id(tensor), ())}
    seen: set[Any] = set()
    while nodes:
        node = nodes.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)  # AccumulateGrad: where a leaf's gradient goes
        if leaf is not None:
            reached.update(names.get(id(leaf), ()))
        nodes.extend(next_node for next_node, _ in node.next_functions)
    return frozenset(reached)


def _tensors_in(value: Any, depth: int = 4, enclosing: set[int] | None = None) -> Iterator[torch.Tensor]:
    """The tensors an object holds: in containers, and in the attributes of objects such as a KV cache. A container
    met again inside itself (``enclosing``, by id: a list that holds itself) adds nothing."""
    if isinstance(value, torch.Tensor):
        yield value
        return
    enclosing = set() if enclosing is None else enclosing
    if not depth or id(value) in enclosing:
        return
    enclosing.add(id(value))
    if isinstance(value, (list, tuple, set, frozenset, deque)):
        items: Iterable[Any] = value
    elif isinstance(value, Mapping):
        items = value.values()
    elif hasattr(value, "__dict__") and not isinstance(value, (nn.Module, type)):
        items = vars(value).values()
    else:
        items = ()
    for item in items:
        yield from _tensors_in(item, depth - 1, enclosing)
    enclosing.discard(id(value))


@dataclass(frozen=True)
class InferencePeak:
    """What an inference forward holds (see :func:`peak_live_bytes`)."""

    bytes: int
    """The most bytes its tensors hold at one time, the returned cache's tensors left out."""
    beyond_cache: int
    """Of them, what the returned cache keeps alive beyond its tensors (the storage they view)."""
    state_bytes: int
    """The bytes of the recurrent states the returned cache holds: its linear-attention and state-space layers'."""
    state_layers: int
    """The layers that hold them."""
    other_threads: tuple[str, ...] = ()
    """The modules called in a thread other than the forward's, whose tensors went unseen."""


def peak_live_bytes(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    dtype: torch.dtype | None = None,
    quiet: bool = True,
) -> InferencePeak:
    """The most bytes that tensors made by an inference forward (eval, no grad, on meta) hold at one time, how many
    of them the cache it returns (``past_key_values``) keeps beyond the tensors it holds, and the recurrent states
    it holds.

    The cache's tensors are left out: its keys and values are an item of their own, and so are its recurrent
    states (transformers' linear-attention and Mamba layers keep a convolution state and a recurrent state, of a
    size the prompt's length does not change). What it keeps alive beyond them is not: transformers'
    sliding-window layers hold a view of the last window's tokens of the whole prompt's keys and values, which are
    freed at the next token only.
    """
    walk = ModuleWalk(model)
    hooks = _Hooks(walk)
    try:
        fake = fake_tensors()
        weights = _stand_ins(walk, "meta", dtype, fake)
        tracker = _LiveTensors(weights)
        with fake:
            memo: dict[int, Any] = {}
            inputs, keywords = to_device(args, "meta", memo), to_device(kwargs, "meta", memo)
        recorder = _OpRecorder()
        with steps("forward pass (eval) on meta", len(hooks.paths), quiet=quiet) as advance:
            hooks.advance = advance
            with in_mode(model, walk, False) as state, contextlib.ExitStack() as stack:
                as_the_forward_runs(stack, model, walk)
                # what the forward writes in place to the model's own tensors it reaches without the stand-ins (a
                # helper object's real weights, a hook's closure over a buffer) is put back, as after a summary
                recorder.restore_after(state.with_values)
                _data_parallel_runs_its_module(stack, walk)
                stack.callback(recorder.put_back)
                stack.callback(hooks.remove)
                hooks.register()
                on_meta = as_on_a_device(fake, one_dtype=dtype is None)  # weights cast to dtype: as under autocast
                # the recorder last: it must see each op before meta runs it
                mode = recorder if recorder.restorable else contextlib.nullcontext()
                with torch.no_grad(), compiled_code_run_eagerly(), on_meta, tracker, mode:
                    output = _forward(model, weights, inputs, keywords)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # sys.exit() or the model's own BaseException must not end the caller
        raise_if_interrupted(error)
        raise _failure(hooks, error) from error
    finally:
        hooks.remove()
    # transformers' outputs are mappings; the key is "cache" in recent versions, "past_key_values" before
    names = list(output.keys()) if isinstance(output, Mapping) else []  # not `in`: transformers warns on the old name
    keys = [key for key in ("cache", "past_key_values") if key in names]
    cache = output[keys[0]] if keys else None
    excluded = _viewed_bytes(_tensors_in(cache))
    states = _recurrent_states(cache)
    state_bytes = sum(_viewed_bytes(tensor for layer in states for tensor in layer).values())
    del output, cache
    peak, beyond = tracker.peak(excluded)
    return InferencePeak(peak, beyond, state_bytes, len(states), tuple(hooks.other_threads))


def _recurrent_states(cache: Any) -> list[list[torch.Tensor]]:
    """The tensors of each layer of a transformers cache that keeps a recurrent state (``conv_states`` and
    ``recurrent_states``, as its linear-attention and Mamba layers hold them; MiniMax's cache, a ``linear_cache``
    of one state a lightning-attention layer), the layers that keep none left out."""
    layers = [[getattr(layer, name, None) for name in ("conv_states", "recurrent_states")]
              for layer in getattr(cache, "layers", None) or ()]  # fmt: skip
    layers += [[state] for state in getattr(cache, "linear_cache", None) or ()]
    return [tensors for states in layers if (tensors := list(_tensors_in(states)))]


def _viewed_bytes(tensors: Iterable[torch.Tensor]) -> dict[int, int]:
    """The bytes of each storage that ``tensors`` view, by storage key: their elements' (each view once; views of
    the same elements, or a view that repeats them, count no more than the storage)."""
    views: dict[int, dict[tuple[Any, ...], int]] = {}
    sizes: dict[int, int] = {}
    for tensor in tensors:
        key = storage_key(tensor)
        sizes[key] = tensor.untyped_storage().nbytes()
        view = (tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        views.setdefault(key, {})[view] = tensor.numel() * tensor.element_size()
    return {key: min(sizes[key], sum(views[key].values())) for key in views}
