"""The outputs of ops on fake tensors, remembered by what an op reads of its arguments, in front of torch's own cache.

A forward on meta runs each op on torch's fake tensors, whose mode caches the outputs of the ops it has seen. Its cache
allows for what a forward on meta here never has (symbolic sizes, tensors of other subclasses, a trace), and a hit
costs 130 to 170 µs of Python; the 80 identical layers of Llama-3-70B run 11,000 ops a forward, 8,600 of them repeats,
1.2 s of the 2.1 s a forward takes. :class:`FakeOutputs` answers those repeats for 25 µs: an op it covers is a builtin
one that returns something, writes to none of its arguments, reads no values and sizes its outputs from its arguments'
sizes alone, called outside inference mode on fake tensors of one mode (none of them an inference tensor, nor holding a
constant) and on plain Python values. Its outputs are made as torch's cache makes them, an empty meta tensor of the
recorded size and strides in a new storage, or the same view of the same argument's storage; where a remembered output
would not come out the same (a storage larger than its tensor, an output that shares an argument's storage without
being its view, other dispatch keys), the op always runs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor, in_kernel_invocation_manager

# the Python values an op's output may follow, each kept in a key with its type: an int and a float of one value
# (2 and 2.0) make outputs of different dtypes
_PLAIN = frozenset((int, float, bool, str, type(None), torch.dtype, torch.device, torch.layout, torch.memory_format))
_SEQUENCES = frozenset((list, tuple, torch.Size))
# a view by what it returns, a new tensor to autograd (which keeps no view of it), and by its schema: each linear
# layer of more than two dimensions' output ends in one (torch's cache takes none)
_UNSAFE_VIEW = torch.ops.aten._unsafe_view.default
# the device a factory makes on by default (torch.set_default_device), which torch's cache keys too (torch 2.3 on)
_default_device: Any = getattr(torch._C, "_get_default_device", lambda: None)

# a remembered output: a new tensor (shape, stride, storage offset, dtype, device, requires_grad), or a view of the
# op's first argument with those, or None
_Output = tuple[bool, torch.Size, tuple[int, ...], int, torch.dtype, torch.device, bool] | None


class FakeOutputs:
    """Runs ops on fake tensors, making the outputs of a repeat of one it has seen from what it remembered.

    >>> from torch._subclasses.fake_tensor import FakeTensorMode
    >>> with FakeTensorMode() as fake:
    ...     x = torch.empty(2048, 8192)
    >>> outputs = FakeOutputs()
    >>> with fake:
    ...     first = outputs.run(torch.ops.aten.mul.Tensor, (x, x), {})
    ...     again = outputs.run(torch.ops.aten.mul.Tensor, (x, x), {})
    >>> again.shape, again.untyped_storage()._cdata != first.untyped_storage()._cdata, outputs.repeats
    (torch.Size([2048, 8192]), True, 1)
    """

    def __init__(self) -> None:
        self._outputs: dict[tuple[Any, ...], tuple[type, tuple[_Output, ...]] | None] = {}
        self._covered: dict[Any, bool] = {}
        self.repeats = 0
        """The calls answered from what was remembered."""

    def run(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``func(*args, **kwargs)``, run in the fake tensor mode of its arguments, or made as it would come out."""
        covered = self._covered.get(func)
        if covered is None:
            covered = self._covered[func] = _covered(func)
        if not covered:
            return func(*args, **kwargs)
        tensors: list[torch.Tensor] = []
        key, fake = _key(func, args, kwargs, tensors)
        if key is None:
            return func(*args, **kwargs)
        try:
            remembered = self._outputs[key]
        except KeyError:
            out = func(*args, **kwargs)
            self._outputs[key] = _remembered(out, tensors, fake, func.is_view or func is _UNSAFE_VIEW)
            return out
        if remembered is None:
            return func(*args, **kwargs)
        kind, outputs = remembered
        self.repeats += 1
        made = [_made(output, tensors, fake) for output in outputs]
        return made[0] if kind is FakeTensor else kind(made)


def _covered(func: Any) -> bool:
    """Whether ``func`` is an op whose outputs follow from its arguments' metadata alone, and write to none of them
    (torch's cache takes more, with rules of its own for them)."""
    if not isinstance(func, torch._ops.OpOverload) or func.namespace not in ("aten", "prims"):
        return False
    name: str = func.name()  # type: ignore[no-untyped-call]
    # an op that returns nothing runs for what it does (torch._assert_async checks a value)
    if func._schema.is_mutable or not func._schema.returns:
        return False
    tags = func.tags
    if torch.Tag.data_dependent_output in tags or torch.Tag.dynamic_output_shape in tags:
        return False
    # an op that is a view by its schema but made of other ops may return a view or a copy (torch's cache takes
    # none of them either)
    return not (
        func.is_view
        and torch._C._dispatch_has_kernel_for_dispatch_key(name, torch._C.DispatchKey.CompositeImplicitAutograd)
    )


def _key(
    func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], tensors: list[torch.Tensor]
) -> tuple[tuple[Any, ...] | None, Any]:
    """What ``func``'s outputs follow from: its arguments' metadata and values, and the defaults that factories and
    Python numbers take; None where one of them is something else (a real tensor, a constant, a symbolic size). With
    it, the fake tensor mode of the fake tensors among them. ``tensors`` gets the tensors among the arguments, in
    order: fake ones, and meta ones that the mode makes fake as the op meets them (transformers' empty caches)."""
    if torch.is_inference_mode_enabled():
        # what is an inference tensor, and what is not, is up to torch there (an output made here would be one)
        return None, None
    key: list[Any] = [func, torch.get_default_dtype(), _default_device()]
    fake = None
    pending: list[Any] = list(reversed(args))
    if kwargs:
        for name, value in kwargs.items():
            pending[:0] = [value, name]
    while pending:
        value = pending.pop()
        kind = type(value)
        if kind is FakeTensor:
            if fake is None:
                fake = value.fake_mode
            elif value.fake_mode is not fake:
                return None, None
            if value.constant is not None:
                return None, None
            device = value.fake_device
        elif kind is torch.Tensor and value.is_meta:
            device = value.device
        elif kind in _PLAIN:
            key.append((kind, value))
            continue
        elif kind in _SEQUENCES:
            key.append((kind, len(value)))
            pending.extend(reversed(value))
            continue
        else:
            return None, None
        if value.layout is not torch.strided or value.is_conj() or value.is_neg() or value.is_inference():
            return None, None
        tensors.append(value)
        # the storage's size too, as torch's cache keeps it: an op may read it (as_strided past the end)
        key.append((kind, value.shape, value.stride(), value.storage_offset(), value.untyped_storage().nbytes(),
                    value.dtype, device, value.requires_grad))  # fmt: skip
    return (None, None) if fake is None else (tuple(key), fake)


def _remembered(
    out: Any, tensors: list[torch.Tensor], fake: Any, view_op: bool
) -> tuple[type, tuple[_Output, ...]] | None:
    """What to make ``out`` from again (the output of a view op ``view_op`` as a view of the op's first argument, a
    fake tensor), or None where what would be made would not be ``out``."""
    kind = type(out)
    if kind is not FakeTensor and kind not in (tuple, list):  # an optional output that was None, a number
        return None
    outputs = out if kind is not FakeTensor else (out,)
    remembered: list[_Output] = []
    storages = {tensor.untyped_storage()._cdata for tensor in tensors}
    if view_op and type(tensors[0]) is not FakeTensor:  # a view of what the mode made fake of it, not seen here
        return None
    base = tensors[0].untyped_storage()._cdata if view_op else None
    for output in outputs:
        if output is None:
            remembered.append(None)
            continue
        if type(output) is not FakeTensor or output.constant is not None or output.fake_mode is not fake:
            return None
        storage = output.untyped_storage()._cdata
        view = storage == base
        if not view and (output.storage_offset() or storage in storages):
            return None
        storages.add(storage)
        made: _Output = (view, output.shape, output.stride(), int(output.storage_offset()), output.dtype,
                         output.fake_device, output.requires_grad)  # fmt: skip
        again = _made(made, tensors, fake)
        same = again.untyped_storage().nbytes() == output.untyped_storage().nbytes()
        # and what torch's cache checks of what it makes: the same dispatch keys (what an inference tensor differs by)
        same = same and torch._C._dispatch_key_set(again) == torch._C._dispatch_key_set(output)
        if not same or output.is_conj() or output.is_neg() or again.layout is not output.layout:
            return None
        remembered.append(made)
    return kind, tuple(remembered)


def _made(output: _Output, tensors: list[torch.Tensor], fake: Any) -> Any:
    if output is None:
        return None
    view, shape, stride, offset, dtype, device, requires_grad = output
    with in_kernel_invocation_manager(fake):
        if view:
            made = torch.empty(0, dtype=dtype, device="meta")
            made.set_(tensors[0].untyped_storage(), offset, shape, stride)
        else:
            made = torch.empty_strided(shape, stride, dtype=dtype, device="meta")
        if requires_grad:
            made.requires_grad_(True)
    return FakeTensor(fake, made, device)
