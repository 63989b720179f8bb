"""``--check`` on a mixture of experts stored expert by expert (Mixtral's layout), which transformers merges into one
fused tensor per layer when it loads.

The checkpoints are written here, name by name, from the config's hyperparameters; transformers is the independent
truth twice over: what it saves is this layout, and each broken variant is one it refuses to load.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file

import paramscope
from paramscope._check import Loading, ShapeMismatch, compare
from paramscope._units import shortened

from .cli import run

HIDDEN, INTERMEDIATE, EXPERTS, LAYERS, VOCAB, HEADS, KV_HEADS = 16, 24, 3, 2, 64, 2, 1
Layout = dict[str, tuple[int, ...]]


def _config() -> transformers.MixtralConfig:
    return transformers.MixtralConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        num_local_experts=EXPERTS,
        num_experts_per_tok=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        architectures=["MixtralForCausalLM"],
    )


def _expert(layer: int, expert: int, which: str) -> str:
    return f"model.layers.{layer}.block_sparse_moe.experts.{expert}.{which}.weight"


def _per_expert_layout(experts: int = EXPERTS) -> Layout:
    """Mixtral as its checkpoints store it: w1 and w3 (intermediate × hidden) and w2 (hidden × intermediate) per
    expert, and a router ``block_sparse_moe.gate``."""
    head_dim = HIDDEN // HEADS
    layout: Layout = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,)}
    layout["lm_head.weight"] = (VOCAB, HIDDEN)
    for layer in range(LAYERS):
        prefix = f"model.layers.{layer}"
        layout |= {
            f"{prefix}.self_attn.q_proj.weight": (HEADS * head_dim, HIDDEN),
            f"{prefix}.self_attn.k_proj.weight": (KV_HEADS * head_dim, HIDDEN),
            f"{prefix}.self_attn.v_proj.weight": (KV_HEADS * head_dim, HIDDEN),
            f"{prefix}.self_attn.o_proj.weight": (HIDDEN, HEADS * head_dim),
            f"{prefix}.input_layernorm.weight": (HIDDEN,),
            f"{prefix}.post_attention_layernorm.weight": (HIDDEN,),
            f"{prefix}.block_sparse_moe.gate.weight": (EXPERTS, HIDDEN),
        }
        for expert in range(experts):
            layout[_expert(layer, expert, "w1")] = (INTERMEDIATE, HIDDEN)
            layout[_expert(layer, expert, "w3")] = (INTERMEDIATE, HIDDEN)
            layout[_expert(layer, expert, "w2")] = (HIDDEN, INTERMEDIATE)
    return layout


def _save(directory: Path, layout: Layout) -> Path:
    directory.mkdir()
    save_file({name: torch.zeros(shape) for name, shape in layout.items()}, str(directory / "model.safetensors"))
    _config().save_pretrained(directory)
    return directory


def _loads_in_transformers(directory: Path) -> bool:
    """The truth: whether transformers loads the checkpoint into the model its config describes, keys all used."""
    try:
        _, info = transformers.MixtralForCausalLM.from_pretrained(directory, output_loading_info=True)
    except RuntimeError:  # a merge of the wrong number or shape of experts
        return False
    return not any(info.values())


def test_the_hand_made_layout_is_the_one_transformers_saves(tmp_path: Path) -> None:
    torch.manual_seed(0)
    transformers.MixtralForCausalLM(_config()).save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as saved:
        assert {name: tuple(saved.get_slice(name).get_shape()) for name in saved.keys()} == _per_expert_layout()  # noqa: SIM118


def test_a_correct_per_expert_checkpoint_passes(tmp_path: Path) -> None:
    directory = _save(tmp_path / "good", _per_expert_layout())
    report = paramscope.inspect(str(directory), check=True)
    assert report.check is not None
    assert report.check.ok
    assert _loads_in_transformers(directory)
    assert (
        f"--check: {LAYERS * EXPERTS * 3} checkpoint tensor(s) that the loader converts (merges, splits, reshapes; "
        f"{_expert(0, 0, 'w1')} into model.layers.0.mlp.experts.gate_up_proj, …) compared by total count: the "
        "tensors mapped to one model tensor must hold as many values as it has, and experts stored one by one the "
        "same indices and one shape a kind, stacked into an arrangement of its dimensions; other shapes are not "
        "compared one by one"
    ) in report.notes


def _wrong_shape(layout: Layout) -> None:
    layout[_expert(0, 1, "w1")] = (INTERMEDIATE - 4, HIDDEN)


def _missing_expert(layout: Layout) -> None:
    del layout[_expert(1, 2, "w2")]


def _stray_expert(layout: Layout) -> None:
    layout[_expert(0, 9, "w1")] = (INTERMEDIATE, HIDDEN)  # the right shape: only its index is wrong


def _extra_expert(layout: Layout) -> None:
    layout |= {name: shape for name, shape in _per_expert_layout(EXPERTS + 1).items() if ".experts.3." in name}


def _no_w2_at_all(layout: Layout) -> None:
    for expert in range(EXPERTS):
        del layout[_expert(1, expert, "w2")]


def _transposed(layout: Layout) -> None:
    for name, shape in list(layout.items()):
        if ".experts." in name:
            layout[name] = shape[::-1]


def _unequal(layout: Layout) -> None:
    # as many values in all as the model's tensor: one expert's w1 a row longer, another's a row shorter
    layout[_expert(0, 0, "w1")] = (INTERMEDIATE + 1, HIDDEN)
    layout[_expert(0, 1, "w1")] = (INTERMEDIATE - 1, HIDDEN)


def _doubled_instead_of_its_pair(layout: Layout) -> None:
    layout[_expert(0, 0, "w1")] = (2 * INTERMEDIATE, HIDDEN)
    del layout[_expert(0, 0, "w3")]


GATE_UP, DOWN = "model.layers.{}.mlp.experts.gate_up_proj", "model.layers.{}.mlp.experts.down_proj"
GATE_UP_SHAPE, DOWN_SHAPE = (EXPERTS, 2 * INTERMEDIATE, HIDDEN), (EXPERTS, HIDDEN, INTERMEDIATE)

# case: (edit, missing, unexpected, mismatched as (name, model shape, checkpoint count), a note that explains it)
BROKEN: dict[str, tuple[Callable[[Layout], None], tuple[str, ...], tuple[str, ...], tuple, str]] = {
    "wrong-shape": (
        _wrong_shape,
        (),
        (),
        ((GATE_UP.format(0), GATE_UP_SHAPE, (EXPERTS * 2 * INTERMEDIATE * HIDDEN - 4 * HIDDEN,)),),
        f"{_expert(0, 1, 'w1')} is ({INTERMEDIATE - 4}, {HIDDEN}) where the other "
        f"model.layers.0.block_sparse_moe.experts.*.w1.weight are ({INTERMEDIATE}, {HIDDEN})",
    ),
    "missing-expert": (
        _missing_expert,
        (),
        (),
        ((DOWN.format(1), DOWN_SHAPE, ((EXPERTS - 1) * HIDDEN * INTERMEDIATE,)),),
        "model.layers.1.block_sparse_moe.experts.*.w2.weight lacks index 2",
    ),
    "stray-expert-9": (
        _stray_expert,
        (),
        (_expert(0, 9, "w1"),),
        (),
        f"--check: {_expert(0, 9, 'w1')}: index beyond the {EXPERTS} that {GATE_UP.format(0)} stacks (unexpected)",
    ),
    "extra-expert": (
        _extra_expert,
        (),
        tuple(_expert(layer, 3, which) for layer in range(LAYERS) for which in ("w1", "w3", "w2")),
        (),
        f"--check: {_expert(1, 3, 'w2')}: index beyond the {EXPERTS} that {DOWN.format(1)} stacks (unexpected)",
    ),
    "no-w2-at-all": (_no_w2_at_all, (DOWN.format(1),), (), (), ""),
    # from review: each holds as many values as the model's tensors, and passed
    "transposed": (
        _transposed,
        (),
        (),
        # down_proj's transposed experts stack into a transpose of its shape, which some models' loading makes
        # (a Transpose among their conversions): counted, not told apart
        tuple((GATE_UP.format(layer), GATE_UP_SHAPE, (math.prod(GATE_UP_SHAPE),)) for layer in range(LAYERS)),
        f"the experts merged into {GATE_UP.format(0)} make ({EXPERTS}, {2 * HIDDEN}, {INTERMEDIATE}), not an "
        f"arrangement of the model's ({EXPERTS}, {2 * INTERMEDIATE}, {HIDDEN}): stored transposed, or of other sizes",
    ),
    "unequal": (
        _unequal,
        (),
        (),
        ((GATE_UP.format(0), GATE_UP_SHAPE, (math.prod(GATE_UP_SHAPE),)),),
        f"{_expert(0, 1, 'w1')} is ({INTERMEDIATE - 1}, {HIDDEN})",
    ),
    "doubled-instead-of-its-pair": (
        _doubled_instead_of_its_pair,
        (),
        (),
        ((GATE_UP.format(0), GATE_UP_SHAPE, (math.prod(GATE_UP_SHAPE),)),),
        "model.layers.0.block_sparse_moe.experts.*.w3.weight lacks index 0",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_per_expert_checkpoint_is_reported(tmp_path: Path, case: str) -> None:
    edit, missing, unexpected, mismatched, note = BROKEN[case]
    layout = _per_expert_layout()
    edit(layout)
    directory = _save(tmp_path / case, layout)
    assert not _loads_in_transformers(directory)

    check = paramscope.inspect(str(directory), check=True).check
    assert check is not None
    assert not check.ok
    assert (check.missing, tuple(sorted(check.unexpected)), check.mismatched) == (
        missing,
        tuple(sorted(unexpected)),
        tuple(ShapeMismatch(*item) for item in mismatched),
    )
    assert not note or any(note in line for line in check.notes)


def test_the_cli_exits_1_on_a_broken_expert(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    layout = _per_expert_layout()
    _missing_expert(layout)
    directory = _save(tmp_path / "broken", layout)
    code, out, err = run(capsys, "inspect", str(directory), "--check", "--quiet")
    assert (code, err) == (1, "")
    assert DOWN.format(1) in out


def test_the_cli_shortens_a_long_name_in_its_check_notes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    stray = _expert(0, 0, "w1").replace(".experts.0.", f".experts.{'9' * 5000}.")
    directory = _save(tmp_path / "stray", _per_expert_layout() | {stray: (INTERMEDIATE, HIDDEN)})
    code, out, err = run(capsys, "inspect", str(directory), "--check", "--quiet")
    assert (code, err) == (1, "")
    notes = out.split("\nNotes\n", 1)[1].splitlines()
    stacks = f"index beyond the {EXPERTS} that {GATE_UP.format(0)} stacks (unexpected)"
    assert f"  - --check: {shortened(stray)}: {stacks}" in notes
    assert max(len(line) for line in notes) < 1000  # not the name's 5,000 digits; the check's table names it in full


class _Attention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = torch.nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.k_proj = torch.nn.Linear(HIDDEN, HIDDEN // 2, bias=False)
        self.v_proj = torch.nn.Linear(HIDDEN, HIDDEN // 2, bias=False)


def _split_qkv(name: str) -> tuple[str, bool]:
    """A one-to-many conversion as transformers' renames it: ``qkv`` names only the first model tensor it fills."""
    return ("q_proj.weight", True) if name == "qkv.weight" else (name, False)


@pytest.mark.parametrize("rows", [2 * HIDDEN, 2 * HIDDEN + 1])
def test_a_tensor_split_into_several_is_compared_with_their_sum(tmp_path: Path, rows: int) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"qkv.weight": torch.zeros(rows, HIDDEN)}, str(path))
    model = _Attention()
    fits = rows * HIDDEN == sum(parameter.numel() for parameter in model.parameters())
    check = compare(paramscope.inspect(model), paramscope.inspect(str(path)), Loading(rename=_split_qkv))
    if fits:
        assert check.ok
    else:  # the sum does not fit: q_proj is short of what qkv holds, k_proj and v_proj have no source
        assert check.missing == ("k_proj.weight", "v_proj.weight")
        assert check.mismatched == (ShapeMismatch("q_proj.weight", (HIDDEN, HIDDEN), (rows * HIDDEN,)),)


@pytest.mark.parametrize("index", ["9" * 5000, "\u00b2"], ids=["5000-digits", "superscript-two"])
def test_an_expert_index_that_int_refuses_is_reported_not_raised(tmp_path: Path, index: str) -> None:
    # int() refuses more than 4,300 digits, and "²", which str.isdigit() accepts: a number past the experts is
    # unexpected; "²" is no number, so it is one more tensor in the merge, which then holds one w1 too many
    stray = _expert(0, 0, "w1").replace(".experts.0.", f".experts.{index}.")
    layout = _per_expert_layout() | {stray: (INTERMEDIATE, HIDDEN)}
    directory = _save(tmp_path / "stray", layout)
    try:
        loads = _loads_in_transformers(directory)
    except ValueError:  # transformers sorts the keys with int() too, and fails on them
        loads = False
    assert not loads

    check = paramscope.inspect(str(directory), check=True).check
    assert check is not None
    if index.isascii():
        assert (check.missing, check.unexpected, check.mismatched) == ((), (stray,), ())
    else:
        merged = (EXPERTS * 2 * INTERMEDIATE * HIDDEN + INTERMEDIATE * HIDDEN,)
        assert (check.missing, check.unexpected) == ((), ())
        assert check.mismatched == (ShapeMismatch(GATE_UP.format(0), GATE_UP_SHAPE, merged),)


LONG = "m" * 2500 + "n" * 2500  # a name from a checkpoint: any length


def _shown(name: str, limit: int = 200) -> str:
    """A name as a note shows it: its start and its end, ``limit`` characters in all."""
    assert len(name) > limit
    shown = shortened(name, limit)
    assert len(shown) == limit
    assert shown == f"{name[: limit // 2]}…{name[-((limit - 1) // 2) :]}"
    return shown


def _records(shapes: dict[str, tuple[int, ...]], packed: str = "") -> paramscope.Report:
    from paramscope._report import Report, Source, TensorRecord
    from paramscope._tree import tree_from_names

    records = []
    for name, shape in shapes.items():
        packing = "8 × int4 per int32 (GPTQ)" if name == packed else None
        numel = math.prod(shape)
        records.append(TensorRecord(name, shape, numel, "float32", 4 * numel, "parameter", None, None, (), packing))
    nodes, totals, by_dtype = tree_from_names(records)
    return Report(Source("safetensors", "x"), totals, by_dtype, tuple(records), nodes)


def _merge_experts(name: str) -> tuple[str, bool]:
    """``….experts.N.w`` stacked into ``….experts.w``, as a loader merges experts."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[-3] == "experts" and parts[-2].isdecimal():
        return ".".join([*parts[:-2], parts[-1]]), True
    return name, False


def test_check_notes_shorten_long_names() -> None:
    model = _records(
        {f"base.{LONG}.weight": (4,), f"{LONG}.head": (4,), f"{LONG}.q.weight": (4,)}
        | {f"{LONG}.experts.w": (2, 4), f"{LONG}.experts.v": (2, 4)}
    )
    checkpoint = _records(
        {f"{LONG}.weight": (4,), f"base.{LONG}.head": (4,), f"{LONG}.q.qweight": (4,), f"{LONG}.skipped": (1,)}
        | {f"{LONG}.experts.{expert}.w": (4,) for expert in (0, 1, 7)}
        | {f"{LONG}.experts.0.v": (4,)},
        packed=f"{LONG}.q.qweight",
    )
    check = compare(model, checkpoint, Loading(_merge_experts, "base", ignore_unexpected=("skipped",)))
    assert check.unexpected == (f"{LONG}.experts.7.w",)  # the check itself keeps the names whole
    assert check.mismatched == (ShapeMismatch(f"{LONG}.experts.v", (2, 4), (4,)),)
    transformers_does = "as transformers does when it loads"
    assert check.notes == (
        f"--check: base-model prefix 'base.' added to 1 checkpoint tensor name(s) ({_shown(f'{LONG}.weight')}), "
        f"{transformers_does} a base model's weights into the model",
        "--check: base-model prefix 'base.' removed from 1 checkpoint tensor name(s) "
        f"({_shown(f'base.{LONG}.head')}), {transformers_does} a model with a head into the model",
        "--check: 1 packed quantised weight(s) compared as the weights they encode, by logical shape "
        f"({_shown(f'{LONG}.q.qweight', 98)} as {_shown(f'{LONG}.q.weight', 98)}); their scale, zero and index "
        "tensors are not unexpected",
        "--check: 1 tensor(s) not reported because the model lists them as ignorable when it loads "
        f"({_shown(f'{LONG}.skipped')})",
        "--check: 4 checkpoint tensor(s) that the loader converts (merges, splits, reshapes; "
        f"{_shown(f'{LONG}.experts.0.w')} into {_shown(f'{LONG}.experts.w')}, …) compared by total count: the "
        "tensors mapped to one model tensor must hold as many values as it has, and experts stored one by one the "
        "same indices and one shape a kind, stacked into an arrangement of its dimensions; other shapes are not "
        "compared one by one",
        f"--check: {_shown(f'{LONG}.experts.7.w')}: index beyond the 2 that {_shown(f'{LONG}.experts.w')} stacks "
        "(unexpected)",
        f"--check: the 1 checkpoint tensor(s) the loader merges into {_shown(f'{LONG}.experts.v')} hold 4 values, "
        "the model's (2×4) tensor 8; its checkpoint shape is shown as that one count; "
        f"{_shown(f'{LONG}.experts.*.v')} lacks index 1",
    )
