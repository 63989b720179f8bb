"""The ``paramscope`` command. ``main(argv)`` returns the exit code: 0 success, 1 differences found (``diff``,
``--check``), 2 bad input, 3 budget exceeded."""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import gc
import io
import os
import re
import secrets
import shutil
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from ._errors import BudgetExceededError, IncompleteCountError, ParamscopeError, TargetError, UsageError, printable
from ._version import __version__

if TYPE_CHECKING:
    from ._budget import Budget
    from ._report import Report
    from .render import Document, View
    from .sources.target import Request

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_ERROR = 2
EXIT_BUDGET = 3
_ALL_DEPTHS = 10**6
MAX_DIMENSION = 2**63 - 1
"""The largest tensor dimension torch takes (an int64)."""

_MAIN_EXAMPLES = """\
examples:
  paramscope inspect paramscope.examples:resnet18
  paramscope inspect my_models.py:Net hidden=512 --depth 3
  paramscope inspect paramscope.examples:gpt2 --format json --output gpt2.json
  paramscope inspect paramscope.examples:gpt2 --max-params 125M   # exit 3 when over budget
  paramscope inspect paramscope.examples:resnet18 --explain       # each layer's formula
  paramscope summary paramscope.examples:resnet18 --input-size 1,3,224,224
  paramscope memory paramscope.examples:gpt2 --train --seq 1024 --batch 8 --device-memory 24GiB
  paramscope diff paramscope.examples:resnet18 paramscope.examples:resnet34
  paramscope formula conv2d in_channels=3 out_channels=64 kernel_size=7 bias=false
  paramscope dtypes

exit codes: 0 success, 1 diff or --check found differences, 2 bad input or usage, 3 budget exceeded
"""

_INSPECT_EXAMPLES = """\
examples:
  paramscope inspect paramscope.examples:resnet18                 # built on meta: no weights allocated
  paramscope inspect paramscope.examples:resnet18 num_classes=10  # keyword arguments for the factory
  paramscope inspect path/to/models.py:build_model --device cpu   # code that needs real tensors
  paramscope inspect paramscope.examples:gpt2 --tensors           # one row per tensor
  paramscope inspect paramscope.examples:gpt2 --format markdown --units si
  paramscope inspect paramscope.examples:resnet18 --explain       # the formula of every layer, checked
  paramscope inspect paramscope.examples:resnet18 --max-params 10M --max-bytes 40MiB
  paramscope inspect model.safetensors                            # a checkpoint, headers only
  paramscope inspect path/to/Llama-3-70B/                         # all shards, via the index
  paramscope inspect checkpoint.ckpt --tensors                    # torch.load(weights_only=True, mmap=True)
  paramscope inspect model-Q4_K_M.gguf
  paramscope inspect path/to/config.json                          # transformers, built on meta
  paramscope inspect hf:mistralai/Mixtral-8x7B-v0.1               # config + safetensors headers from the Hub
  paramscope inspect path/to/checkpoint/ --check                  # will the weights load into the config's model?

TARGET is model code: 'package.module:attr' or 'path/to/file.py:attr', where attr is an nn.Module instance, a
class, or a function returning one; KEY=VALUE arguments are passed to it as keyword arguments (values are Python
literals, true/false/none, else strings). Or it is a checkpoint: *.safetensors, *.safetensors.index.json, *.pt,
*.pth, *.bin, *.ckpt, *.gguf, or a directory holding them; nothing but headers is read, and a PyTorch file is
loaded with weights_only=True (no code in it runs) and memory-mapped. Or a Hugging Face config.json (a directory
with a config and no weights too), built on the meta device with transformers; or hf:org/name[@revision] on the Hub
(config.json and safetensors headers only; HF_TOKEN and HF_ENDPOINT are honoured).

exit codes: 0 success, 1 --check found differences, 2 bad input or usage, 3 budget exceeded
"""

_SUMMARY_EXAMPLES = """\
examples:
  paramscope summary paramscope.examples:resnet18 --input-size 1,3,224,224
  paramscope summary paramscope.examples:resnet18 --input-size 1,3,224,224 --explain --format csv
  paramscope summary paramscope.examples:gpt2 --input-size 1,1024 --input-dtype long --depth 2
  paramscope summary path/to/Llama-3-70B/config.json --input-size 1,2048 --input-dtype long --depth 1
  paramscope summary my_models.py:Net --input-size 8,16 --input-size 8,4 --device cpu --mode train
  paramscope summary path/to/checkpoint/ --input-size 1,128 --input-dtype long --check

The pass runs on the meta device unless --device cpu: shapes are exact and nothing is computed. FLOPs are counted
with torch's FlopCounterMode formulas (matrix products, convolutions, attention); activations are the bytes autograd
saves for backward in a train-mode forward (with --device cpu, which runs one forward, only with --mode train).
The model is never changed. A forward needs a model, so a directory holding config.json and weights is always built
from the config (as --from-config does); --check compares the weights with that model.

exit codes: 0 success, 1 --check found differences, 2 bad input or usage, 3 budget exceeded
"""

_MEMORY_EXAMPLES = """\
examples:
  paramscope memory path/to/Llama-3-8B/ --dtype bf16 --batch 8 --context 8192 --kv-dtype fp8
  paramscope memory path/to/Llama-3-70B/config.json --dtype bf16 --tp 4 --context 8192 --device-memory 80GiB
  paramscope memory paramscope.examples:gpt2 --train --seq 1024 --batch 8 --optimizer adamw --precision bf16-mixed
  paramscope memory hf:meta-llama/Meta-Llama-3-70B --train --seq 4096 --gpus 64 --zero 3 --grad-checkpointing
  paramscope memory paramscope.examples:resnet50 --train --input-size 256,3,224,224 --precision fp32
  paramscope memory model.safetensors --dtype Q4_K --keep-fp32 '*norm*'

Inference: the weights (as stored, or converted to --dtype), the buffers, the KV cache of a decoder config
(--batch sequences of --context tokens in --kv-dtype), the recurrent states of linear-attention and Mamba layers,
and the activations of one eval forward on meta. Training:
weights, gradients of the trainable parameters, fp32 master weights for mixed precision, the optimizer's states as
torch lays them out, and the activations autograd saves in a train-mode forward on meta. --gpus, --zero, --tp and
--offload-optimizer give the per-device share of each item; --device-memory says whether it fits (exit 3 if not).
Every item is labelled exact, derived or estimate, and shows its formula. The "Weights stored in each format"
table gives the weights in every common dtype and GGUF format.

exit codes: 0 success, 2 bad input or usage, 3 over --device-memory
"""

_DIFF_EXAMPLES = """\
examples:
  paramscope diff paramscope.examples:resnet18 paramscope.examples:resnet34
  paramscope diff my_models.py:build model.safetensors            # will the checkpoint load? where not?
  paramscope diff base/ finetuned/ --format markdown                # a fine-tuned or pruned checkpoint
  paramscope diff llama-7b/config.json llama-7b-x2/config.json     # what do twice the layers cost?
  paramscope diff my_models.py:Net my_models.py:Net --args-b hidden=1024

For a model A and its checkpoint B, "Only in A" are the keys load_state_dict would report missing, "Only in B" the
unexpected ones, and the shape or dtype differences its size mismatches; between two live models, a tensor frozen
on one side and trained on the other differs too. Tensors are matched by name, tied names included; a model's
non-persistent buffers are left out against a checkpoint, which never holds them. Two models (or two checkpoints)
also differ in a tensor's kind (parameter or buffer), in a tie or a reused module on one side only, and in their
totals. Two model files each import their neighbours from their own folder.

exit codes: 0 the models are the same, 1 they differ, 2 bad input or usage, or uninitialised lazy tensors (sizes
unknown) and nothing known that differs
"""

_FORMULA_EXAMPLES = """\
examples:
  paramscope formula conv2d in_channels=3 out_channels=64 kernel_size=7 bias=false
  paramscope formula lstm input_size=512 hidden_size=1024 num_layers=2 bidirectional=true
  paramscope formula TransformerEncoderLayer d_model=768 nhead=12 dim_feedforward=3072
  paramscope formula --list                                       # every layer and its arguments

LAYER is a torch.nn layer name, in any case. Arguments are the layer's constructor arguments as KEY=VALUE;
those that do not change the count (stride, padding, eps, ...) are accepted and ignored.
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit code 2, like every other paramscope error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # argparse takes "-1,4" for an option (only "-1" or "-1.5" pass as negative numbers) and stops with "expected
        # one argument"; as a value, "--input-size -1,4" then gets the message that says what is wrong with it.
        # _negative_number_matcher is argparse's private pattern (3.8–3.14); test_summary pins the behaviour, so a
        # rename that made this line do nothing would fail there.
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str) -> NoReturn:
        # argparse quotes an unknown argument as it was typed: a newline or a terminal escape in it stays one line
        _complain(f"paramscope: error: {printable(message)} (see '{self.prog} --help')")
        raise SystemExit(EXIT_ERROR)


# The most of an error's text shown: one line in a CI log, whatever a file quotes into it (a tensor name of 90 MB in a
# safetensors header), and room for the longest of paramscope's own (every layer formula knows: 2,079 characters)
MAX_ERROR_TEXT = 10_000


def _error_text(error: BaseException) -> str:
    """An error's message as the command line shows it: its control characters escaped, shortened to
    :data:`MAX_ERROR_TEXT` characters (its start and its end)."""
    from ._units import shortened

    return printable(shortened(str(error), MAX_ERROR_TEXT))


def _complain(line: str) -> None:
    """``line`` on stderr, when there is one: started with it closed (``2>&-``), or with one that cannot be written
    (a pipe whose reader has gone, a descriptor open for reading), the exit code still tells."""
    if sys.stderr is None:
        return
    try:
        sys.stderr.write(f"{line}\n")
        sys.stderr.flush()
    except OSError:
        # Not raised on: main() would take a BrokenPipeError for a reader of stdout gone (exit 0), any other OSError
        # would escape it (Python's 1); and the line kept in stderr's buffer would fail Python's flush at exit (120).
        sys.stderr = None


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="paramscope",
        description="Exact parameter counts, sizes and memory of PyTorch models.",
        epilog=_MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"paramscope {__version__}")
    # not required here: main() says a COMMAND is missing, after naming an unknown option given instead (-V)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    inspect = commands.add_parser(
        "inspect",
        usage="paramscope inspect TARGET [KEY=VALUE ...] [options]",
        help="count the parameters and buffers of a model",
        description="Count every parameter and buffer of a model, exactly: tied weights once, by dtype, by module.",
        epilog=_INSPECT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_options(inspect, depth_help="module tree depth to show (default: 2; with --explain: all)")
    _add_config_options(
        inspect, from_config_help="build from the config.json beside the weights instead of reading them"
    )
    inspect.set_defaults(handler=_run_inspect, takes_arguments=True, command_parser=inspect)

    summary = commands.add_parser(
        "summary",
        usage="paramscope summary TARGET [KEY=VALUE ...] --input-size SHAPE [options]",
        help="a forward pass layer by layer: shapes, FLOPs, activation memory (on meta by default)",
        description="Run a forward pass (on the meta device by default: any size, no compute) and show each module's "
        "inputs, outputs, parameters, FLOPs, MACs and the activation memory autograd keeps for backward.",
        epilog=_SUMMARY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_options(summary, depth_help="depth of the modules to show (default: 3)")
    summary.add_argument(
        "--input-size",
        action="append",
        metavar="SHAPE",
        help="an input's shape, comma separated (1,3,224,224); repeat for several inputs",
    )
    summary.add_argument(
        "--input-dtype",
        action="append",
        metavar="DTYPE",
        help="an input's dtype (by default the model's float dtype, and long for a transformers model's input_ids; "
        "long for token ids); one, or one per --input-size",
    )
    summary.add_argument(
        "--mode", choices=("eval", "train"), default="eval", help="the model's mode during the pass (default: eval)"
    )
    _add_config_options(
        summary,
        from_config_help="build from the config.json beside the weights; the default here, as a forward needs a model "
        "(the weights are never read: see --check)",
    )
    summary.set_defaults(handler=_run_summary, takes_arguments=True, command_parser=summary)

    memory = commands.add_parser(
        "memory",
        usage="paramscope memory TARGET [KEY=VALUE ...] [options]",
        help="what the model costs in memory to store, serve or train, itemised, per device",
        description="The memory budget of a model, item by item and per device, each item labelled exact (counted "
        "from tensors), derived (a stated formula on exact counts) or estimate (a named heuristic), with its formula.",
        epilog=_MEMORY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_memory_options(memory)
    memory.set_defaults(handler=_run_memory, takes_arguments=True, command_parser=memory)

    diff = commands.add_parser(
        "diff",
        usage="paramscope diff A B [options]",
        help="what differs between two models: totals, modules and tensors (exit 1 when they differ)",
        description="Compare two models, each anything inspect takes: parameters and bytes side by side with the "
        "change, per module, and the tensors on one side only or with another shape, dtype or trainability.",
        epilog=_DIFF_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_diff_options(diff)
    diff.set_defaults(handler=_run_diff, takes_arguments=False, command_parser=diff)

    formula = commands.add_parser(
        "formula",
        usage="paramscope formula LAYER [KEY=VALUE ...] [options]\n       paramscope formula --list",
        help="the parameter count of a torch.nn layer from its hyperparameters",
        description="Count a layer's parameters from its hyperparameters, with the arithmetic and its size per dtype.",
        epilog=_FORMULA_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    formula.add_argument("layer", metavar="LAYER", nargs="?", help="a torch.nn layer name: conv2d, Linear, LSTM, ...")
    formula.add_argument("--list", action="store_true", help="list every layer and its arguments")
    _add_output_options(formula, ("table", "json", "markdown"))
    _add_quiet_without_progress(formula)
    formula.set_defaults(handler=_run_formula, takes_arguments=True, command_parser=formula)

    dtypes = commands.add_parser(
        "dtypes",
        help="the dtype table every size comes from",
        description="Every dtype paramscope knows: names, aliases, bits per value and storage per element.",
    )
    _add_output_options(dtypes, ("table", "json", "markdown"), units=False)
    _add_quiet_without_progress(dtypes)
    dtypes.set_defaults(handler=_run_dtypes, takes_arguments=False, command_parser=dtypes)
    return parser


def _add_model_options(parser: argparse.ArgumentParser, *, depth_help: str) -> None:
    """What inspect and summary share: the target, its device, the output and the budget gate."""
    parser.add_argument(
        "target",
        metavar="TARGET",
        help="model code ('package.module:attr', 'file.py:attr'), a checkpoint, a config.json, a directory or hf:ID",
    )
    parser.add_argument(
        "--device",
        choices=("meta", "cpu"),
        default="meta",
        help="where model code is built (and run): meta (default, allocates nothing) or cpu (real tensors)",
    )
    _add_output_options(parser, ("table", "json", "csv", "markdown", "html"))
    parser.add_argument("--depth", type=int, metavar="N", help=depth_help)
    parser.add_argument("--tensors", action="store_true", help="also show one row per tensor")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--max-params", metavar="N", help="fail with exit 3 above N parameters (125M, 7B, 1.5e9)")
    parser.add_argument(
        "--max-bytes",
        metavar="SIZE",
        help="fail with exit 3 above SIZE of parameters + buffers (+ quantization) (2GiB, 500MB)",
    )


def _add_memory_options(parser: argparse.ArgumentParser) -> None:
    from ._memory import OPTIMIZERS, PRECISIONS

    parser.add_argument(
        "target",
        metavar="TARGET",
        help="model code ('package.module:attr', 'file.py:attr'), a checkpoint, a config.json, a directory or hf:ID",
    )
    parser.add_argument(
        "--device",
        choices=("meta", "cpu"),
        default="meta",
        help="where model code is built: meta (default) or cpu; the forward for the activations runs on meta",
    )
    _add_output_options(parser, ("table", "json", "csv", "markdown", "html"))
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar on stderr")
    work = parser.add_argument_group("what runs")
    work.add_argument("--train", action="store_true", help="plan training (default: inference)")
    work.add_argument("--batch", type=int, metavar="B", help="sequences (or samples) per device (default: 1)")
    work.add_argument(
        "--context",
        "--seq",
        dest="seq",
        type=int,
        metavar="T",
        help="tokens per sequence: sizes the KV cache and the forward that measures the activations",
    )
    work.add_argument(
        "--input-size",
        action="append",
        metavar="SHAPE",
        help="instead of --seq: an input's shape, batch first (8,3,224,224); repeat for several inputs; token ids "
        "first (8,4096 with --input-dtype long) size the KV cache too",
    )
    work.add_argument(
        "--input-dtype",
        action="append",
        metavar="DTYPE",
        help="an input's dtype (the model's float dtype by default; long: ids)",
    )
    inference = parser.add_argument_group("inference")
    inference.add_argument("--dtype", metavar="DTYPE", help="the weights' dtype or format (default: as stored)")
    inference.add_argument(
        "--kv-dtype",
        metavar="DTYPE",
        help="the KV cache's dtype (default: what the model computes in: --dtype or the stored dtype when a float, "
        "else bf16)",
    )
    inference.add_argument(
        "--keep-fp32",
        action="append",
        default=[],
        metavar="PATTERN",
        help="keep tensors whose name matches in float32 (*norm*, *.bias, *embed*); repeat for several",
    )
    training = parser.add_argument_group("training")
    training.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw", help="(default: adamw)")
    training.add_argument("--precision", choices=PRECISIONS, default="bf16-mixed", help="(default: bf16-mixed)")
    training.add_argument(
        "--grad-checkpointing", action="store_true", help="checkpoint the repeated blocks (activations estimated)"
    )
    devices = parser.add_argument_group("devices")
    devices.add_argument("--gpus", type=int, metavar="N", help="devices in all (default: --tp, or 1)")
    devices.add_argument(
        "--zero", type=int, choices=(0, 1, 2, 3), default=0, help="ZeRO stage (3 = FSDP full shard; default: 0)"
    )
    devices.add_argument(
        "--offload-optimizer", action="store_true", help="optimizer states in host memory (with --zero 1, 2 or 3)"
    )
    devices.add_argument("--tp", type=int, default=1, metavar="N", help="tensor-parallel degree (default: 1)")
    devices.add_argument(
        "--device-memory", metavar="SIZE", help="memory per device (80GiB): exit 3 with what to cut when over it"
    )
    hf = parser.add_argument_group("Hugging Face configs and checkpoints")
    hf.add_argument("--model-class", metavar="NAME", help="transformers class to build (default: architectures[0])")
    hf.add_argument(
        "--trust-remote-code", action="store_true", help="allow a config's custom model code to run (off by default)"
    )
    parser.set_defaults(exclude_embeddings=False)


def _add_diff_options(parser: argparse.ArgumentParser) -> None:
    from .render.diff import DIFF_FORMATS

    for side in ("a", "b"):
        parser.add_argument(
            side, metavar=side.upper(), help="a model: code, a checkpoint, a config.json, a directory or hf:ID"
        )
    for side in ("a", "b"):
        parser.add_argument(
            f"--args-{side}",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"a keyword argument for {side.upper()}'s model code; repeat for several",
        )
    parser.add_argument(
        "--device", choices=("meta", "cpu"), default="meta", help="where model code is built (default: meta)"
    )
    parser.add_argument("--depth", type=int, default=2, metavar="N", help="module depth to show (default: 2)")
    parser.add_argument("--all", action="store_true", help="also show the modules that are the same")
    _add_output_options(parser, DIFF_FORMATS)
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar on stderr")
    hf = parser.add_argument_group("Hugging Face configs and checkpoints")
    hf.add_argument(
        "--from-config", action="store_true", help="build checkpoints from the config.json beside them instead"
    )
    hf.add_argument("--model-class", metavar="NAME", help="transformers class to build (default: architectures[0])")
    hf.add_argument(
        "--trust-remote-code", action="store_true", help="allow a config's custom model code to run (off by default)"
    )


def _add_config_options(parser: argparse.ArgumentParser, *, from_config_help: str) -> None:
    """What inspect and summary share beyond ``_add_model_options``: --explain, and the Hugging Face options with a
    config beside its weights (--from-config, --check)."""
    parser.add_argument(
        "--explain", action="store_true", help="show each layer's formula next to its count, checked against it"
    )
    hf = _add_hf_options(parser)
    hf.add_argument("--from-config", action="store_true", help=from_config_help)
    hf.add_argument(
        "--check", action="store_true", help="compare the weights with the model config.json describes (exit 1 if not)"
    )


def _add_hf_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    hf = parser.add_argument_group("Hugging Face configs and checkpoints")
    hf.add_argument("--model-class", metavar="NAME", help="transformers class to build (default: architectures[0])")
    hf.add_argument(
        "--trust-remote-code", action="store_true", help="allow a config's custom model code to run (off by default)"
    )
    hf.add_argument(
        "--exclude-embeddings",
        action="store_true",
        help="also count the parameters without input embeddings and an untied output head",
    )
    return hf


def _add_output_options(parser: argparse.ArgumentParser, formats: tuple[str, ...], *, units: bool = True) -> None:
    """--format, --output, and --units where the output has sizes to write (not the dtype table's bytes per
    element)."""
    parser.add_argument(
        "--format",
        choices=formats,
        default=None,
        help="output format (default: the --output file's by its extension, .json .csv .md .html; else table, rich in "
        "a terminal, plain text otherwise)",
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout (- for stdout)")
    parser.set_defaults(formats=formats)
    if units:
        parser.add_argument(
            "--units", choices=("iec", "si"), default="iec", help="byte units: iec (KiB, MiB; default) or si (kB, MB)"
        )


# the format an --output file's extension names, where --format is not given
_FORMAT_OF_EXTENSION = {".json": "json", ".csv": "csv", ".md": "markdown", ".markdown": "markdown", ".html": "html",
                        ".htm": "html"}  # fmt: skip


def _format(options: argparse.Namespace) -> str:
    """--format, or where it is not given the format the --output file's extension names among the command's
    (``-o size.json`` writes JSON), else ``table``."""
    if options.format is not None:
        return str(options.format)
    output = options.output
    named = _FORMAT_OF_EXTENSION.get(Path(output).suffix.lower(), "") if output and output != "-" else ""
    if named and named not in options.formats:
        raise UsageError(f"--output {output}: {options.command} writes no {named} ({', '.join(options.formats)}); give "
                         "--format to write one of those to it")  # fmt: skip
    return named or "table"


def _add_quiet_without_progress(parser: argparse.ArgumentParser) -> None:
    """--quiet for a command that shows no progress: a script passes it to every command."""
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="accepted as by the other commands (no progress here)"
    )


@contextlib.contextmanager
def _model_output_to_stderr() -> Iterator[None]:
    """Within the block, what the model's code writes to stdout goes to stderr: stdout carries the report, which
    must stay parseable. Python's prints, and, where stdout is a real descriptor, what is written to it below Python
    (a C extension's printf, a child process such as a compiler's) as well, its C buffer flushed before stdout is
    given back."""
    stdout = sys.stdout
    if stdout is not None:  # None: started with stdout closed, writing to --output
        stdout.flush()
    saved = _descriptor_kept(1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            # what model code wrote to the stream itself (sys.__stdout__, kept by a module imported before) is in its
            # buffer: out with it while descriptor 1 is still stderr
            with contextlib.suppress(OSError, ValueError):
                stdout.flush()
            _flush_c_stdio()
            os.dup2(saved, 1)
            os.close(saved)


def _descriptor_kept(descriptor: int) -> int | None:
    """A copy of ``descriptor`` kept aside, with stderr's put in its place; None where either is not open or
    stdout is not the process's descriptor 1 (captured in a test)."""
    try:
        if sys.stdout is None or sys.stdout.fileno() != descriptor:
            return None
        saved = os.dup(descriptor)
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    try:
        os.dup2(2, descriptor)
    except OSError:  # stderr is closed
        os.close(saved)
        return None
    return saved


def _flush_c_stdio() -> None:
    """Flush the C library's stdout buffer, which would otherwise reach the report's descriptor at exit."""
    import ctypes  # here: 1.5 ms, not paid by --help, --version or formula

    with contextlib.suppress(OSError, AttributeError, TypeError):  # no C library to load by that name (Windows)
        ctypes.CDLL(None).fflush(None)


def _check_output(output: str | None, targets: Sequence[str] = ()) -> None:
    """Refuse, before any work (a model can take minutes to build), an --output that names no file: empty
    (``-o "$UNSET"``), ending in ``/``, which names a directory (pathlib drops the ``/``: ``reports/`` would make a
    file ``reports``), a directory, or a file in a directory that does not exist; and one that would replace a file
    the report may not: read-only to the user, one ``targets`` are read from, or one that holds weights. Writing
    checks again: the directory may go meanwhile, and model code's imports are known once it has run."""
    if output == "":
        raise UsageError("--output needs a file name (or - for stdout)")
    if output is None or output == "-":
        return
    if output.endswith(("/", os.sep)):
        raise UsageError(f"cannot write {output}: it names a directory")
    path = Path(output)
    try:
        if path.is_dir():
            raise UsageError(f"cannot write {path}: it is a directory")
        if not path.is_symlink() and not path.parent.is_dir():  # a link is written through to where it leads
            raise UsageError(f"cannot write {path}: no such directory {path.parent}")
    except OSError:
        return  # a name too long, a path that cannot be looked at: writing it says why
    if _descriptor(path) is None:  # /dev/stdout is written to as the shell opened it
        _refuse_read_only(path)
        _refuse_output_over_input(output, targets)  # the files known now; model code's imports once it has run
        held = _weights_held(path)
        if held:
            raise UsageError(f"--output {path}: it holds {held}, which the report would replace; write it to another "
                             "file")  # fmt: skip


# a file's first bytes, and what they say it holds: torch.save's zip archive or a pickle, GGUF's magic
_PICKLED = "a pickle (torch.save writes one)"
_WEIGHTS_MAGIC = ((b"GGUF", "a GGUF model"), (b"PK\x03\x04", "a zip archive (torch.save writes one)"),
                  *((bytes([0x80, protocol]), _PICKLED) for protocol in (2, 3, 4, 5)))  # fmt: skip


def _weights_held(path: Path) -> str:
    """What an existing file holds, where its first bytes say it is weights, or may be (a safetensors header, GGUF's
    magic, a zip archive or a pickle, as torch.save writes), whatever its name: a report named ``notes.bin`` may be
    replaced; empty for any other file."""
    try:
        if not path.is_file():
            return ""
        with path.open("rb") as file:
            head = file.read(9)
    except OSError:
        return ""
    if len(head) == 9 and head[8:] == b"{" and 0 < int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors weights"
    return next((held for magic, held in _WEIGHTS_MAGIC if head.startswith(magic)), "")


def _refuse_read_only(path: Path) -> None:
    """Refuse to replace a file the user may not write (``chmod a-w report.json``), as the shell's ``>`` does:
    the new file is renamed over the old one, which only asks for the directory's permission."""
    if not path.is_file():
        return
    try:  # opened for writing, not truncated: the kernel's answer (permissions, ACLs, a read-only file system)
        os.close(os.open(path, os.O_WRONLY))
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror or error}") from None


def _write_atomically(path: Path, text: str) -> None:
    """Write all of ``text`` or nothing: an existing file is only replaced by a complete new one, keeping its mode.

    A symlink is written through (its target replaced, the link kept); a FIFO, a device or a terminal is written to
    as it is, since replacing it would swap the node for a file; /dev/stdout, /dev/stderr and /dev/fd/N are written
    to through the descriptor they name, as it is open.
    """
    try:
        descriptor = _descriptor(path)
        if descriptor is not None:
            # a copy of the descriptor as the shell opened it (``>> ci.log`` appends); opening the name again would
            # truncate the file it leads to, and replacing it would lose what was there. A reader gone (``| head``)
            # ends the output, not the command, as on stdout.
            with contextlib.suppress(BrokenPipeError), os.fdopen(os.dup(descriptor), "w", encoding="utf-8") as out:
                out.write(text)
            return
        _write_through(path, text)
    except OSError as error:  # a name too long, a path that cannot be looked at
        reason = error.strerror or str(error)
        raise UsageError(f"cannot write {path}: {reason}") from None
    except OverflowError:  # /dev/fd/N of an N past any descriptor
        raise UsageError(f"cannot write {path}: {os.strerror(errno.EBADF)}") from None


_DESCRIPTOR_NAME = re.compile(r"/(?:dev/fd|proc/self/fd)/([0-9]+)")


def _descriptor(path: Path) -> int | None:
    """The open descriptor that ``path`` names: /dev/stdout, /dev/stderr, /dev/fd/N or /proc/self/fd/N."""
    name = {"/dev/stdout": "/dev/fd/1", "/dev/stderr": "/dev/fd/2"}.get(str(path), str(path))
    match = _DESCRIPTOR_NAME.fullmatch(name)
    return None if match is None else int(match.group(1))


def _write_through(path: Path, text: str) -> None:
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a directory")
    if path.is_symlink():
        try:
            path = Path(os.path.realpath(path, strict=True))
        except FileNotFoundError:  # a link to a file not made yet: it is made there
            path = Path(os.path.realpath(path))
        except OSError as error:  # not Path.resolve, which stopped telling a loop apart in Python 3.13
            if error.errno == errno.ELOOP:
                raise UsageError(f"cannot write {path}: its symbolic links make a loop") from None
            raise
    if path.exists() and not path.is_file():
        with path.open("w", encoding="utf-8") as out:
            out.write(text)
        return
    _refuse_read_only(path)
    directory = path.parent
    if not directory.is_dir():
        raise UsageError(f"cannot write {path}: no such directory {directory}")
    # not named after the file: the longest name a file may have would leave no room for the rest
    temporary = directory / f".paramscope.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        # os.open applies the umask, as a plain open() would; mkstemp would force mode 0600.
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w", encoding="utf-8") as out:
            out.write(text)
        if path.exists():
            shutil.copymode(path, temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise


# The checkpoints a directory (or a sharded checkpoint's index) is read from, besides its config.json.
_CHECKPOINT_SUFFIXES = (".safetensors", ".index.json", ".bin", ".pt", ".pth", ".ckpt", ".gguf")


def _files_read(target: str) -> tuple[list[Path], list[Path]]:
    """The files ``target`` is read from, its own and the others: model code's file, and the modules it imported
    (every module imported by then: which target imported one is not known); a checkpoint or config itself (with the
    other parts of a split GGUF model) and the config.json beside it (a summary builds the model from it, --check
    compares with it), and in a directory or beside a sharded checkpoint's index its config.json and checkpoints."""
    from .sources.gguf import split_parts
    from .sources.target import is_code_target

    if target.startswith("hf:"):
        return [], []
    if is_code_target(target) and not Path(target).exists():
        from .sources.code import neighbour_modules

        # every module imported so far: the model's code imports its neighbours (and a package's), and those of a
        # file in another folder may have been set aside for a second file's own
        location = target.rpartition(":")[0]
        imported = [Path(file) for module in [*sys.modules.values(), *neighbour_modules()]
                    if isinstance(file := getattr(module, "__file__", None), str)]  # fmt: skip
        return [Path(location)] if location.endswith(".py") else [], imported
    path = Path(target)
    directory = path if path.is_dir() else path.parent
    read = [directory / "config.json"] + ([] if path.is_dir() else [path, *split_parts(path)[0]])
    if path.is_dir() or path.name.endswith(".index.json"):
        read += [item for item in directory.iterdir() if item.name.endswith(_CHECKPOINT_SUFFIXES)]
    return read, []


def _refuse_output_over_input(output: str, targets: Sequence[str]) -> None:
    """--output must not be a file the targets are read from: the report would replace the model (lost data)."""
    try:
        written = os.stat(output)
    except OSError:
        return  # no such file yet (or none to look at: writing to it fails with a message of its own)
    if not stat.S_ISREG(written.st_mode):
        return
    own: list[tuple[str, list[Path]]] = []
    imported: list[tuple[str, list[Path]]] = []
    for target in targets:
        try:
            files, modules = _files_read(target)
        except OSError:  # a directory that cannot be listed: the target's own error says so
            continue
        own.append((target, files))
        imported.append((target, modules))
    # each target's own files first: a module imported for one model code target is among another's imports too
    for target, files in [*own, *imported]:
        for item in files:  # model code: every module imported, a stat each
            try:
                same = os.path.samestat(os.stat(item), written)
            except OSError:
                continue
            if same:
                raise UsageError(f"--output {output}: the report would replace a file {target} is read from; write "
                                 "it to another file")  # fmt: skip


def _deliver(
    options: argparse.Namespace, stdout: IO[str], text: Callable[[], str], document: Callable[[], Document]
) -> None:
    """Write the output to --output (atomically) or stdout (no --output, or ``-``, as is the custom); a table on a
    terminal is drawn with rich."""
    if options.output and options.output != "-":
        # checked now, with model code imported: a module's file is known (the report is made, nothing written yet)
        _refuse_output_over_input(options.output, [getattr(options, key) for key in ("target", "a", "b")
                                                   if getattr(options, key, None)])  # fmt: skip
        _write_atomically(Path(options.output), text())
    elif options.format == "table" and stdout.isatty():
        from .render import write_document

        _to_stdout(stdout, lambda: write_document(document(), stdout, "table"))
    else:
        _to_stdout(stdout, lambda: stdout.write(text()))


def _to_stdout(stdout: IO[str], write: Callable[[], object]) -> None:
    """``write()`` and flush: a reader gone (``paramscope ... | head``) ends the output, not the command, whose exit
    code (a budget exceeded, a diff's verdict) still follows."""
    try:
        write()
        stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
    except UnicodeEncodeError as error:
        # stdout in an encoding that cannot hold the report (PYTHONIOENCODING=ascii, a Windows code page when
        # redirected): the report is written in one go, encoded whole first, so none of it went out
        encoding = getattr(stdout, "encoding", None) or error.encoding
        character = error.object[error.start]
        raise UsageError(
            f"stdout's encoding ({encoding}) cannot write U+{ord(character):04X}, which the report holds: set "
            "PYTHONIOENCODING=utf-8, or write the report with --output FILE (UTF-8)"
        ) from None


def _discard_stdout() -> None:
    """Send what is left for stdout nowhere: Python's flush at exit would otherwise raise BrokenPipeError again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _budget(options: argparse.Namespace) -> Budget:
    from ._budget import parse_budget

    if options.depth is not None and options.depth < 0:
        raise UsageError(f"--depth must be 0 or more, not {options.depth}")
    return parse_budget(options.max_params, options.max_bytes)


def _request(options: argparse.Namespace, **extra: Any) -> Request:
    from ._arguments import parse_arguments
    from .sources.target import Request

    return Request(
        arguments=parse_arguments(options.args),
        device=options.device,
        import_on_device=True,  # this process ends with the report: module-level models may be built on meta
        quiet=options.quiet,
        model_class=options.model_class,
        trust_remote_code=options.trust_remote_code,
        exclude_embeddings=options.exclude_embeddings,
        **extra,
    )


def _finish(options: argparse.Namespace, stdout: IO[str], report: Report, view: View, budget: Budget) -> int:
    from ._budget import check_budget
    from ._check import check_findings
    from .render import render
    from .render._layout import layout

    _deliver(options, stdout, lambda: render(report, options.format, view), lambda: layout(report, view))
    check = report.check
    if check is None or check.ok:
        check_budget(report, budget, options.units)
        return EXIT_OK
    complaint = f"paramscope: check failed: {check_findings(check)} against {printable(check.against)}"
    if options.format == "csv":  # its rows are modules: no place for findings
        _complain(f"{complaint} (--format table or json lists them)")
    try:
        check_budget(report, budget, options.units)
    except ParamscopeError:  # exceeded (exit 3) or undecided (2): that code speaks for the budget alone
        if options.format != "csv":  # the failed check is said here too
            _complain(complaint)
        raise
    return EXIT_CHECK_FAILED


def _run_inspect(options: argparse.Namespace, stdout: IO[str]) -> int:
    from .render import View
    from .sources.target import load_report

    budget = _budget(options)
    request = _request(options, explain=options.explain, from_config=options.from_config, check=options.check)
    with _model_output_to_stderr():
        report = load_report(options.target, request)
    depth = options.depth if options.depth is not None else (_ALL_DEPTHS if options.explain else 2)
    view = View(depth=depth, tensors=options.tensors, units=options.units, explain=options.explain)
    return _finish(options, stdout, report, view, budget)


def _shape(text: str) -> tuple[int, ...]:
    """An --input-size value as a shape: dimensions of 1 or more that torch can hold (an int64)."""
    # as shapes are printed: in brackets, with spaces after the commas, Python's (16,) for one dimension; anything
    # else is not a shape (an empty dimension "1,,3", or "1 4", would read as another shape)
    inner = text.strip()
    bracketed = inner[:1] + inner[-1:] in ("()", "[]")
    parts = [part.strip() for part in (inner[1:-1] if bracketed else inner).split(",")]
    if bracketed and len(parts) > 1 and not parts[-1]:
        parts.pop()
    if not all(part.isascii() and part.isdigit() for part in parts):
        raise UsageError(f"--input-size {text!r} is not a shape: write it as 1,3,224,224")
    shape = tuple(int(part) for part in parts)
    if not shape:
        raise UsageError(f"--input-size {text!r} is not a shape: write it as 1,3,224,224")
    if 0 in shape:  # a shape torch holds, of no values: no forward of it tells anything
        raise UsageError(f"--input-size {text!r}: each dimension must be 1 or more (an input of no values)")
    too_large = next((dim for dim in shape if dim > MAX_DIMENSION), None)
    if too_large is not None:
        raise UsageError(f"--input-size {text!r}: dimension {too_large} is more than torch's limit, {MAX_DIMENSION:,}")
    return shape


def _check_config_options(options: argparse.Namespace) -> None:
    """--from-config and --check in a summary: both need a config.json, and --check weights beside it."""
    from .sources.target import builds_model, is_code_target, no_weights_to_check

    target = options.target
    if not (options.from_config or options.check):
        return
    if not target.startswith("hf:") and is_code_target(target) and not Path(target).exists():
        raise UsageError(f"{target}: --from-config and --check need a config.json, not model code")
    if options.check and builds_model(target):
        raise no_weights_to_check(target)


def _run_summary(options: argparse.Namespace, stdout: IO[str]) -> int:
    from ._embeddings import without_embeddings
    from ._summary import input_dtypes, summarize, summary_inputs
    from .render import View
    from .sources.module import inspect_module
    from .sources.target import load_model, load_report

    budget = _budget(options)
    if not options.input_size:
        raise UsageError("summary runs a forward pass: give its inputs with --input-size (e.g. 1,3,224,224 for an "
                         "image, 1,128 for 128 token ids)")  # fmt: skip
    shapes = [_shape(text) for text in options.input_size]
    input_dtypes(options.input_dtype, len(shapes))  # before the model is built, which may take a while
    _check_config_options(options)
    depth = options.depth if options.depth is not None else 3
    request = _request(options)
    with _model_output_to_stderr():
        model, kind, notes, commit = load_model(options.target, request)
        report = inspect_module(model, target=options.target, device=options.device, explain=options.explain)
        report = replace(report, source=replace(report.source, kind=kind), notes=(*notes, *report.notes))
        if options.check:
            # inspect's --check as it is: the checkpoint's headers against the model config.json describes, of the
            # commit the model was built from (a Hub branch is not resolved again)
            checked = load_report(
                options.target,
                replace(request, check=True, from_config=False, exclude_embeddings=False, commit=commit),
            )
            if checked.check is not None:
                report = replace(report, check=checked.check, notes=(*report.notes, *checked.check.notes))
        if request.exclude_embeddings:
            report = without_embeddings(report)
        args, kwargs, report = summary_inputs(model, report, shapes, None, options.input_dtype, options.device)
        report = summarize(
            model, report, args, kwargs, depth=depth, device=options.device, mode=options.mode, quiet=options.quiet
        )
    view = View(depth=depth, tensors=options.tensors, units=options.units, explain=options.explain)
    return _finish(options, stdout, report, view, budget)


def _run_memory(options: argparse.Namespace, stdout: IO[str]) -> int:
    from ._planner import plan_for
    from .render import View, render
    from .render._layout import layout

    shapes = [_shape(text) for text in options.input_size] if options.input_size else None
    with _model_output_to_stderr():
        report = plan_for(
            options.target, _request(options), train=options.train, dtype=options.dtype, kv_dtype=options.kv_dtype,
            batch=options.batch, tokens=options.seq, optimizer=options.optimizer, precision=options.precision,
            grad_checkpointing=options.grad_checkpointing, gpus=options.gpus, zero=options.zero, tp=options.tp,
            offload_optimizer=options.offload_optimizer, device_memory=options.device_memory,
            keep_fp32=options.keep_fp32, input_size=shapes, input_dtypes=options.input_dtype, units=options.units,
        )  # fmt: skip
    view = View(units=options.units)
    _deliver(options, stdout, lambda: render(report, options.format, view), lambda: layout(report, view))
    plan = report.memory
    if plan is not None and plan.fits is False:
        # by how much, then what would cut it: one line, as a budget's violations are, for a CI log (and for CSV,
        # whose rows hold no notes)
        raise BudgetExceededError("; ".join(plan.advice))
    if plan is not None and plan.fits is None and plan.settings.device_memory is not None:
        from ._units import format_bytes

        # as for a budget on lower bounds: neither "fits" nor "does not fit" would be true
        available = format_bytes(plan.settings.device_memory, options.units)
        why = []
        if not report.totals.complete:
            why.append(f"the model has tensors of unknown size ({' and '.join(report.unknown_sizes)})")
        if plan.left_out:
            why.append(f"the plan leaves out the {' and '.join(plan.left_out)} (the notes say why)")
        bound = "its total is only a lower bound" if plan.left_out else "the plan's items are only lower bounds"
        raise IncompleteCountError(f"cannot tell whether it fits in {available}: {', and '.join(why)}, so {bound}")
    return EXIT_OK


def _run_diff(options: argparse.Namespace, stdout: IO[str]) -> int:
    from ._api import diff
    from ._arguments import parse_arguments
    from .render.diff import diff_document, render_diff, verdict

    if options.depth < 0:
        raise UsageError(f"--depth must be 0 or more, not {options.depth}")
    with _model_output_to_stderr():
        found = diff(
            options.a,
            options.b,
            arguments_a=parse_arguments(options.args_a),
            arguments_b=parse_arguments(options.args_b),
            device=options.device,
            from_config=options.from_config,
            model_class=options.model_class,
            trust_remote_code=options.trust_remote_code,
            quiet=options.quiet,
        )
    settings = {"depth": options.depth, "everything": options.all, "units": options.units}
    _deliver(
        options,
        stdout,
        lambda: render_diff(found, options.format, **settings),
        lambda: diff_document(found, **settings),
    )
    if not found.decided:
        # as for a budget: the figures are lower bounds, so neither 0 nor 1 would be true
        raise IncompleteCountError(verdict(found))
    return EXIT_OK if found.equal else EXIT_CHECK_FAILED


def _run_formula(options: argparse.Namespace, stdout: IO[str]) -> int:
    from . import formulas
    from ._arguments import parse_arguments
    from .render import draw
    from .render._tables import formula_document, formula_list_document

    document: Callable[[], Document]
    if options.list:
        if options.layer is not None or options.args:
            raise UsageError("--list takes no LAYER or arguments")
        entries = list(formulas.REGISTRY.values())
        document = functools.partial(formula_list_document, entries)
        data: object = [
            {"layer": e.name, "kind": e.kind, "arguments": [a.describe() for a in e.arguments.values()]}
            for e in entries
        ]
    else:
        if options.layer is None:
            raise UsageError("name a LAYER (e.g. conv2d), or use --list to see them all")
        entry = formulas.lookup(options.layer)
        arguments = parse_arguments(options.args)
        result = entry(**arguments)
        document = functools.partial(formula_document, result, options.units)
        # the arguments the count depends on, as checked (ignored ones, such as stride, are left out)
        used = entry.accepted(arguments)
        # not the tensors: a formula lists them only when asked, as a stack of 10^12 layers has no list that fits
        counts = {"layer": result.layer, "params": result.params, "buffers": result.buffers, "text": result.text}
        data = {**counts, "arguments": used, "bytes": _dtype_bytes(result.params)}
    _deliver(
        options, stdout, lambda: _json(data) if options.format == "json" else draw(document(), options.format), document
    )
    return EXIT_OK


def _dtype_bytes(params: int) -> dict[str, int]:
    from . import dtypes as dtype_table

    return {name: dtype_table.lookup(name).packed_nbytes(params) for name in dtype_table.COMMON}


def _run_dtypes(options: argparse.Namespace, stdout: IO[str]) -> int:
    from . import dtypes as dtype_table
    from .render import draw
    from .render._tables import dtypes_document

    document = dtypes_document()
    data = [
        {**asdict(dtype), "block_bytes": dtype.storage_block_bytes}  # the table's 0 means "bits / 8"
        for dtype in dtype_table.iter_dtypes()
    ]
    _deliver(
        options,
        stdout,
        lambda: _json(data) if options.format == "json" else draw(document, options.format),
        lambda: document,
    )
    return EXIT_OK


def _json(data: object) -> str:
    from .render.json import dumps_by_line

    return dumps_by_line(data, allow_nan=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = _build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        options, extra = parser.parse_known_args(arguments)
        if options.command is None:  # no command: what argparse left over can only be options it does not know
            parser.error(f"unrecognized arguments: {' '.join(extra)}" if extra else "the following arguments are "
                         "required: COMMAND")  # fmt: skip
        # KEY=VALUE arguments for the target are what argparse leaves over, wherever they stand among the options.
        unknown = [item for item in extra if item.startswith("-") or not options.takes_arguments]
        if unknown:
            options.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        options.args = extra
        _check_output(options.output, [name for key in ("target", "a", "b") if (name := getattr(options, key, None))])
        if hasattr(options, "formats"):
            options.format = _format(options)
        if sys.stdout is None and options.output in (None, "-"):  # started with stdout closed (``>&-``)
            raise UsageError("stdout is closed: write the report to a file with --output FILE")
        handler: Callable[[argparse.Namespace, IO[str]], int] = options.handler
        # paramscope's arguments are its own: model code that parses the command line when imported (a training
        # script's argparse) sees none, as when it is imported by a script run with none
        given_argv, sys.argv = sys.argv, sys.argv[:1]
        try:
            return handler(options, sys.stdout)
        except SystemExit as exit_:
            # The model's code called sys.exit() where no source turned it into an error (building does): it must
            # not end paramscope silently with its own exit code.
            targets = [name for name in (getattr(options, key, None) for key in ("target", "a", "b")) if name]
            lines = str(exit_).strip().splitlines()
            message = f"the model's code exited: SystemExit: {lines[0] if lines else '(no message)'}"
            raise TargetError(f"{' or '.join(targets)}: {message}" if targets else message) from exit_
        finally:
            sys.argv = given_argv
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
    except BudgetExceededError as error:
        _complain(f"paramscope: budget exceeded: {_error_text(error)}")
        return EXIT_BUDGET
    except ParamscopeError as error:
        _complain(f"paramscope: error: {_error_text(error)}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _complain("paramscope: interrupted")
        return 130
    except MemoryError:
        # an input that asks for more memory than the machine has, where no source knew it to refuse it first
        _complain("paramscope: error: out of memory: the input asks for more than this machine can hold")
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader went away (`paramscope formula ... | head`): not an error worth a traceback.
        _discard_stdout()
        return EXIT_OK
    except OSError as error:
        # A path the target leads to that cannot be looked at (permission denied, a name too long), wherever the
        # sources ask the file system first: the file and the reason, as the sources' own errors give them.
        where = f"{error.filename}: " if error.filename is not None else ""
        _complain(f"paramscope: error: {printable(f'{where}{error.strerror or error}')}")
        return EXIT_ERROR


def run() -> int:
    """The console script and ``python -m paramscope``: :func:`main`, in a process that ends when it returns."""
    code = main()
    # What the model's code writes at exit (an atexit handler, a __del__, a thread it started) goes to stderr: stdout
    # holds the report alone, and JSON read from it must parse
    with contextlib.suppress(OSError, ValueError, AttributeError):  # a reader gone, stdout closed
        sys.stdout.flush()
    with contextlib.suppress(OSError):  # stderr closed: nothing to point it at
        os.dup2(2, 1)
    # Python's shutdown collects the garbage among every object still alive, torch's and transformers' a million of
    # them: 1.1 to 1.3 s of a 70B summary's 10. Frozen, they are left to the operating system, as the rest of the
    # process is (and as before, objects alive at exit are not promised a finalizer); atexit handlers still run.
    gc.freeze()
    return code


if __name__ == "__main__":
    raise SystemExit(run())
