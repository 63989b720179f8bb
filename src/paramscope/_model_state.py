"""A model kept as it was around a forward: what a forward may change in the modules themselves (their attributes,
containers, hooks, ``training`` flags) and in their tensors (``.data``, ``requires_grad``, ``grad``), put back after.

The values in the tensors' storages are not compared here: the op recorder of :mod:`paramscope.trace` keeps and
puts back those the forward writes (:attr:`ModuleState.with_values` says which).
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from itertools import chain, compress, islice
from typing import Any

import torch
from torch import nn

from ._storages import has_plain_storage
from ._walk import ModuleWalk


@contextlib.contextmanager
def in_mode(model: nn.Module, walk: ModuleWalk, train: bool, *, real_weights: bool = False) -> Iterator[ModuleState]:
    """``model`` in train or eval mode for the block, and as it was afterwards: every module's attributes (its
    ``training`` flag, and what a forward rebinds: a cache's length, weight_norm's computed ``weight``), its
    parameters, buffers, submodules and hooks (see :class:`ModuleState`, which the block gets; ``functional_call``
    leaves its stand-ins in a module registered under two names), every parameter's ``requires_grad`` and ``grad``,
    and what each other tensor the modules hold (``state.loose``) is: its ``.data``, ``requires_grad`` and ``grad``
    (its values are the op recorder's to keep), and the state of each random generator they hold. With
    ``real_weights`` (a forward on them), what each parameter's ``.data`` is too (a momentum encoder assigns it in
    its forward). The forward sees no gradients of the parameters (on a real device) nor of the other tensors: one
    that runs a backward makes new ones instead of adding to the model's in place (a copy of them would take as much
    memory as the parameters)."""
    modules = walk.modules
    state = ModuleState(modules)
    # Read and compared a list at a time (map over an attrgetter runs in C): this runs around every summary's forward.
    params: list[torch.Tensor] = [
        param for param in chain.from_iterable(map(_VALUES, map(_PARAMETERS, modules))) if param is not None
    ]
    loose = state.loose = state.loose_tensors()
    generators = [(generator, generator.get_state()) for generator in state.generators]
    # the leaves among the loose tensors and the buffers: what a forward may set on them, as on parameters (a
    # cache's own grad; a flag a hook sets on a buffer it keeps in its closure)
    leaves = [tensor for tensor in chain(loose, walk.buffers) if tensor.is_leaf]
    # non-leaves that keep a grad (retain_grad), put back too
    retaining = [tensor for tensor in loose if not tensor.is_leaf and tensor.retains_grad]
    retained = [tensor.grad for tensor in retaining]
    flags: list[bool] = list(map(_REQUIRES_GRAD, [*params, *leaves]))
    grads: list[torch.Tensor | None] = list(map(_GRAD, [*params, *leaves]))
    tensor_hooks = _TensorHooks([*params, *leaves])
    # the buffers too, and on meta the real parameters: the forward runs on copies or stand-ins of them, but a
    # reference of its own (a hook's closure, a helper that clips the weights) may rebind their .data
    with_values = state.with_values = [tensor for tensor in [*loose, *walk.buffers, *(() if real_weights else params)]
                                       if has_plain_storage(tensor)]  # fmt: skip
    held = [*params, *with_values] if real_weights else with_values
    data: list[torch.Tensor] = list(map(_DATA, held))
    dtypes: list[torch.dtype] = list(map(_DTYPE, data))
    training = list(map(_TRAINING, modules))
    try:
        if real_weights and grads.count(None) != len(grads):
            for param in params:
                param.grad = None
        for tensor in leaves:  # a backward in the forward would add to a loose leaf's grad in place
            if tensor.grad is not None:
                tensor.grad = None
        # A model already all in eval mode is left to it: model.train() walks every module again (transformers' does
        # more work). train(True) always runs: a model's own train() may keep parts of it in eval mode (frozen
        # BatchNorm).
        if train or any(map(_TRAINING, modules)):
            model.train(train)
        yield state
    finally:
        tensors = [*params, *leaves]

        def put_back_data() -> None:  # first: a grad is only taken by a tensor of its dtype and shape
            # what .data is: storage, offset, sizes and strides (is_set_to), and dtype
            try:
                same = all(map(torch.Tensor.is_set_to, held, data)) and list(map(_DTYPE, held)) == dtypes
            except NotImplementedError:  # a tensor the forward moved to meta, which has no is_set_to
                same = False
            if data and not same:
                for tensor, before in zip(held, data, strict=True):
                    # a sparse tensor has no is_set_to: its .data set again
                    if (tensor.layout != torch.strided or tensor.device != before.device
                            or not tensor.is_set_to(before) or tensor.dtype != before.dtype):  # fmt: skip
                        _set_data(tensor, before)

        def put_back_flags() -> None:
            for tensor in leaves:  # written in place from a tensor that requires grad: a leaf again
                if not tensor.is_leaf and tensor._base is None:
                    tensor.detach_()
            for tensor, grad in zip(retaining, retained, strict=True):
                if tensor.grad is not grad:
                    tensor.grad = grad
            if list(map(_REQUIRES_GRAD, tensors)) != flags:
                for tensor, requires_grad in zip(tensors, flags, strict=True):
                    if tensor.requires_grad != requires_grad and tensor.is_leaf:
                        tensor.requires_grad_(requires_grad)

        def put_back_grads() -> None:
            if not all(map(operator.is_, map(_GRAD, tensors), grads)):
                for tensor, grad in zip(tensors, grads, strict=True):
                    if tensor.grad is not grad:
                        tensor.grad = grad

        def put_back_state() -> None:
            # the flags model.train() set, put back first: most often all that changed, and a full restore walks
            # every container (and puts back a flag the forward deleted)
            if list(map(_training_or_none, modules)) != training:
                for attributes, flag in zip(state.attributes, training, strict=True):
                    if "training" in attributes:
                        attributes["training"] = flag
            if not state.unchanged():
                state.restore()

        def put_back_generators() -> None:  # what the forward drew from the model's own generators
            for generator, generator_state in generators:
                generator.set_state(generator_state)

        _each(put_back_state, put_back_data, put_back_flags, put_back_grads, tensor_hooks.put_back, put_back_generators)


class _TensorHooks:
    """What a forward may add to the parameters and the other leaf tensors themselves, rather than to the modules:
    hooks (``register_hook``, ``register_post_accumulate_grad_hook``) and Python attributes (``weight.tag = ...``),
    kept to be put back. The hooks' dicts are put back as they were, in place: torch's autograd holds the dict a
    tensor first had, and a handle the user holds removes from it."""

    _NAMES = ("_backward_hooks", "_post_accumulate_grad_hooks")

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self.tensors = tensors
        # read a list at a time, in C: this runs around every forward, over every parameter
        self.hooks = [list(map(operator.attrgetter(name), tensors)) for name in self._NAMES]
        self.hooks_present = list(chain.from_iterable(filter(_IS_NOT_NONE, held) for held in self.hooks))
        self.hooks_held = {id(hooks): dict(hooks) for hooks in self.hooks_present}  # most tensors have none
        self.attributes: list[dict[str, Any]] = list(map(_ATTRIBUTES, tensors))
        self.lengths = list(map(len, self.attributes))
        self.keys = list(chain.from_iterable(self.attributes))
        self.values = list(chain.from_iterable(map(_VALUES, self.attributes)))

    def put_back(self) -> None:
        for name, held in zip(self._NAMES, self.hooks, strict=True):
            now = list(map(operator.attrgetter(name), self.tensors))
            if not all(map(operator.is_, now, held)):
                for tensor, before, after in zip(self.tensors, held, now, strict=True):
                    if after is not before:
                        if after is not None:
                            after.clear()  # autograd keeps the dict it was given: emptied, its hooks never run
                        setattr(tensor, name, before)
        for hooks in self.hooks_present:
            _restore(hooks, self.hooks_held[id(hooks)])
        if (
            list(map(len, self.attributes)) != self.lengths
            or not all(map(operator.is_, chain.from_iterable(self.attributes), self.keys))
            or not all(map(operator.is_, chain.from_iterable(map(_VALUES, self.attributes)), self.values))
        ):
            keys, values = iter(self.keys), iter(self.values)
            for attributes, length in zip(self.attributes, self.lengths, strict=True):
                _restore(attributes, dict(zip(islice(keys, length), islice(values, length), strict=True)))


def _set_data(tensor: torch.Tensor, data: torch.Tensor) -> None:
    """``tensor.data = data``, or, where torch refuses it (a parameter the forward moved to meta with torch's
    ``swap_module_params_on_conversion`` on: a meta tensor cannot take cpu data), the parameter's contents swapped
    back in place, as that option swapped them out."""
    try:
        tensor.data = data
    except RuntimeError:
        if not isinstance(tensor, nn.Parameter):
            raise
        torch.utils.swap_tensors(tensor, type(tensor)(data, requires_grad=tensor.requires_grad))


def _each(*steps: Callable[[], None]) -> None:
    """Run every step, those after one that raised too; then raise the first error."""
    errors: list[BaseException] = []
    for step in steps:
        try:
            step()
        except Exception as error:
            errors.append(error)
    if errors:
        raise errors[0]


_VALUES = operator.methodcaller("values")
_PARAMETERS = operator.attrgetter("_parameters")
_BUFFERS = operator.attrgetter("_buffers")
_REQUIRES_GRAD = operator.attrgetter("requires_grad")
_GRAD = operator.attrgetter("grad")
_DATA = operator.attrgetter("data")
_DTYPE = operator.attrgetter("dtype")
_TRAINING = operator.attrgetter("training")


def _training_or_none(module: nn.Module) -> bool | None:
    return getattr(module, "training", None)


_ATTRIBUTES = operator.attrgetter("__dict__")


class ModuleState:
    """What each module holds at one moment, which a forward may change, kept as flat lists: comparing them with
    what the modules hold later is a pass over each list. Held: each module's attributes (its ``__dict__``: what
    a forward rebinds) and what its parameters, buffers and the dicts, lists, sets and deques among its attributes
    hold, at any depth and inside tuples (what a forward changes in place): its submodules (one made on the first
    call), its hooks (a forward that registers one), the names of its non-persistent buffers, and a cache of the
    model's own. Other objects are not looked into, and a tensor's values are not compared: the op recorder keeps
    those (its ``restorable``)."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.modules = modules
        self.classes: list[type] = list(map(type, modules))
        """Each module's class: torch's parametrizations swap it for a subclass of their own, and back."""
        # a parametrized module's class is its own, made by torch, which sets and deletes its properties (the
        # parametrized tensors) as parametrizations are added and removed
        self.class_attributes = {cls: dict(vars(cls)) for cls in set(self.classes) if _parametrized_class(cls)}
        self.attributes: list[dict[str, Any]] = list(map(_ATTRIBUTES, modules))
        """Each module's ``__dict__``."""
        # Picked by type in C (compress over map), not in a loop: a model's modules hold thousands of attributes,
        # among them a dozen dicts each (the hooks'), nearly all empty.
        values = list(chain.from_iterable(map(_VALUES, self.attributes)))
        # parameters and buffers whatever mapping holds them (a store of a model's own, not a dict)
        stores = [*map(_PARAMETERS, modules), *map(_BUFFERS, modules)]
        nested, self.in_tuples = _containers_within(values)
        self.held: list[Any] = [
            *self.attributes,
            *nested,
            *compress(stores, map(operator.not_, map(_CONTAINERS.__contains__, map(type, stores)))),
        ]
        """The ``__dict__`` of each module, then the containers they hold, at any depth."""
        self.lengths = list(map(len, self.held))
        # what was empty is unchanged while it stays so: only what held something is compared item by item
        filled = list(compress(self.held, self.lengths))
        # told apart by type, in C: all but lists, sets and deques are mappings (a store of a model's own too)
        is_mapping = list(map(operator.not_, map(_COLLECTIONS.__contains__, map(type, filled))))
        self.mappings: list[Mapping[Any, Any]] = list(compress(filled, is_mapping))
        self.collections: list[Any] = list(compress(filled, map(operator.not_, is_mapping)))
        self.keys = list(chain.from_iterable(self.mappings))
        self.values = list(chain.from_iterable(map(_VALUES, self.mappings)))
        self.items = list(chain.from_iterable(self.collections))
        self.loose: list[torch.Tensor] = []
        """The tensors the modules hold besides their parameters and buffers, once :meth:`loose_tensors` is read."""
        self.generators: list[torch.Generator] = []
        """The random generators the modules hold, found with the loose tensors: a draw from one moves it on."""
        self.with_values: list[torch.Tensor] = []
        """Set by :func:`in_mode`: the tensors with values that the forward may change other than through the
        weights it runs on (the loose tensors, the buffers, and on meta the real parameters), whose ``.data`` it
        puts back, and whose values the op recorder does."""

    def unchanged(self) -> bool:
        """Whether every module holds what it held: the same ``__dict__``, as many entries in each container, and
        the very same keys, values and items in them, in order (by identity: == would compare tensors
        element-wise)."""
        return (
            all(map(operator.is_, map(_ATTRIBUTES, self.modules), self.attributes))
            and all(map(operator.is_, map(type, self.modules), self.classes))
            and all(vars(cls) == attributes for cls, attributes in self.class_attributes.items())
            and list(map(len, self.held)) == self.lengths
            and all(map(operator.is_, chain.from_iterable(self.mappings), self.keys))
            and all(map(operator.is_, chain.from_iterable(map(_VALUES, self.mappings)), self.values))
            and all(map(operator.is_, chain.from_iterable(self.collections), self.items))
        )

    def restore(self) -> None:
        """Put back what :meth:`unchanged` found changed: each module's own ``__dict__`` (a forward may have put
        another in its place), and what each container held."""
        contents: dict[int, Any] = {}
        keys, values, items = iter(self.keys), iter(self.values), iter(self.items)
        for held, length in zip(self.held, self.lengths, strict=True):
            if not length:
                continue
            if isinstance(held, Mapping):
                contents[id(held)] = dict(zip(islice(keys, length), islice(values, length), strict=True))
            else:
                contents[id(held)] = list(islice(items, length))
        for cls, saved in self.class_attributes.items():
            for name in [name for name in vars(cls) if name not in saved]:
                delattr(cls, name)
            for name, value in saved.items():
                if vars(cls).get(name, _MISSING) is not value:
                    setattr(cls, name, value)
        for module, cls, attributes in zip(self.modules, self.classes, self.attributes, strict=True):
            if type(module) is not cls:
                module.__class__ = cls
            if module.__dict__ is not attributes:
                object.__setattr__(module, "__dict__", attributes)
        for held in self.held:
            saved = contents.get(id(held), ())
            if isinstance(held, MutableMapping):
                _restore(held, dict(saved))
            elif len(held) != len(saved) or not all(map(operator.is_, held, saved)):
                held.clear()
                if isinstance(held, set):
                    held.update(saved)
                else:
                    held.extend(saved)

    def loose_tensors(self) -> list[torch.Tensor]:
        """The tensors the modules hold besides their parameters and buffers: as attributes (Meta's reference
        Llama keeps its key/value cache so), and in the containers among them."""
        stores = {id(store) for store in chain(map(_PARAMETERS, self.modules), map(_BUFFERS, self.modules))}
        # what the attributes, dicts, lists, sets and deques hold, but the parameters and buffers (what was empty
        # holds nothing a forward could write to)
        mappings = [mapping for mapping in self.mappings if id(mapping) not in stores]
        candidates = [*chain.from_iterable(map(_VALUES, mappings)), *self.items, *self.in_tuples]
        kinds = set(map(type, candidates))  # most models hold neither: told by type, a pass in C
        if torch.Generator in kinds:
            self.generators = [item for item in candidates if type(item) is torch.Generator]
        if not any(issubclass(kind, torch.Tensor) for kind in kinds):
            return []
        return [item for item in candidates if isinstance(item, torch.Tensor)]


_MISSING = object()
_IS_NOT_NONE = functools.partial(operator.is_not, None)


def _parametrized_class(cls: type) -> bool:
    """Whether ``cls`` is one torch made for a module it parametrizes (``Parametrized<Class>``, one per module,
    made by ``type()`` in that module of torch's; not its ``ParametrizationList``, a class of its own)."""
    return cls.__module__ == "torch.nn.utils.parametrize" and cls.__name__.startswith("Parametrized")


_MAPPINGS = frozenset({dict, OrderedDict, defaultdict, Counter})
_COLLECTIONS = frozenset({list, set, deque})
_CONTAINERS = _MAPPINGS | _COLLECTIONS


def _containers_within(values: list[Any]) -> tuple[list[Any], list[Any]]:
    """The containers among ``values`` and within them, each once (a KV cache kept as a list of ``(key, value)``
    tuples, a dict of lists), and what the tuples among them hold (an RNN's ``(h, c)``): a tuple cannot change, what
    it holds can. Other objects are not looked into (their attributes could reach anything: a tokenizer, the
    caller's own objects), nor one holding more than :data:`_MOST_ITEMS_LOOKED_INTO` items (a tokenizer's merges,
    held by a module: its strings cannot change, and reading them at each forward would cost more than the forward;
    the container itself is compared, item by item).

    A level at a time, picked by type in C (compress over map): a model's modules hold thousands of attributes,
    among them a dozen dicts each (the hooks'), nearly all empty, and nothing deeper.

    >>> shared = [1.0]
    >>> found, in_tuples = _containers_within([{"rows": [shared, shared]}, (shared, 2)])
    >>> [type(item).__name__ for item in found], in_tuples
    (['dict', 'list', 'list'], [[1.0], 2])
    """
    found: list[Any] = []
    in_tuples: list[Any] = []
    seen: set[int] = set()
    level = values
    while level:
        types = list(map(type, level))
        kinds = set(types)
        tuple_kinds = {kind for kind in kinds if issubclass(kind, tuple)}
        if kinds.isdisjoint(_CONTAINERS) and not tuple_kinds:
            break
        containers = list(compress(level, map(_CONTAINERS.__contains__, types)))
        tuples = list(compress(level, map(tuple_kinds.__contains__, types))) if tuple_kinds else []
        if seen:  # below the first level, where a container may be met again (itself, even; many times over)
            containers = [item for item in _each_once(containers) if id(item) not in seen]
            tuples = [item for item in _each_once(tuples) if id(item) not in seen]
        found.extend(containers)
        # those looked into, which alone could lead back (an empty one met again is only held twice)
        filled = list(compress(containers, _looked_into(list(map(len, containers)))))
        tuples = list(compress(tuples, _looked_into(list(map(tuple.__len__, tuples)))))
        seen.update(map(id, filled))
        seen.update(map(id, tuples))
        is_mapping = list(map(operator.not_, map(_COLLECTIONS.__contains__, map(type, filled))))
        # a tuple's items as the tuple holds them, not as a subclass's own __iter__ would give them
        inside_tuples = list(chain.from_iterable(map(tuple.__iter__, tuples)))
        in_tuples.extend(inside_tuples)
        level = [
            *chain.from_iterable(map(_VALUES, compress(filled, is_mapping))),
            *chain.from_iterable(compress(filled, map(operator.not_, is_mapping))),
            *inside_tuples,
        ]
    return found, in_tuples


_MOST_ITEMS_LOOKED_INTO = 100_000


def _looked_into(lengths: list[int]) -> Iterator[bool]:
    """For each length, whether a container of it is looked into: neither empty nor too long (in C, as a map)."""
    return map(operator.and_, map(bool, lengths), map(_MOST_ITEMS_LOOKED_INTO.__ge__, lengths))


def _each_once(items: list[Any]) -> list[Any]:
    """``items`` without repeats, by identity, in order: a level may hold one container many times over (the rows of
    a list made as ``[row] * n``), and each is looked into once."""
    return list(dict(zip(map(id, items), items, strict=True)).values())


def _restore(current: MutableMapping[str, Any], saved: dict[str, Any]) -> None:
    """``current`` made equal to ``saved`` again, compared by identity (== would compare tensors element-wise,
    across devices): a rebound entry keeps its place in the dict, an added or deleted one changes the keys."""
    # keys by identity too: the saved dict is a copy of this one, holding the same key objects
    if len(current) == len(saved) and (
        not saved
        or (all(map(operator.is_, current.values(), saved.values())) and all(map(operator.is_, current, saved)))
    ):
        return
    current.clear()
    current.update(saved)
