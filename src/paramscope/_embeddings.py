"""The count without embeddings (``--exclude-embeddings``): input embeddings and an untied output head left out.

As ``transformers``' ``num_parameters(exclude_embeddings=True)`` does, the weights of embedding layers (token and
position embeddings: ``nn.Embedding`` and its subclasses, and ``nn.EmbeddingBag``; a live model's told by their
classes, :attr:`Report.embedding_layers`, a checkpoint's by their names) are left out. Unlike it, an output head that
is not tied to the input embedding is left out too (a tied head is the same tensor, already left out once).
"""

from __future__ import annotations

from dataclasses import replace

from ._report import Report, TensorRecord
from ._units import format_count, shortened
from .sources.quantization import logical_name

# Module names of embeddings and output heads, for checkpoints, which have no module types: those transformers gives
# its nn.Embedding layers (T5's relative_attention_bias, CLIP's and SigLIP's token_embedding and position_embedding,
# Mamba's and RWKV's embeddings, DeBERTa's rel_embeddings, LayoutLM's box embeddings, Gemma 3n's
# embed_tokens_per_layer), llama.cpp's and common custom code's. Only a ``weight`` is left out, as from a model: a
# ViT's ``embeddings.position_embeddings`` and ``embeddings.cls_token`` are parameters of its embeddings module, not
# tables, and stay counted.
_EMBEDDING_NAMES = frozenset({
    "embed_tokens", "wte", "wpe", "word_embeddings", "position_embeddings", "token_type_embeddings",
    "tok_embeddings", "embed_positions", "token_embd", "embed_in", "shared", "embed", "embedding", "tok_emb", "pos_emb",
    "embeddings", "token_embedding", "position_embedding", "relative_attention_bias", "rel_embeddings",
    "x_position_embeddings", "y_position_embeddings", "h_position_embeddings", "w_position_embeddings",
    "embed_tokens_per_layer",
})  # fmt: skip
_HEAD_NAMES = frozenset({"lm_head", "embed_out", "output"})
# A head named ``output`` is the model's last layer, never one inside its repeated blocks: an attention's
# out-projection is named so in RWKV, LED, Pix2Struct and BigBirdPegasus (``rwkv.blocks.0.attention.output``),
# ProphetNet's feed-forward's too, and a block of a ModuleList has a number in its path. The other names are heads
# wherever they are (a model wrapped in a Sequential: ``0.lm_head``).


def _embedding_weights(report: Report) -> tuple[list[TensorRecord], list[TensorRecord]]:
    layers = report.embedding_layers

    def role(name: str) -> str | None:
        module, _, leaf = name.rpartition(".")
        last = module.rpartition(".")[2]
        if leaf != "weight":
            return None
        # as transformers does, only an embedding layer's own weight (a gate or a bias beside it stays counted)
        if module in layers if layers is not None else last in _EMBEDDING_NAMES:
            return "embedding"
        if last not in _HEAD_NAMES:
            return None
        in_a_block = last == "output" and any(part.isdigit() for part in module.split("."))
        return None if in_a_block else "head"

    embeddings, heads = [], []
    for record in report.tensors:
        if record.kind != "parameter" or record.numel is None:
            continue
        # a tied tensor is counted under the name met first, which may be another layer's (a head registered
        # before the embedding it is tied to): each of its names says what it is
        names = (record.name, *record.aliases)
        # a quantised head (GPTQ's lm_head.qweight) by the name of the weight it encodes
        roles = {role(logical_name(name) if record.packing else name) for name in names}
        if "embedding" in roles:
            embeddings.append(record)
        elif "head" in roles:
            heads.append(record)
    return embeddings, heads


def without_embeddings(report: Report) -> Report:
    """``report`` with ``totals.non_embedding_params`` set and a note naming what was left out."""
    embeddings, heads = _embedding_weights(report)
    left_out = embeddings + heads
    count = report.totals.params - sum(record.numel or 0 for record in left_out)
    if left_out:
        listed = ", ".join(f"{shortened(record.name)} {format_count(record.numel or 0)}" for record in left_out)
        note = f"without embeddings: {format_count(count)} parameters (left out: {listed})"
    else:
        note = "without embeddings: no embedding layer or output head found, so nothing was left out"
    totals = replace(report.totals, non_embedding_params=count)
    return replace(report, totals=totals, notes=(*report.notes, note))
