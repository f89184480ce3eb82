"""What the subcommands share: the one-line error (:class:`CLIError`, :func:`one_line_error`),
help texts, the model-file and model-input flags, and warnings printed as one line."""

from __future__ import annotations

import argparse
import sys

from senet.config import (
    ALLOW_H5_HELP,
)

# The built-in kinds of senet.kinds(), for --help (which imports no Keras); tests/test_cli.py
# checks they agree. --attention takes any registered kind, those packages add through the
# senet.attention entry point included: the library checks the name when the command runs.
BUILT_IN_KINDS = ("se", "eca", "sse", "scse", "cbam")


ATTENTION_HELP = (
    f"{', '.join(BUILT_IN_KINDS)}, or a kind a package adds (entry point group senet.attention)"
)


# senet.explain_photos.EXPLAIN_METHODS
EXPLAIN_METHOD_CHOICES = ("gradcam", "gradxact", "gradcam++", "intgrad", "attention")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


MODEL_HELP = (
    "a .keras file (e.g. RUN_DIR/model.keras), or one exported by `senet export`: a .tflite "
    "or .onnx file or a SavedModel directory (the .onnx runtime needs senet[export])"
)


def add_allow_h5(parser) -> None:
    parser.add_argument("--allow-h5", action="store_true", help=ALLOW_H5_HELP)


def add_allow_savedmodel(parser) -> None:
    parser.add_argument(
        "--allow-savedmodel",
        action="store_true",
        help="accept a SavedModel directory; its TensorFlow graph can run any op, file "
        "writes included, so only for models you trust (.tflite and .onnx need no flag)",
    )


def add_model_inputs(parser) -> None:
    """What senet cannot read from a foreign classifier: class names, value range, colour."""
    parser.add_argument(
        "--class-names",
        metavar="A,B,C",
        type=class_names_arg,
        help="the model's output names, comma separated (default: its run's, else FER2013's "
        "seven for a 7-output model)",
    )
    parser.add_argument(
        "--input-range",
        choices=("0,1", "-1,1"),
        help="the values the model takes: 0,1 (default, senet's) or -1,1 (the mini-Xception's; "
        "write --input-range=-1,1)",
    )
    colour = parser.add_mutually_exclusive_group()
    colour.add_argument(
        "--grey",
        dest="colour",
        action="store_const",
        const="grey",
        help="feed grey images (repeated over a 3-channel input); default for 1-channel models",
    )
    colour.add_argument(
        "--rgb",
        dest="colour",
        action="store_const",
        const="rgb",
        help="feed colour images; default for 3-channel models",
    )


def model_input_options(args) -> dict:
    """The options :func:`add_allow_h5` and :func:`add_model_inputs` declare, as the
    keyword arguments of ``evaluate``, ``iter_predictions`` and ``iter_explanations``."""
    options = {
        "allow_h5": args.allow_h5,
        "class_names": args.class_names,
        "input_range": args.input_range,
        "colour": args.colour,
    }
    if hasattr(args, "allow_savedmodel"):  # commands that run exported models
        options["allow_savedmodel"] = args.allow_savedmodel
    return options


def class_names_arg(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected distinct, non-empty names separated by commas, got {text!r}"
        )
    return names


def print_warnings(command: str, caught: list) -> None:
    """Print and forget the warnings recorded so far, one line each on stderr."""
    for warning in caught:
        print(f"senet {command}: warning: {one_line_error(warning.message)}", file=sys.stderr)
    caught.clear()


def one_line_error(error: BaseException) -> str:
    """``error`` in one line of at most ~600 characters, arrays and tensors left out
    (:func:`senet.errors.one_line`); says so when something was left out."""
    from senet.errors import one_line, printable

    text = str(error).strip() or type(error).__name__
    if isinstance(error, KeyError):
        text = f"missing key {text}"
    line = one_line(text)
    if line != printable(" ".join(text.split())):
        line += " [shortened: --debug shows all]"
    return line


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print a Python warning as one line: ``senet: warning: MESSAGE`` (control characters
    escaped: a warning may quote a name from a file)."""
    from senet.errors import printable

    text = printable(" ".join(str(message).split()))
    print(f"senet: warning: {text}", file=file if file is not None else sys.stderr)
