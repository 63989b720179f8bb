"""The count without embeddings (``--exclude-embeddings``): input embeddings and an untied output head left out.

As ``transformers``' ``num_parameters(exclude_embeddings=True)`` does: the weights of embedding layers (token and
position embeddings) are left out; so is an output head that is not tied to the input embedding (a tied head is the
same tensor, already left out once).
"""

from __future__ import annotations

from dataclasses import replace

from ._report import Report, TensorRecord
from ._units import format_count

_EMBEDDING_TYPES = frozenset({"Embedding", "EmbeddingBag"})
# Module names of embeddings and output heads, for checkpoints, which have no module types.
_EMBEDDING_NAMES = frozenset({
    "embed_tokens", "wte", "wpe", "word_embeddings", "position_embeddings", "token_type_embeddings",
    "tok_embeddings", "embed_positions", "token_embd", "embed_in", "shared", "embed", "embedding", "tok_emb", "pos_emb",
})  # fmt: skip
_HEAD_NAMES = frozenset({"lm_head", "embed_out", "output"})


def _embedding_weights(report: Report) -> tuple[list[TensorRecord], list[TensorRecord]]:
    types = {node.path: node.type for node in report.modules}
    embeddings, heads = [], []
    for record in report.tensors:
        if record.kind != "parameter" or record.numel is None:
            continue
        module, _, leaf = record.name.rpartition(".")
        module_type = types.get(module)
        last = module.rpartition(".")[2]
        if module_type in _EMBEDDING_TYPES or (module_type is None and last in _EMBEDDING_NAMES):
            embeddings.append(record)
        elif last in _HEAD_NAMES and leaf == "weight":
            heads.append(record)
    return embeddings, heads


def without_embeddings(report: Report) -> Report:
    """``report`` with ``totals.non_embedding_params`` set and a note naming what was left out."""
    embeddings, heads = _embedding_weights(report)
    left_out = embeddings + heads
    count = report.totals.params - sum(record.numel or 0 for record in left_out)
    if left_out:
        listed = ", ".join(f"{record.name} {format_count(record.numel or 0)}" for record in left_out)
        note = f"without embeddings: {format_count(count)} parameters (left out: {listed})"
    else:
        note = "without embeddings: no embedding layer or output head found, so nothing was left out"
    totals = replace(report.totals, non_embedding_params=count)
    return replace(report, totals=totals, notes=(*report.notes, note))
