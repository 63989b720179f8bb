"""Mixture-of-experts models: parameters active per token, next to the total.

A routed expert's parameters work for only ``top_k`` of ``experts`` tokens, so per token a layer uses its shared
parts (attention, router, shared experts, norms) and ``top_k / experts`` of its routed experts. Routed expert
tensors are the ones under a module named ``experts`` (``mlp.experts.3.w1.weight``, or the fused
``mlp.experts.gate_up_proj`` of recent transformers) or, in a live model, of a class named ``...Experts`` (JetMoE's
``mlp.input_linear``); ``shared_experts``, a router inside ``experts`` and a norm the experts' outputs share are always
active.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from fractions import Fraction
from typing import Any

from ._report import Report
from ._units import format_count

# The config keys of the settings, by model family; each list is tried in order. The generic "top_k" comes last: old
# configs also carry a generation top_k (50), which a valid experts-per-token count must not lose to.
_KEYS: dict[str, tuple[str, ...]] = {
    # number of routed experts: Mixtral; Qwen-MoE, Kimi Linear, Bailing, Gemma 4; DeepSeek; ERNIE 4.5, DBRX
    "experts": ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"),
    # experts per token: Mixtral, Qwen-MoE, DeepSeek; Kimi Linear, Bailing; Hunyuan; DBRX; ERNIE 4.5; Gemma 4; …
    "top_k": ("num_experts_per_tok", "num_experts_per_token", "moe_topk", "moe_top_k", "moe_k", "top_k_experts",
              "num_selected_experts", "top_k"),
    # sub-configs holding the language model's settings: multimodal models, DBRX's ffn_config, Qwen-Omni's thinker
    "nested": ("text_config", "ffn_config", "language_config", "llm_config", "thinker_config"),
}  # fmt: skip
_MAX_NESTING = 3


def _configs(config: Mapping[str, Any], depth: int = 0) -> Iterator[Mapping[str, Any]]:
    """``config``, then the sub-configs it nests under known keys (depth first)."""
    yield config
    if depth < _MAX_NESTING:
        for key in _KEYS["nested"]:
            nested = config.get(key)
            if isinstance(nested, Mapping):
                yield from _configs(nested, depth + 1)


def _count(settings: Mapping[str, Any], key: str) -> int | None:
    value = settings.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _lookup(config: Mapping[str, Any] | None) -> tuple[tuple[int, int, str] | None, str | None]:
    """The settings, or a note when the config has experts but no usable experts-per-token count."""
    if not config:
        return None, None
    without_top_k = None
    for settings in _configs(config):
        experts = next(((key, n) for key in _KEYS["experts"] if (n := _count(settings, key)) is not None), None)
        if experts is None or experts[1] <= 1:
            continue
        top_k = next(
            ((key, k) for key in _KEYS["top_k"] if (k := _count(settings, key)) is not None and 0 < k <= experts[1]),
            None,
        )
        if top_k is not None:
            description = f"{top_k[1]} of {experts[1]} experts per token ({top_k[0]}, {experts[0]})"
            return (experts[1], top_k[1], description), None
        without_top_k = without_top_k or experts
    if without_top_k is None:
        return None, None
    key, count = without_top_k
    return None, (
        f"the config describes a mixture of {count} experts ({key}) but no number of experts used per token that "
        f"paramscope knows ({', '.join(_KEYS['top_k'])}), so active parameters per token are not computed"
    )


def moe_settings(config: Mapping[str, Any] | None) -> tuple[int, int, str] | None:
    """``(experts, top_k, description)`` from a model config, or None for a dense model (or unknown settings)."""
    return _lookup(config)[0]


def _is_container(path: str, module_type: str | None) -> bool:
    """A module that holds routed experts: one named ``experts``, or (the module's class known) a class named
    ``...Experts`` that is not a shared expert (JetMoE's ``mlp.input_linear``, a JetMoeParallelExperts)."""
    parts = path.split(".")
    if parts[-1] == "experts":
        return True
    shared = any(part.startswith("shared_expert") for part in parts)
    return module_type is not None and module_type.endswith("Experts") and not shared


def _routed(report: Report) -> Callable[[str], bool]:
    """Whether a parameter belongs to the routed experts, from its name and the classes of the modules around it."""
    types = {node.path: node.type for node in report.modules}
    containers = {path for path, module_type in types.items() if path and _is_container(path, module_type)}
    # an experts module whose experts are modules of their own (JetMoE's attention experts): its own tensors (an
    # output bias) work for every token
    outer = {path.rpartition(".")[0] for path in containers if path.rpartition(".")[0] in containers}

    def is_routed(name: str) -> bool:
        parts = name.split(".")
        paths = [".".join(parts[:end]) for end in range(1, len(parts))]  # the tensor's modules, outermost first
        first = next((i for i, path in enumerate(paths) if path in containers or _is_container(path, None)), None)
        if first is None or paths[-1] in outer:
            return False
        # the router that picks the experts works for every token (JetMoE's attention experts hold theirs)
        if any(part in ("router", "gate") for part in parts[first + 1 : -1]):
            return False
        # so does a norm the experts' outputs share (Muse Spark's post_expert_norm)
        owner, parent = types.get(paths[-1]), types.get(paths[-2]) if len(paths) > 1 else None
        return not (owner and parent and owner.endswith("Norm") and parent.endswith("Experts"))

    return is_routed


def _idle_slices(shape: tuple[int, ...] | None, numel: int, experts: int, zero: int) -> int:
    """The parameters of a stacked experts tensor in the slices of a config's ``zero`` experts (``zero_expert_num``):
    LongCat-Flash's ``gate_up_proj`` stacks ``experts + zero`` slices along its first dimension, and its zero experts
    pass a token through, so transformers never reads theirs. 0 for any other tensor.

    >>> _idle_slices((6, 32, 32), 6 * 32 * 32, 4, 2), _idle_slices((4, 32, 16), 4 * 32 * 16, 4, 2)
    (2048, 0)
    """
    if not zero or shape is None or len(shape) < 3 or shape[0] != experts + zero:
        return 0
    return numel // shape[0] * zero


def with_active_params(report: Report, config: Mapping[str, Any] | None) -> Report:
    """``report`` with ``active_params`` in its totals and module rows when ``config`` describes a MoE model; a note
    when it has experts but not how many a token uses."""
    settings, missing = _lookup(config)
    if settings is None:
        return report if missing is None else replace(report, notes=(*report.notes, missing))
    experts, top_k, description = settings
    share = Fraction(top_k, experts)
    zero = next((count for settings in _configs(config or {})
                 if (count := _count(settings, "zero_expert_num")) is not None and count > 0), 0)  # fmt: skip
    routed_by_module: dict[str, int] = {}
    idle_by_module: dict[str, int] = {}
    routed_total = idle_total = 0
    is_routed = _routed(report)
    for record in report.tensors:
        if record.kind != "parameter" or record.numel is None or not is_routed(record.name):
            continue
        idle = _idle_slices(record.shape, record.numel, experts, zero)
        routed_total += record.numel - idle
        idle_total += idle
        path = record.name
        while path:  # the tensor's module and every ancestor hold it
            path = path.rpartition(".")[0]
            routed_by_module[path] = routed_by_module.get(path, 0) + record.numel - idle
            idle_by_module[path] = idle_by_module.get(path, 0) + idle
    if not routed_total:
        note = f"the config describes a mixture of experts ({description}), but no tensor is under an 'experts' module"
        return replace(report, notes=(*report.notes, note))
    modules = []
    for node in report.modules:
        routed = routed_by_module.get(node.path, 0)
        active = node.params - routed - idle_by_module.get(node.path, 0) + routed * share
        modules.append(node._replace(active_params=int(active) if active.denominator == 1 else None))
    active = report.totals.params - routed_total - idle_total + routed_total * share
    idle_text = (f"; {format_count(idle_total)} in slices of stacked expert tensors past the {experts} routed experts, "
                 "which no token uses (LongCat-Flash's zero experts)") if idle_total else ""  # fmt: skip
    notes = [
        f"mixture of experts, {description}: {format_count(round(active))} of {format_count(report.totals.params)} "
        f"parameters are active per token (routed experts {format_count(routed_total)} × {top_k}/{experts}; shared "
        f"experts, routers, attention, norms and embeddings always{idle_text})"
    ]
    if active.denominator != 1:
        notes.append("the routed experts are not all the same size: the active count is rounded to the nearest one")
    totals = replace(report.totals, active_params=round(active))
    return replace(report, totals=totals, modules=tuple(modules), notes=(*report.notes, *notes))
