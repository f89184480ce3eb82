"""The ``senet`` command: parse arguments, call one library function, print.

Heavy modules (Keras, TensorFlow) are imported inside each subcommand, so
``senet --help`` and ``senet --version`` answer at once.

The subcommands live by what they do: :mod:`senet.cli.training` (train, ablate, demo) and
:mod:`senet.cli.models` (evaluate, predict, explain, export, convert, bench), with what they
share in :mod:`senet.cli._common`. Adding a subcommand is local: write
``add_<name>(subparsers)`` that builds its parser and sets ``handler=_run_<name>``, write
``_run_<name>(args) -> int``, and list ``add_<name>`` in ``_SUBCOMMANDS``. A handler raises :class:`CLIError` (or lets the library raise ValueError,
``senet.data.DataError``, FileNotFoundError/OSError) for bad input: :func:`main` prints it
as one line on stderr and exits 2, without a traceback (``SENET_DEBUG=1`` shows it). A library
error that is a run stopping (:data:`EXIT_STATUS`) is reported the same way with its status.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from collections.abc import Callable

from senet import __version__
from senet._tf import TRAINING_COMMANDS, import_tensorflow_quietly, prefer_onednn
from senet.cli import models, training
from senet.cli._common import (
    BUILT_IN_KINDS,
    EXPLAIN_METHOD_CHOICES,
    CLIError,
    one_line_error,
    show_warning,
)
from senet.errors import (
    ClusterError,
    Terminated,
    TrainingDiverged,
    WorkerFailed,
    raise_on_sigterm,
)

__all__ = ["BUILT_IN_KINDS", "EXIT_STATUS", "EXPLAIN_METHOD_CHOICES", "CLIError", "main"]

#: The exit status of each of senet's errors that is not bad input (ValueError and OSError
#: exit 2): a run that stopped.
EXIT_STATUS = ((TrainingDiverged, 1), (ClusterError, 1), (WorkerFailed, 1))


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``senet train: error: ...``), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# One entry per subcommand; each adds its parser and sets `handler`.
_SUBCOMMANDS: list[Callable] = [
    training.add_demo,
    training.add_train,
    models.add_evaluate,
    models.add_predict,
    models.add_explain,
    models.add_export,
    training.add_ablate,
    models.add_bench,
    models.add_convert,
    models.add_serve,
]


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="senet",
        description="Squeeze-and-Excitation channel attention for Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"senet {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an error instead of one line (or SENET_DEBUG=1)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def _launches_workers(args) -> bool:
    return args.command == "train" and getattr(args, "workers", None) is not None


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    debug = args.debug or os.environ.get("SENET_DEBUG", "") not in ("", "0")
    shown = warnings.showwarning
    warnings.showwarning = show_warning  # one line, not file:line plus the source line
    # SIGTERM unwinds like Ctrl-C: locks released, temporary files removed, workers stopped
    replaced = raise_on_sigterm()
    if args.command in TRAINING_COMMANDS:
        prefer_onednn()
    try:
        # the `--workers` launcher only starts and watches processes: no TensorFlow there
        if not debug and not _launches_workers(args):
            import_tensorflow_quietly()
        return int(args.handler(args) or 0)
    except CLIError as error:
        print(f"senet {args.command}: error: {one_line_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        if isinstance(error, Terminated):
            print(f"senet {args.command}: terminated (SIGTERM)", file=sys.stderr)
            return 143
        print(f"senet {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as error:
        # bad user input surfacing from the library: DataError is a ValueError,
        # FileNotFoundError/PermissionError are OSErrors
        if debug:
            raise
        print(f"senet {args.command}: error: {one_line_error(error)}", file=sys.stderr)
        return 2
    except Exception as error:
        # a run that stopped (a NaN loss, its last good checkpoint kept; a failed worker) is
        # reported, not traced, with its exit status
        status = next((code for kind, code in EXIT_STATUS if isinstance(error, kind)), None)
        if debug or status is None:
            raise
        print(f"senet {args.command}: error: {one_line_error(error)}", file=sys.stderr)
        return status
    finally:
        warnings.showwarning = shown
        if replaced is not None:
            signal.signal(signal.SIGTERM, replaced)
