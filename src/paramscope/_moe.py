"""Mixture-of-experts models: parameters active per token, next to the total.

A routed expert's parameters work for only ``top_k`` of ``experts`` tokens, so per token a layer uses its shared
parts (attention, router, shared experts, norms) and ``top_k / experts`` of its routed experts. Routed expert
tensors are the ones under a module named ``experts`` (``mlp.experts.3.w1.weight``, or the fused
``mlp.experts.gate_up_proj`` of recent transformers); ``shared_experts`` and the router are always active.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from fractions import Fraction
from typing import Any

from ._report import Report
from ._units import format_count

# config keys, by model family: (number of routed experts, experts used per token)
_EXPERTS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
_TOP_K = ("num_experts_per_tok", "moe_topk", "num_selected_experts", "top_k")


def moe_settings(config: Mapping[str, Any] | None) -> tuple[int, int, str] | None:
    """``(experts, top_k, description)`` from a model config, or None for a dense model."""
    if not config:
        return None
    configs = [config]
    text_config = config.get("text_config")  # multimodal models keep the language model's settings apart
    if isinstance(text_config, Mapping):
        configs.append(text_config)
    for settings in configs:
        experts = next(((key, settings[key]) for key in _EXPERTS if isinstance(settings.get(key), int)), None)
        top_k = next(((key, settings[key]) for key in _TOP_K if isinstance(settings.get(key), int)), None)
        if experts and top_k and experts[1] > 1 and 0 < top_k[1] <= experts[1]:
            return experts[1], top_k[1], f"{top_k[1]} of {experts[1]} experts per token ({top_k[0]}, {experts[0]})"
    return None


def _is_routed(name: str) -> bool:
    return "experts" in name.split(".")[:-1]


def with_active_params(report: Report, config: Mapping[str, Any] | None) -> Report:
    """``report`` with ``active_params`` in its totals and module rows when ``config`` describes a MoE model."""
    settings = moe_settings(config)
    if settings is None:
        return report
    experts, top_k, description = settings
    share = Fraction(top_k, experts)
    routed_by_module: dict[str, int] = {}
    routed_total = 0
    for record in report.tensors:
        if record.kind != "parameter" or record.numel is None or not _is_routed(record.name):
            continue
        routed_total += record.numel
        path = record.name
        while path:  # the tensor's module and every ancestor hold it
            path = path.rpartition(".")[0]
            routed_by_module[path] = routed_by_module.get(path, 0) + record.numel
    if not routed_total:
        note = f"the config describes a mixture of experts ({description}), but no tensor is under an 'experts' module"
        return replace(report, notes=(*report.notes, note))
    modules = []
    for node in report.modules:
        routed = routed_by_module.get(node.path, 0)
        active = node.params - routed + routed * share
        modules.append(node._replace(active_params=int(active) if active.denominator == 1 else None))
    active = report.totals.params - routed_total + routed_total * share
    notes = [
        f"mixture of experts, {description}: {format_count(round(active))} of {format_count(report.totals.params)} "
        f"parameters are active per token (routed experts {format_count(routed_total)} × {top_k}/{experts}; shared "
        "experts, routers, attention, norms and embeddings always)"
    ]
    if active.denominator != 1:
        notes.append("the routed experts are not all the same size: the active count is rounded to the nearest one")
    totals = replace(report.totals, active_params=round(active))
    return replace(report, totals=totals, modules=tuple(modules), notes=(*report.notes, *notes))
