"""The ``paramscope`` command. ``main(argv)`` returns the exit code: 0 success, 2 bad input, 3 budget exceeded."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, NoReturn

from ._errors import BudgetExceededError, ParamscopeError, UsageError
from ._units import parse_bytes, parse_count
from ._version import __version__

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_BUDGET = 3

_MAIN_EXAMPLES = """\
examples:
  paramscope inspect paramscope.examples:resnet18
  paramscope inspect my_models.py:Net hidden=512 --depth 3
  paramscope inspect paramscope.examples:gpt2 --format json --output gpt2.json
  paramscope inspect paramscope.examples:gpt2 --max-params 125M   # exit 3 when over budget

exit codes: 0 success, 2 bad input or usage, 3 budget exceeded
"""

_INSPECT_EXAMPLES = """\
examples:
  paramscope inspect paramscope.examples:resnet18                 # built on meta: no weights allocated
  paramscope inspect paramscope.examples:resnet18 num_classes=10  # keyword arguments for the factory
  paramscope inspect path/to/models.py:build_model --device cpu   # code that needs real tensors
  paramscope inspect paramscope.examples:gpt2 --tensors           # one row per tensor
  paramscope inspect paramscope.examples:gpt2 --format markdown --units si
  paramscope inspect paramscope.examples:resnet18 --max-params 10M --max-bytes 40MiB

TARGET is model code: 'package.module:attr' or 'path/to/file.py:attr', where attr is an nn.Module instance, a
class, or a function returning one. KEY=VALUE arguments are passed to it as keyword arguments (values are Python
literals, true/false/none, else strings).
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit code 2, like every other paramscope error."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"paramscope: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_ERROR)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="paramscope",
        description="Exact parameter counts, sizes and memory of PyTorch models.",
        epilog=_MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"paramscope {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    inspect = commands.add_parser(
        "inspect",
        usage="paramscope inspect TARGET [KEY=VALUE ...] [options]",
        help="count the parameters and buffers of a model",
        description="Count every parameter and buffer of a model, exactly: tied weights once, by dtype, by module.",
        epilog=_INSPECT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inspect.add_argument("target", metavar="TARGET", help="the model: 'package.module:attr' or 'file.py:attr'")
    inspect.add_argument(
        "--device",
        choices=("meta", "cpu"),
        default="meta",
        help="where model code is built: meta (default, allocates nothing) or cpu (real tensors)",
    )
    inspect.add_argument(
        "--format",
        choices=("table", "json", "csv", "markdown"),
        default="table",
        help="output format (default: table; rich in a terminal, plain text otherwise)",
    )
    inspect.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout")
    inspect.add_argument("--depth", type=int, default=2, metavar="N", help="module tree depth to show (default: 2)")
    inspect.add_argument("--tensors", action="store_true", help="also show one row per tensor")
    inspect.add_argument(
        "--units", choices=("iec", "si"), default="iec", help="byte units: iec (KiB, MiB; default) or si (kB, MB)"
    )
    inspect.add_argument("--max-params", metavar="N", help="fail with exit 3 above N parameters (125M, 7B, 1.5e9)")
    inspect.add_argument(
        "--max-bytes", metavar="SIZE", help="fail with exit 3 above SIZE of parameters + buffers (2GiB, 500MB)"
    )
    inspect.set_defaults(handler=_run_inspect)
    return parser


def _write_atomically(path: Path, text: str) -> None:
    """Write all of ``text`` or nothing: an existing file is only replaced by a complete new one, keeping its mode."""
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a directory")
    directory = path.parent
    if not directory.is_dir():
        raise UsageError(f"cannot write {path}: no such directory {directory}")
    temporary = directory / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        # os.open applies the umask, as a plain open() would; mkstemp would force mode 0600.
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w", encoding="utf-8") as out:
            out.write(text)
        if path.exists():
            shutil.copymode(path, temporary)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _run_inspect(options: argparse.Namespace, stdout: IO[str]) -> int:
    from . import _api
    from ._budget import Budget, check_budget
    from .render import View, render, write_report
    from .sources.code import parse_arguments

    if options.depth < 0:
        raise UsageError(f"--depth must be 0 or more, not {options.depth}")
    budget = Budget(
        max_params=None if options.max_params is None else parse_count(options.max_params),
        max_bytes=None if options.max_bytes is None else parse_bytes(options.max_bytes),
    )
    report = _api.inspect(options.target, parse_arguments(options.args), device=options.device)
    view = View(depth=options.depth, tensors=options.tensors, units=options.units)
    if options.output:
        _write_atomically(Path(options.output), render(report, options.format, view))
    else:
        write_report(report, view, stdout, options.format)
    check_budget(report, budget, options.units)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = _build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        options, extra = parser.parse_known_args(arguments)
        # KEY=VALUE arguments for the target are what argparse leaves over, wherever they stand among the options.
        unknown = [item for item in extra if item.startswith("-")]
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        options.args = extra
        handler: Callable[[argparse.Namespace, IO[str]], int] = options.handler
        return handler(options, sys.stdout)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
    except BudgetExceededError as error:
        sys.stderr.write(f"paramscope: budget exceeded: {error}\n")
        return EXIT_BUDGET
    except ParamscopeError as error:
        sys.stderr.write(f"paramscope: error: {error}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("paramscope: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (`paramscope ... | head`): not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
