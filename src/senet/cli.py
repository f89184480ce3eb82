"""The ``senet`` command: parse arguments, call one library function, print.

Heavy modules (Keras, TensorFlow) are imported inside each subcommand, so
``senet --help`` and ``senet --version`` answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys

from senet import __version__


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="senet",
        description="Squeeze-and-Excitation channel attention for Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"senet {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return int(args.handler(args) or 0)
    except CLIError as error:
        print(f"senet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"senet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
