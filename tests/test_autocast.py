"""Mixed precision on meta as CUDA's autocast runs it, and dropout as CUDA's fused kernel: torch's own lists, the casts
op by op, and the bytes a training plan measures against those an H200 saved for backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import paramscope
from paramscope import _autocast
from paramscope._autocast import AsUnderAutocast
from paramscope.examples import gpt2, resnet50

from .test_summary import attention_as_on_a_gpu, torch_saved_bytes

F = torch.nn.functional


def meta(*size: int, dtype: torch.dtype = torch.bfloat16, requires_grad: bool = False) -> torch.Tensor:
    return torch.empty(size, dtype=dtype, device="meta", requires_grad=requires_grad)


def test_the_lists_are_those_torch_registers_for_cuda() -> None:
    # every operator with a CUDA autocast kernel in the installed torch is in one list, and no list names another
    registered = {name.split("::", 1)[1].split(".")[0]
                  for name in torch._C._dispatch_get_registrations_for_dispatch_key("AutocastCUDA")}  # fmt: skip
    listed = [*_autocast.LOWER_PRECISION_OPS, *_autocast.FLOAT32_OPS, *_autocast.FLOAT32_RESULT_OPS,
              *_autocast.PROMOTE_OPS, *_autocast.BANNED_OPS]  # fmt: skip
    assert len(listed) == len(set(listed))
    assert set(listed) == registered


def test_each_operator_is_reached_by_a_torch_function() -> None:
    functions = _autocast._LOWER_PRECISION | _autocast._FLOAT32 | _autocast._FLOAT32_RESULT | _autocast._PROMOTE
    names = {getattr(function, "__name__", "") for function in functions}
    cuda_only = {"_thnn_fused_lstm_cell", "_thnn_fused_gru_cell"}  # CUDA's fused cells, which nn.LSTMCell calls there
    listed = {*_autocast.LOWER_PRECISION_OPS, *_autocast.FLOAT32_OPS, *_autocast.FLOAT32_RESULT_OPS,
              *_autocast.PROMOTE_OPS}  # fmt: skip
    assert listed - names == cuda_only


def test_each_list_casts_as_autocast_does() -> None:
    half, full = meta(4, 8), meta(4, 8, dtype=torch.float32)
    with AsUnderAutocast(torch.bfloat16):
        assert F.linear(full, meta(2, 8, dtype=torch.float32)).dtype == torch.bfloat16  # lower precision
        assert (full @ full.T).dtype == torch.bfloat16
        assert F.layer_norm(half, (8,)).dtype == torch.float32  # float32
        assert (half**3).dtype == torch.float32
        assert torch.exp(half).dtype == torch.float32
        assert half.softmax(-1).dtype == torch.float32  # float32 results, unless a dtype is given
        assert F.softmax(half, -1, dtype=torch.bfloat16).dtype == torch.bfloat16
        assert half.sum().dtype == torch.float32
        assert meta(4, dtype=torch.long).sum().dtype == torch.long
        assert torch.dot(full[0], half[0]).dtype == torch.float32  # promote
        assert F.interpolate(meta(1, 2, 4, 4), scale_factor=2.0, mode="bilinear").dtype == torch.float32
        assert F.interpolate(meta(1, 2, 4, 4), size=(2, 2), mode="area").dtype == torch.bfloat16
        assert (half + full).dtype == torch.float32  # what autocast leaves alone: torch's own promotion
        assert F.gelu(half).dtype == torch.bfloat16
        assert half.exp_().dtype == torch.bfloat16  # in place: never cast


def test_float64_attention_takes_the_math_path_as_on_a_gpu() -> None:
    # no fused CUDA kernel takes float64 (an H200 kept 524,288 B for these shapes, its math path), the CPU's does
    model = Attention64()
    x = torch.randn(2, 64, 32, dtype=torch.float64)
    with attention_as_on_a_gpu():
        on_a_gpu, _ = torch_saved_bytes(model, x)
    on_cpu, _ = torch_saved_bytes(model, x)
    assert on_a_gpu > on_cpu
    assert paramscope.summary(model, input_data=x, mode="train").totals.activations_bytes == on_a_gpu


class Attention64(nn.Module):
    """Self-attention of 4 heads in float64."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(32, 96, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (t.view(2, 64, 4, 8).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        return F.scaled_dot_product_attention(q, k, v)


def test_a_weight_is_cast_once_and_called_back() -> None:
    weight = meta(2, 8, dtype=torch.float32, requires_grad=True)
    casts: list[torch.Tensor] = []
    with AsUnderAutocast(torch.bfloat16, on_weight_cast=casts.append):
        F.linear(meta(4, 8, dtype=torch.float32), weight)
        F.linear(meta(4, 8, dtype=torch.float32), weight)
        F.linear(meta(4, 8, dtype=torch.float32), meta(2, 8, dtype=torch.float32))  # not a weight: no callback
    assert len(casts) == 1
    assert casts[0].dtype == torch.bfloat16
    assert casts[0].shape == weight.shape


def test_torchs_autocast_state_is_left_off_and_the_block_ends_on_error() -> None:
    # Nemotron's layer norm asks torch for the autocast dtype of its input's device when autocast is on: meta, which
    # torch refuses; the plan lost its activations item when the block turned CUDA's flag on
    with AsUnderAutocast(torch.float16):
        assert not torch.is_autocast_enabled()
        assert torch.softmax(meta(4, dtype=torch.float16), -1).dtype == torch.float32
        assert _autocast.lower_precision(meta(4, dtype=torch.float32)).dtype == torch.float16
        with AsUnderAutocast(torch.bfloat16):  # the innermost block's dtype
            assert _autocast.lower_precision(meta(4, dtype=torch.float32)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="boom"), AsUnderAutocast(torch.float16):
        raise ValueError("boom")
    assert _autocast.lower_precision(meta(4, dtype=torch.float32)).dtype == torch.float32
    assert F.linear(meta(4, 8, dtype=torch.float32), meta(2, 8, dtype=torch.float32)).dtype == torch.float32


def test_a_model_that_reads_torchs_autocast_state_is_planned() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.NemotronConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    plan = paramscope.memory(transformers.NemotronForCausalLM(config), train=True, batch=2, seq=8).memory
    assert plan is not None
    assert not [note for note in plan.notes if "failed" in note]
    assert plan.item("activations").total_bytes > 0


def test_out_is_not_cast_as_autocast_has_no_kernel_for_it() -> None:
    # as an H200 ran them under torch.autocast: a bfloat16 sum into a bfloat16 out=, float32 products into float32
    full = meta(4, 4, dtype=torch.float32)
    with AsUnderAutocast(torch.bfloat16):
        assert torch.sum(meta(4, 8), 1, out=meta(4)).dtype == torch.bfloat16
        assert torch.matmul(full, full, out=meta(4, 4, dtype=torch.float32)).dtype == torch.float32


def test_torchs_multi_head_attention_is_cast_and_fused_under_autocast() -> None:
    # nn.MultiheadAttention's function runs on meta as a copy that calls the fused attention: autocast casts the
    # products in it too. An H200 saved 4,014,096 bytes for backward (16 of them the flash kernel's random state,
    # which meta does not make), autocast's copies of the weights left out
    with torch.device("meta"):
        layer = nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0, batch_first=True)
        model = nn.Sequential(nn.Linear(64, 256), layer, nn.Linear(256, 8))
    plan = paramscope.memory(model, train=True, input_size=(4, 128, 64)).memory
    assert plan is not None
    activations = plan.item("activations")
    assert activations.total_bytes == 4_014_096 - 16
    assert "fused attention" in activations.formula


def test_binary_cross_entropy_is_refused_as_torch_refuses_it() -> None:
    with AsUnderAutocast(torch.bfloat16), pytest.raises(RuntimeError) as error:
        F.binary_cross_entropy(meta(4), meta(4))
    assert str(error.value) == (
        "torch.nn.functional.binary_cross_entropy and torch.nn.BCELoss are unsafe to autocast: use "
        "binary_cross_entropy_with_logits or nn.BCEWithLogitsLoss (torch refuses it under autocast on a GPU)"
    )


class Dropped(nn.Module):
    """A linear layer and dropout, by nn.Dropout or by torch's fused kernel itself (what CUDA runs for it)."""

    def __init__(self, fused: bool = False, inplace: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.drop = nn.Dropout(0.25, inplace=inplace)
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        return torch.native_dropout(x, 0.25, True)[0] if self.fused else self.drop(x)


def test_dropout_keeps_on_meta_the_boolean_mask_cudas_kernel_keeps() -> None:
    x = torch.randn(4, 8)
    on_meta = paramscope.summary(Dropped(), input_data=x, mode="train").totals.activations_bytes
    as_on_cuda, _ = torch_saved_bytes(Dropped(fused=True), x)  # the fused kernel measured on the cpu
    on_cpu, _ = torch_saved_bytes(Dropped(), x)
    # the linear layer's input (128 B) and the mask: 32 booleans, where the cpu keeps 32 float32 noise values
    assert (on_meta, as_on_cuda, on_cpu) == (128 + 32, 128 + 32, 128 + 128)
    inplace = Dropped(inplace=True)  # in place, every device draws the noise
    assert paramscope.summary(inplace, input_data=x, mode="train").totals.activations_bytes == 128 + 128
    assert torch_saved_bytes(inplace, x)[0] == 128 + 128


# What an H200 saved for backward (benchmarks/gpu_estimates.py, torch 2.11, 2026-11-27), measured there with
# saved_tensors_hooks, each storage once, without the parameters and autocast's copies of them. On the GPU, each
# fused attention call with dropout (GPT-2's, the encoder's) or through the flash kernel (Llama's in bfloat16) also
# keeps its random generator's state, 16 bytes, which meta does not make.
H200 = [
    ("gpt2-example", "fp32", 9_728_303_104, 0),
    ("gpt2-example", "bf16-mixed", 10_017_710_080, 0),
    ("gpt2-example", "bf16-pure", 4_871_299_072, 0),
    ("gpt2-hf", "fp32", 10_920_632_516, 12 * 16),
    ("gpt2-hf", "bf16-mixed", 8_492_130_500, 12 * 16),
    ("llama-hf", "fp32", 29_705_797_636, 0),  # grouped-query attention in float32: the math path, as on the GPU
    ("llama-hf", "bf16-mixed", 8_272_904_324, 8 * 16),
    ("resnet50-example", "bf16-mixed", 2_800_696_832, 0),
    # nn.MultiheadAttention: in float32 CUDA's memory-efficient kernel lays its output out batch first, and each layer
    # copies it for its output projection
    ("encoder", "fp32", 3_729_260_640, 6 * 16),
    ("encoder", "bf16-mixed", 2_118_647_904, 6 * 16),
]


def _model(name: str) -> tuple[nn.Module, dict[str, object]]:
    if name == "gpt2-example":
        return gpt2(), {"batch": 8, "seq": 1024}
    if name == "resnet50-example":
        return resnet50(), {"input_size": (64, 3, 224, 224)}
    if name == "encoder":
        layer = nn.TransformerEncoderLayer(512, 8, 2048, batch_first=True)
        return nn.TransformerEncoder(layer, 6, enable_nested_tensor=False), {"input_size": (32, 512, 512)}
    transformers = pytest.importorskip("transformers")
    if name == "gpt2-hf":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(attn_implementation="sdpa")), {
            "batch": 8,
            "seq": 1024,
        }
    config = transformers.LlamaConfig(
        hidden_size=2048, intermediate_size=5632, num_hidden_layers=8, num_attention_heads=32, num_key_value_heads=4,
        vocab_size=32000, max_position_embeddings=4096, attn_implementation="sdpa",
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config), {"batch": 4, "seq": 2048}


@pytest.mark.parametrize(("name", "precision", "saved", "rng_states"), H200)
def test_a_training_plans_activations_are_what_a_gpu_saved(
    name: str, precision: str, saved: int, rng_states: int
) -> None:
    with torch.device("meta"):
        model, sizes = _model(name)
    plan = paramscope.memory(model, train=True, precision=precision, **sizes).memory  # type: ignore[arg-type]
    assert plan is not None
    assert plan.item("activations").total_bytes == saved - rng_states


def test_a_mixed_precision_plan_says_what_it_measured_and_what_autocast_copies() -> None:
    model = gpt2(vocab_size=100, n_positions=16, n_embd=8, n_layer=2, n_head=2)
    # autocast copies what its products take: each nn.Linear's weight and bias (the head's weight is the embedding's)
    cast = {id(p): p.numel() for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters()}
    plan = paramscope.memory(model, train=True, batch=2, seq=16).memory
    assert plan is not None
    assert (
        "bf16-mixed: the activations are those of torch.autocast on a GPU (float32 weights, as Lightning's "
        "bf16-mixed trains); a framework that computes with bfloat16 weights and no autocast (DeepSpeed, FSDP's "
        "MixedPrecision) saves what --precision bf16-pure measures; not in the total: autocast's bfloat16 copies of "
        f"the weights it casts ({2 * sum(cast.values()) / 1024:.2f} KiB): each lives to the end of the forward, and "
        "until backward where the forward saves it"
    ) in plan.notes
    fp32 = paramscope.memory(model, train=True, batch=2, seq=16, precision="fp32").memory
    assert fp32 is not None
    assert not [note for note in fp32.notes if "autocast" in note]
