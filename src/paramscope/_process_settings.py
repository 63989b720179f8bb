"""The process-wide settings a summary's forward runs under, each put back after it: dynamo's stance, Python's
recursion limit, torch's default dtype and random generators' states, and ``torch.nn.utils.parametrize``'s cache.

Summaries may overlap in threads (and run inside another's forward): a setting shared by all of them is set by the
first in and put back by the last out, not by each, which would leave it changed for good when the first to start
ends first.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ._walk import ModuleWalk, path_depth
from .sources.code import default_dtype_of_code, random_states_put_back

# dynamo's C module of frame callbacks (None in a torch built without dynamo)
EVAL_FRAME: Any = getattr(getattr(torch._C, "_dynamo", None), "eval_frame", None)


# torch wraps each dispatch mode's handler in torch._dynamo.disable (TorchDispatchMode.__init_subclass__), so that a
# torch.compile'd function in the model, which runs eagerly while a mode is on, does not compile the handler (the
# mode is off the stack while its handler runs). That wrapper is two Python frames and a dozen calls on every op,
# up to 1 % of a GPT-2 forward on CPU, and its first call imports torch._dynamo (1.6 s, for a model that never
# compiles). paramscope's modes keep dynamo out themselves, with two C calls: a handler's code is marked for dynamo
# to skip, and the handler turns dynamo's frame callback off for what it calls (formulas, torch's decompositions),
# as the wrapper does (checked against torch 2.13's DisableContext). Where this torch has no such calls, torch's
# wrapper stays.
KEEPS_DYNAMO_OUT = all(
    hasattr(EVAL_FRAME, name)
    for name in ("set_eval_frame", "set_code_exec_strategy", "_FrameExecStrategy", "_FrameAction")
)
set_eval_frame: Callable[[Any], Any] = EVAL_FRAME.set_eval_frame if KEEPS_DYNAMO_OUT else (lambda callback: None)


def skipped_by_dynamo(handler: Callable[..., Any]) -> None:
    """Mark ``handler``'s code for dynamo's frame callback to run it as it is (what ``torch._dynamo.skip`` does)."""
    strategy = EVAL_FRAME._FrameExecStrategy(EVAL_FRAME._FrameAction.SKIP, EVAL_FRAME._FrameAction.DEFAULT)
    EVAL_FRAME.set_code_exec_strategy(handler.__code__, strategy)


_COMPILING_MODULES = frozenset({"torch._dynamo", "torch.nn.attention.flex_attention"})


def compiled_code_run_eagerly() -> contextlib.AbstractContextManager[Any]:
    """Within the block, a ``torch.compile``'d function in the model runs as plain Python (dynamo's stance
    ``force_eager``). It would anyway while a dispatch mode is on, but dynamo would also mark its code never to
    compile again in this process: a summary would have changed the model. The stance is the process's, so a
    function compiled in another thread meanwhile runs eagerly too. Without torch._dynamo imported, nothing has
    been compiled; but FlexAttention compiles its eager kernel on each call (``torch.compile(fullgraph=True)``, its
    first call imports dynamo), which dynamo refuses under a dispatch mode ("found no compiled frames"): with its
    module imported, the stance is set too."""
    if not hasattr(torch.compiler, "set_stance") or not (_COMPILING_MODULES & sys.modules.keys()):
        return contextlib.nullcontext()
    if callable(getattr(EVAL_FRAME, "get_eval_frame_callback", lambda: None)()):
        return contextlib.nullcontext()  # inside a compiled region, where dynamo refuses a stance (and skips anyway)
    return _EAGER.shared()


class _EagerWhileSummariesRun:
    """Dynamo's stance ``force_eager`` while any summary runs, in any thread: the first in sets it, the last out puts
    back the stance before. torch's ``set_stance`` puts back the stance it found, so two overlapping in two threads,
    the first to start ending first, would leave ``force_eager`` for good: nothing would compile again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._stance: Any = None

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        entered = False  # a KeyboardInterrupt may come before the count is raised: then it is not lowered
        try:
            with self._lock:
                if not self._running:
                    self._stance = torch.compiler.set_stance("force_eager")  # set when made; its exit puts back
                self._running += 1
                entered = True
            yield
        finally:
            if entered:
                with self._lock:
                    self._running -= 1
                    if not self._running:
                        self._stance.__exit__(None, None, None)
                        self._stance = None


_EAGER = _EagerWhileSummariesRun()


def as_the_forward_runs(stack: contextlib.ExitStack, model: nn.Module, walk: ModuleWalk) -> None:
    """The settings ``model``'s forward runs under, each put back by ``stack``: torch's random generators (what the
    forward draws, dropout's, or on meta a number drawn on the cpu: the caller's next draws are what they would have
    been without it), the default dtype its code set, a cache of parametrized weights of its own, and room under the
    recursion limit (see each)."""
    random_states_put_back(stack)
    default_dtype_as_its_code_sets(stack, model)
    parametrizations_cached_apart(stack)
    room_under_the_recursion_limit(stack, walk)


def default_dtype_as_its_code_sets(stack: contextlib.ExitStack, model: nn.Module) -> None:
    """Have the forward run under the default dtype the model's code set when it was built, as where its author runs
    it (paramscope put the process's back after the build); ``stack`` puts the process's back again."""
    dtype = default_dtype_of_code(model)
    if dtype is not None:
        stack.callback(torch.set_default_dtype, torch.get_default_dtype())
        torch.set_default_dtype(dtype)


def parametrizations_cached_apart(stack: contextlib.ExitStack) -> None:
    """Inside the caller's ``torch.nn.utils.parametrize.cached()``, have the forward cache its parametrized weights in
    a dict of its own, which ``stack`` replaces with the caller's again: torch's holds the caller's weights (real ones,
    which a forward on meta cannot use), and the forward's (fake on meta, or on its own graph) must not stay there
    for the caller's next forward in the block."""
    if parametrize._cache_enabled:
        stack.callback(setattr, parametrize, "_cache", parametrize._cache)
        parametrize._cache = {}


# The frames of a summary's own: its calls down to the forward, and the dispatch modes' (fake tensors' on meta) that
# each op runs through at the innermost module.
_SUMMARY_FRAMES = 100


def room_under_the_recursion_limit(stack: contextlib.ExitStack, walk: ModuleWalk) -> None:
    """Give the forward the room under Python's recursion limit it has without the summary, which ``stack`` takes
    back: a recorded forward is two frames more per level of modules (its wrapper's ``__call__`` and the C call into
    it), so a model nested 160 deep would fail where it runs 247 deep by itself. The limit is the process's: other
    threads have the room too while the forward runs."""
    depth = max(map(path_depth, walk.paths.values()), default=0)
    # no deeper than a plain forward could nest under the limit (three frames a level at least): a chain of 50,000
    # modules, which fails by itself, must fail here too with a RecursionError, not overflow the C stack
    stack.enter_context(_RECURSION_ROOM.raised(lambda limit: 2 * min(depth, limit // 3) + _SUMMARY_FRAMES))


class _RecursionRoom:
    """Python's recursion limit raised while summaries run, in any thread: to the limit the first one in found, plus
    the most room any one thread's summaries need (a summary inside another's forward needs its own on top of the
    outer one's); the last out puts back the limit found (unless a forward set a limit of its own, which stays as it
    would without the summary). Each putting back what it found would leave the limit raised for good when two
    overlap in two threads and the first to start ends first; each raising the limit in force would ratchet it up
    while summaries keep overlapping."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rooms: dict[int, list[int]] = {}
        """The room each running summary needs, by thread, innermost last."""
        self._found = 0
        self._set = 0

    @contextlib.contextmanager
    def raised(self, room: Callable[[int], int]) -> Iterator[None]:
        """The limit ``room(limit)`` above what the summaries running around this one in its thread need."""
        thread = threading.get_ident()
        entered = False  # a KeyboardInterrupt may come before the room is added: then it is not taken away
        try:
            with self._lock:
                if not self._rooms:
                    self._found = self._set = sys.getrecursionlimit()
                self._rooms.setdefault(thread, []).append(room(self._found))
                entered = True
                self._apply(raise_only=True)
            yield
        finally:
            if entered:
                with self._lock:
                    rooms = self._rooms[thread]
                    rooms.pop()
                    if not rooms:
                        del self._rooms[thread]
                    if sys.getrecursionlimit() == self._set:
                        self._apply(raise_only=False)

    def _apply(self, *, raise_only: bool) -> None:
        wanted = self._found + max(map(sum, self._rooms.values()), default=0)
        if wanted > sys.getrecursionlimit() or not raise_only:
            sys.setrecursionlimit(wanted)
            self._set = wanted


_RECURSION_ROOM = _RecursionRoom()
