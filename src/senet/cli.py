"""The ``senet`` command: parse arguments, call one library function, print.

Heavy modules (Keras, TensorFlow) are imported inside each subcommand, so
``senet --help`` and ``senet --version`` answer at once.

Adding a subcommand is local: write ``_add_<name>(subparsers)`` that builds its parser and
sets ``handler=_run_<name>``, write ``_run_<name>(args) -> int``, and list ``_add_<name>`` in
``_SUBCOMMANDS``. A handler raises :class:`CLIError` (or lets the library raise ValueError,
``senet.data.DataError``, FileNotFoundError/OSError) for bad input: :func:`main` prints it
as one line on stderr and exits 2, without a traceback (``SENET_DEBUG=1`` shows it). A library
error that is a run stopping (:data:`EXIT_STATUS`) is reported the same way with its status.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import warnings
from collections.abc import Callable

from senet import __version__
from senet._tf import TRAINING_COMMANDS, import_tensorflow_quietly, prefer_onednn
from senet.config import (
    ALLOW_H5_HELP,
    SYNTHETIC_DIFFICULTIES,
    TRAIN_OPTIONS,
    add_options,
    flag_for,
    given_options,
    to_argv,
)
from senet.config import non_negative_int as _non_negative_int
from senet.config import positive_float as _positive_float
from senet.config import positive_int as _positive_int
from senet.errors import (
    ClusterError,
    Terminated,
    TrainingDiverged,
    WorkerFailed,
    raise_on_sigterm,
)

# The built-in kinds of senet.kinds(), for --help (which imports no Keras); tests/test_cli.py
# checks they agree. --attention takes any registered kind, those packages add through the
# senet.attention entry point included: the library checks the name when the command runs.
BUILT_IN_KINDS = ("se", "eca", "sse", "scse", "cbam")
_ATTENTION_HELP = (
    f"{', '.join(BUILT_IN_KINDS)}, or a kind a package adds (entry point group senet.attention)"
)
# senet.explain_photos.EXPLAIN_METHODS
EXPLAIN_METHOD_CHOICES = ("gradcam", "gradxact", "gradcam++", "intgrad", "attention")


#: The exit status of each of senet's errors that is not bad input (ValueError and OSError
#: exit 2): a run that stopped.
EXIT_STATUS = ((TrainingDiverged, 1), (ClusterError, 1), (WorkerFailed, 1))


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``senet train: error: ...``), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --------------------------------------------------------------------------- train


def _add_train(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model into a run directory (resumable)",
        description=(
            "Train a model and write RUN_DIR/config.json, model.keras, history.csv, "
            "metrics.json, curves.png, confusion.png and checkpoints/. A run killed at any "
            "moment continues with --resume RUN_DIR from its last finished epoch."
        ),
    )
    # every TrainConfig option, from the one table (senet.config); an option not given is
    # None: a new run takes TrainConfig's default (the one --help names), a resume keeps
    # the run's value
    add_options(parser, [option.field for option in TRAIN_OPTIONS])
    parser.add_argument(
        "--out",
        metavar="RUN_DIR",
        help="run directory for a new run: a new or empty directory (see --overwrite)",
    )
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last finished epoch with its saved "
        "config.json; --epochs N continues it to N epochs in all (not with --lr-schedule "
        "cosine), --tensorboard adds logs; any other option must equal the run's or is "
        "refused",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="with --out: start a new run even if RUN_DIR holds a senet run. The old run's "
        "files are deleted first (config.json, state.json, checkpoints/epoch-NNNN.keras, "
        "history.csv, model.keras, metrics.json, curves.png, confusion.png, TensorBoard "
        "event files in logs/); any other file stays. A directory with files but no senet "
        "run is refused all the same",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="train on N local worker processes (127.0.0.1, free ports, TF_CONFIG set for "
        "each, --distribute multiworker): worker 0, the chief, writes the run and its output "
        "is shown; if one fails every worker is stopped. On a cluster, start one `senet train "
        "--distribute multiworker` per host with TF_CONFIG set instead",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="with --workers: stop every worker after SECONDS (default: no limit)",
    )
    parser.set_defaults(handler=_run_train)


def _run_train(args) -> int:
    if args.resume and args.out and os.path.abspath(args.out) != os.path.abspath(args.resume):
        raise CLIError("give either --out RUN_DIR (new run) or --resume RUN_DIR, not both")
    if not args.resume and not args.out:
        raise CLIError("--out RUN_DIR is required (or --resume RUN_DIR)")
    if args.resume and args.overwrite:
        raise CLIError(
            "--overwrite starts a new run with --out RUN_DIR; it does not go with --resume"
        )
    if args.workers is not None:
        return _launch_train(args)
    if args.timeout is not None:
        raise CLIError("--timeout goes with --workers N")
    from senet.train import ResumeConflict, TrainConfig, train

    given = given_options(args)  # only those given: a resume refuses those it cannot apply
    if args.resume:
        config, run_dir = given or None, args.resume
    else:
        run_dir, config = args.out, TrainConfig(**given)
    try:
        result = train(
            config,
            run_dir,
            resume=bool(args.resume),
            overwrite=args.overwrite,
            verbose=0 if args.quiet else 1,
        )
    except ResumeConflict as error:
        asked = ", ".join(
            f"{' '.join(flag_for(field, new))} (the run has {old!r})"
            for field, (old, new) in error.conflicts.items()
        )
        reason = error.reason
        if "epochs" not in error.conflicts:
            reason = "a resumed run keeps its settings; only --epochs and --tensorboard may change"
        raise CLIError(f"cannot resume {run_dir} with {asked}: {reason}") from None
    if result.resumed_from:
        print(f"resumed after epoch {result.resumed_from}")
    print(_format_metrics(result.metrics))
    print(f"run directory: {result.out_dir}")
    return 0


def _train_argv(args) -> list[str]:
    """The `senet train` arguments every launched worker gets: the options given, written
    out by the options table (senet.config.to_argv)."""
    given = {name: value for name, value in given_options(args).items() if name != "distribute"}
    argv = ["--resume", args.resume] if args.resume else ["--out", args.out]
    argv += to_argv(given)
    if args.overwrite:
        argv.append("--overwrite")
    if args.quiet:
        argv.append("--quiet")
    return argv


def _launch_train(args) -> int:
    if not args.resume and not args.out:
        raise CLIError("--out RUN_DIR is required (or --resume RUN_DIR)")
    if args.distribute not in (None, "multiworker"):
        raise CLIError(
            f"--workers trains with --distribute multiworker, not --distribute {args.distribute}"
        )
    from senet.distributed import check_backend
    from senet.launch import launch

    check_backend(os.environ.get("KERAS_BACKEND", "tensorflow"), args.workers)
    env = {**os.environ, "SENET_DEBUG": "1"} if args.debug else None
    return launch(_train_argv(args), args.workers, timeout=args.timeout, env=env)


# --------------------------------------------------------------------------- evaluate


_MODEL_HELP = (
    "a .keras file (e.g. RUN_DIR/model.keras), or one exported by `senet export`: a .tflite "
    "or .onnx file or a SavedModel directory (the .onnx runtime needs senet[export])"
)


def _add_evaluate(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="accuracy, per-class precision/recall/F1 and confusion matrix of a saved model",
    )
    parser.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    parser.add_argument("--data", required=True, help="data source (as for train)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="write metrics.json and confusion.png here (never into a run directory)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace metrics.json / confusion.png already in --out DIR (default: refuse)",
    )
    parser.add_argument("--batch-size", type=_positive_int, default=64)
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable samples")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_allow_h5(parser)
    _add_allow_savedmodel(parser)
    _add_model_inputs(parser)
    parser.set_defaults(handler=_run_evaluate)


def _add_allow_h5(parser) -> None:
    parser.add_argument("--allow-h5", action="store_true", help=ALLOW_H5_HELP)


def _add_allow_savedmodel(parser) -> None:
    parser.add_argument(
        "--allow-savedmodel",
        action="store_true",
        help="accept a SavedModel directory; its TensorFlow graph can run any op, file "
        "writes included, so only for models you trust (.tflite and .onnx need no flag)",
    )


def _add_model_inputs(parser) -> None:
    """What senet cannot read from a foreign classifier: class names, value range, colour."""
    parser.add_argument(
        "--class-names",
        metavar="A,B,C",
        type=_class_names,
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


def _model_options(args) -> dict:
    """The options :func:`_add_allow_h5` and :func:`_add_model_inputs` declare, as the
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


def _class_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected distinct, non-empty names separated by commas, got {text!r}"
        )
    return names


def _run_evaluate(args) -> int:
    import warnings

    from senet.metrics import evaluate

    # library warnings (an .h5 model's safe-mode notice) as one line each
    with warnings.catch_warnings(record=True) as caught:
        try:
            metrics = evaluate(
                args.model,
                args.data,
                split=args.split,
                out_dir=args.out,
                batch_size=args.batch_size,
                skip_bad=args.skip_bad,
                overwrite=args.overwrite,
                **_model_options(args),
            )
        finally:
            _print_warnings(args.command, caught)
    print(json.dumps(metrics, indent=2) if args.json else _format_metrics(metrics))
    return 0


def _format_metrics(metrics: dict) -> str:
    """Accuracy line, a per-class table and the confusion matrix, as plain text."""
    names = metrics["class_names"]
    width = max(8, *(len(name) for name in names))
    split = metrics.get("split", "test")
    lines = [
        f"{split} accuracy {metrics['accuracy']:.4f}  loss {metrics['loss']:.4f}  "
        f"macro F1 {metrics['macro_f1']:.4f}  ({metrics['num_examples']} images)",
        "",
        f"{'class':<{width}}  precision  recall     f1  support",
    ]
    for name in names:
        row = metrics["per_class"][name]
        lines.append(
            f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  "
            f"{row['f1']:5.3f}  {row['support']:7d}"
        )
    lines += ["", "confusion matrix (rows: true, columns: predicted)"]
    cell = max(5, *(len(name[:7]) for name in names))
    lines.append(" " * width + "".join(f"{name[:7]:>{cell + 1}}" for name in names))
    for name, row in zip(names, metrics["confusion_matrix"], strict=True):
        lines.append(f"{name:<{width}}" + "".join(f"{count:>{cell + 1}d}" for count in row))
    return "\n".join(lines)


# --------------------------------------------------------------------------- predict


def _add_predict(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="emotions of the faces in photos and videos",
        description=(
            "Detect faces (OpenCV Haar cascade), classify each and print its box, emotion and "
            "class probabilities. Video files (.mp4, .avi, ...) are read frame by frame."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    parser.add_argument("paths", metavar="IMAGE_OR_VIDEO", nargs="+")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per image / video frame (JSON Lines)",
    )
    parser.add_argument(
        "--annotate",
        metavar="DIR",
        help="write annotated copies here: STEM_annotated.png|jpg|avi (STEM_2_annotated... "
        "for a second input of the same name)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace annotated copies that already exist in --annotate DIR (default: refuse)",
    )
    parser.add_argument(
        "--every", type=_positive_int, default=1, help="look at every N-th video frame"
    )
    parser.add_argument(
        "--no-fuse",
        action="store_true",
        help="run SE ResNets as trained (default: their fused inference path, fuse_se)",
    )
    _add_allow_h5(parser)
    _add_allow_savedmodel(parser)
    _add_model_inputs(parser)
    parser.set_defaults(handler=_run_predict)


def _run_predict(args) -> int:
    import warnings

    from senet.predict import iter_predictions

    # library warnings (a truncated video's missing frames) as one line each, in order
    with warnings.catch_warnings(record=True) as caught:
        for result in iter_predictions(
            args.model,
            args.paths,
            every=args.every,
            annotate_dir=args.annotate,
            overwrite=args.overwrite,
            fuse=not args.no_fuse,
            **_model_options(args),
        ):
            _print_warnings(args.command, caught)
            if args.json:
                print(json.dumps(result.to_dict()), flush=True)
            else:
                print(_format_prediction(result), flush=True)
        _print_warnings(args.command, caught)
    return 0


def _print_warnings(command: str, caught: list) -> None:
    """Print and forget the warnings recorded so far, one line each on stderr."""
    for warning in caught:
        print(f"senet {command}: warning: {_one_line(warning.message)}", file=sys.stderr)
    caught.clear()


def _format_prediction(result) -> str:
    from senet.errors import printable

    where = printable(result.path)
    where = where if result.frame is None else f"{where} [frame {result.frame}]"
    if not result.faces:
        return f"{where}: no face found"
    names = list(result.faces[0].probabilities)
    header = f"  {'face':>4}  {'box (x, y, w, h)':<22}  {'emotion':<10}" + "".join(
        f"{name[:8]:>9}" for name in names
    )
    lines = [f"{where}: {len(result.faces)} face{'s' if len(result.faces) > 1 else ''}", header]
    for number, face in enumerate(result.faces, 1):
        box = ", ".join(str(v) for v in face.box)
        lines.append(
            f"  {number:>4}  {box:<22}  {face.label:<10}"
            + "".join(f"{face.probabilities[name]:9.3f}" for name in names)
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- explain


def _add_explain(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="heatmaps of where a model looks on the faces in photos",
        description=(
            "Detect and crop faces as `senet predict` does, explain each with Grad-CAM or the "
            "last attention layer's map, and write one overlay PNG per face and an index.html "
            "listing them into --out DIR."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="a .keras file (e.g. RUN_DIR/model.keras)")
    parser.add_argument("paths", metavar="IMAGE", nargs="+")
    parser.add_argument("--out", metavar="DIR", required=True, help="folder for overlays")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier explanation in --out DIR (default: refuse)",
    )
    parser.add_argument(
        "--method",
        default="gradcam",
        choices=EXPLAIN_METHOD_CHOICES,
        help="gradcam (default) and its variants gradxact, gradcam++ and intgrad (integrated "
        "gradients, what senet demo scores), or attention (gradient-free, SE models)",
    )
    parser.add_argument(
        "--class",
        dest="class_name",
        metavar="NAME",
        help="explain this class instead of each face's predicted class",
    )
    parser.add_argument(
        "--layer", metavar="NAME", help="layer to explain (default: the last feature map)"
    )
    _add_allow_h5(parser)
    _add_model_inputs(parser)
    parser.set_defaults(handler=_run_explain)


def _run_explain(args) -> int:
    import warnings

    from senet.explain_photos import INDEX_FILE, iter_explanations

    # library warnings (an .h5 model's safe-mode notice) as one line each, in order
    with warnings.catch_warnings(record=True) as caught:
        try:
            for photo in iter_explanations(
                args.model,
                args.paths,
                args.out,
                method=args.method,
                class_name=args.class_name,
                layer=args.layer,
                overwrite=args.overwrite,
                **_model_options(args),
            ):
                _print_warnings(args.command, caught)
                _print_explanation(photo)
        finally:
            _print_warnings(args.command, caught)
    print(f"index: {os.path.join(args.out, INDEX_FILE)}")
    return 0


def _print_explanation(photo) -> None:
    from senet.errors import printable

    if not photo.faces:
        print(f"{printable(photo.path)}: no face found", flush=True)
        return
    count = len(photo.faces)
    print(f"{printable(photo.path)}: {count} face{'s' if count > 1 else ''}", flush=True)
    for number, face in enumerate(photo.faces, 1):
        predicted = f"{face.label} {face.probabilities[face.label]:.3f}"
        if face.target != face.label:
            predicted += f", explained {face.target} {face.probability:.3f}"
        print(f"  face {number}: {predicted} -> {printable(face.overlay)}", flush=True)


# --------------------------------------------------------------------------- demo


def _add_demo(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="synthetic faces -> plain vs SE CNN -> explanations -> report (needs no data)",
        description=(
            "Draw the synthetic expression set, train a plain and an SE emotion CNN, evaluate "
            "and explain them, and write DIR/report.html, DIR/report.md and DIR/metrics.json."
        ),
    )
    parser.add_argument("--out", metavar="DIR", default="demo_out", help="default demo_out")
    parser.add_argument("--quick", action="store_true", help="a small, fast run (smoke test)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="default 0")
    parser.add_argument(
        "--difficulty",
        choices=SYNTHETIC_DIFFICULTIES,
        default="easy",
        help="synthetic faces: easy (default, both models near 98%%) or hard (subtler "
        "expressions, occluders, stronger pose/lighting: headroom for a difference)",
    )
    parser.add_argument(
        "--jobs",
        type=_positive_int,
        default=2,
        help="models trained at once, each in its own process (default 2; 1: one after the other)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into DIR although it holds files the demo did not write (they are left "
        "alone); a rerun into the demo's own DIR needs no flag: it reuses finished runs",
    )
    parser.set_defaults(handler=_run_demo)


def _run_demo(args) -> int:
    from senet.demo import run_demo

    metrics = run_demo(
        args.out,
        quick=args.quick,
        seed=args.seed,
        difficulty=args.difficulty,
        verbose=True,
        jobs=args.jobs,
        overwrite=args.overwrite,
    )
    print(_format_demo(metrics))
    for name in ("report.html", "report.md", "metrics.json"):
        print(f"wrote {os.path.join(args.out, name)}")
    return 0


def _format_demo(metrics: dict) -> str:
    """The headline numbers of a demo's metrics.json (keys missing are left out)."""
    lines = []
    models = metrics.get("models", {}) if isinstance(metrics, dict) else {}
    focus = metrics.get("focus", {}) if isinstance(metrics, dict) else {}
    for name in ("baseline", "se"):
        row = models.get(name, {})
        if "test_accuracy" in row:
            params = f"  ({row['params']:,} params)" if "params" in row else ""
            interval = row.get("test_accuracy_ci95")
            ci = f" (95% CI {interval[0]:.3f}-{interval[1]:.3f})" if interval else ""
            lines.append(f"{name:<11} test accuracy {row['test_accuracy']:.4f}{ci}{params}")
    verdict = metrics.get("comparison", {}).get("verdict") if isinstance(metrics, dict) else None
    if verdict:
        lines.append(verdict)
    for name in ("baseline", "se", "image_blind"):
        row = focus.get(name, {})
        if "energy_in_parts" in row:
            area = row.get("area_fraction")
            tail = f" (parts cover {area:.1%} of the face)" if area is not None else ""
            lines.append(
                f"{name:<11} heatmap energy on face parts {row['energy_in_parts']:.1%}{tail}"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- export

# senet.export.FORMATS and QUANTIZATIONS (tests/test_export.py checks they agree)
EXPORT_FORMAT_CHOICES = ("savedmodel", "tflite", "onnx")
QUANTIZE_CHOICES = ("dynamic", "float16", "int8")


def _add_export(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model to SavedModel, TFLite or ONNX, checked against the Keras model",
        description=(
            "Export MODEL, run the exported file with its runtime (TensorFlow, LiteRT, "
            "onnxruntime) on held-out inputs and compare it with the Keras model: max abs "
            "difference and top-1 agreement. A file beyond tolerance (float: 1e-4; float16: "
            "5e-3; dynamic and int8: 95% top-1 agreement) is not written. ONNX needs the "
            'optional dependencies: pip install "senet[export]".'
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="a .keras file (e.g. RUN_DIR/model.keras)")
    parser.add_argument(
        "--format", default="savedmodel", choices=EXPORT_FORMAT_CHOICES, help="default savedmodel"
    )
    parser.add_argument(
        "--out", metavar="PATH", required=True, help="a directory (savedmodel), .tflite or .onnx"
    )
    parser.add_argument("--quantize", choices=QUANTIZE_CHOICES, help="TFLite only")
    parser.add_argument(
        "--calibration",
        metavar="DATA",
        help="int8 calibration data, any source train reads (default: synthetic faces); "
        "its held-out part is what the check runs on",
    )
    parser.add_argument(
        "--samples", type=_positive_int, default=100, help="held-out inputs checked (100)"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the parity check")
    parser.add_argument(
        "--no-fuse", action="store_true", help="export SE ResNets unfused (default: fuse_se)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_run_export)


def _run_export(args) -> int:
    from senet.export import export_model

    result = export_model(
        args.model,
        args.out,
        format=args.format,
        quantize=args.quantize,
        calibration=args.calibration,
        check=not args.no_check,
        samples=args.samples,
        fuse=not args.no_fuse,
        overwrite=args.overwrite,
    )
    print(json.dumps(result.to_dict(), indent=2) if args.json else _format_export(result))
    return 0


def _format_export(result) -> str:
    """One line on the file, one on its parity with the Keras model."""
    kind = result.format + (f" {result.quantize}" if result.quantize else "")
    fused = ", fused" if result.fused else ""
    lines = [f"wrote {result.path} ({kind}{fused}, {result.size_bytes / 1024:.1f} KiB)"]
    if result.samples:
        limits = ", ".join(
            f"max abs diff <= {value:g}" if name == "max_abs_diff" else f"agreement >= {value:.0%}"
            for name, value in result.tolerance.items()
        )
        lines.append(
            f"parity on {result.samples} held-out inputs: max abs diff "
            f"{result.max_abs_diff:.3g}, top-1 agreement {result.top1_agreement:.1%} "
            f"(tolerance: {limits})"
        )
    else:
        lines.append("parity not checked (--no-check)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- convert


def _add_convert(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="import timm's pretrained SE/ECA ResNet weights into a Keras model",
        description=(
            "Build the senet network matching a timm model (seresnet18/34/50/101/152, "
            "seresnet152d, seresnext26d_32x4d, seresnext26t_32x4d, seresnext50_32x4d, "
            "seresnext101_32x4d/32x8d/64x4d, seresnext101d_32x8d, ecaresnet26t, ecaresnet50d, "
            "ecaresnet50t, ecaresnet101d), load WEIGHTS into it and save it as .keras. Every "
            "tensor of the file must fit (--non-strict allows unused ones). Prints timm's "
            "preprocessing (input size, crop, mean/std) for the model. .safetensors files "
            'need pip install "senet[pretrained]", .pth/.bin files "senet[torch]" (read '
            "with torch.load(weights_only=True))."
        ),
    )
    parser.add_argument("weights", metavar="WEIGHTS", help=".safetensors, .pth or .bin file")
    parser.add_argument(
        "--arch", default="seresnet50", help="timm model name[.tag] (default seresnet50)"
    )
    parser.add_argument("--out", metavar="PATH", required=True, help="the .keras file to write")
    parser.add_argument(
        "--no-top", action="store_true", help="drop the classifier (a backbone, avg pooled)"
    )
    parser.add_argument(
        "--input-size",
        type=_positive_int,
        metavar="PIXELS",
        help="square input size (default: the variant's evaluation size)",
    )
    parser.add_argument(
        "--logits", action="store_true", help="output timm's logits, not softmax probabilities"
    )
    parser.add_argument(
        "--non-strict", action="store_true", help="report unused tensors instead of failing"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_run_convert)


def _run_convert(args) -> int:
    from senet.models.timm import convert_timm

    size = args.input_size
    result = convert_timm(
        args.weights,
        args.arch,
        include_top=not args.no_top,
        pooling="avg" if args.no_top else None,
        input_shape=None if size is None else (size, size, 3),
        classifier_activation=None if args.logits else "softmax",
        strict=not args.non_strict,
        out=args.out,
        overwrite=args.overwrite,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    config = result.config
    print(
        f"wrote {result.path} ({config.arch}.{config.tag}, {result.params:,} parameters, "
        f"{len(result.used)} tensors in {result.seconds:.1f} s)"
    )
    if result.unused:
        print(f"unused tensors: {', '.join(result.unused)}")
    height, width, _ = config.input_size
    print(
        f"preprocessing: RGB in [0, 1], resize to {height}x{width} / {config.crop_pct:g} "
        f"({config.interpolation}), centre crop {height}x{width}, "
        f"mean {list(config.mean)}, std {list(config.std)}"
    )
    return 0


# --------------------------------------------------------------------------- ablate


def _add_ablate(subparsers) -> None:
    parser = subparsers.add_parser(
        "ablate",
        help="train a grid of attention settings over seeds; tables beside the paper's",
        description=(
            "Train every cell of a grid (each option takes several values; every model's "
            "no-attention baseline is added) once per seed, and write DIR/results.csv, "
            "DIR/seeds.csv, DIR/ablation.md, DIR/ablation.html and plots. Accuracy is shown "
            "as mean +- std over seeds, with the difference to no attention paired by seed "
            "and its 95% interval. Rerun the same command to resume: finished cells are "
            "kept in DIR/cells/ and skipped."
        ),
    )
    parser.add_argument("--out", metavar="DIR", required=True, help="output directory")
    # the grid's TrainConfig options and the settings every cell shares, from the one table
    add_options(parser, _ABLATE_GRID, none_if_absent=False, many=_ABLATE_GRID)
    parser.add_argument("--squeeze", nargs="+", default=["avg"], choices=("avg", "max", "avgmax"))
    parser.add_argument(
        "--gate", nargs="+", default=["sigmoid"], help="sigmoid (default), hard_sigmoid, tanh, relu"
    )
    parser.add_argument(
        "--placement",
        nargs="+",
        default=["standard"],
        choices=("standard", "pre", "post", "identity"),
        help="ResNets only",
    )
    parser.add_argument(
        "--stages", nargs="+", default=["all"], help="ResNets only: all, 2, 3, 4 or 3,4 ..."
    )
    parser.add_argument("--seeds", type=_positive_int, default=3, help="seeds per cell (3)")
    add_options(parser, _ABLATE_SETTINGS, none_if_absent=False, flags=_ABLATE_FLAGS)
    parser.add_argument("--latency-rounds", type=_positive_int, default=10)
    parser.add_argument(
        "--jobs", type=_positive_int, default=1, help="cells trained at once (processes)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(handler=_run_ablate)


# TrainConfig fields that are axes of ablate's grid (several values each), and those every
# cell shares (senet.ablate.Settings); ablate spells synthetic_difficulty --difficulty.
_ABLATE_GRID = ("model", "attention", "reduction")
_ABLATE_SETTINGS = (
    "data",
    "synthetic_difficulty",
    "synthetic_size",
    "image_size",
    "channels",
    "epochs",
    "batch_size",
    "learning_rate",
    "optimizer",
    "lr_schedule",
    "augment",
)
_ABLATE_FLAGS = {"synthetic_difficulty": "--difficulty"}


def _run_ablate(args) -> int:
    from senet.ablate import run_ablation

    result = run_ablation(
        args.out,
        models=args.model,
        attentions=args.attention,
        reductions=args.reduction,
        squeezes=args.squeeze,
        gates=args.gate,
        placements=args.placement,
        stages=args.stages,
        seeds=args.seeds,
        data=args.data,
        difficulty=args.synthetic_difficulty,
        synthetic_size=args.synthetic_size,
        image_size=args.image_size,
        channels=args.channels,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        optimizer=args.optimizer,
        lr_schedule=args.lr_schedule,
        augment=args.augment,
        latency_rounds=args.latency_rounds,
        jobs=args.jobs,
        command=_ablate_command(args),
        progress=not args.quiet,
    )
    for row in result.rows:
        std = "" if row["accuracy_std"] is None else f" +- {row['accuracy_std']:.4f}"
        diff = ""
        if row["verdict"] != "baseline" and row["diff_mean"] is not None:
            diff = f"  diff {row['diff_mean']:+.4f}"
            if row["diff_low"] is not None:
                diff += f" [{row['diff_low']:+.4f}, {row['diff_high']:+.4f}]"
        print(f"{row['name']}: accuracy {row['accuracy_mean']:.4f}{std}{diff}  {row['verdict']}")
    print(f"trained {result.trained}, kept {result.skipped} finished before")
    for key in ("csv", "markdown", "html"):
        print(f"wrote {result.paths[key]}")
    return 0


def _ablate_command(args) -> str:
    """The command line that repeats this ablation, every setting spelled out."""
    grid = {name: getattr(args, name) for name in _ABLATE_GRID}
    words = ["senet ablate", "--out", args.out, *to_argv(grid)]
    for flag in ("squeeze", "gate", "placement", "stages"):
        words += [f"--{flag}", *map(str, getattr(args, flag))]
    words += ["--seeds", str(args.seeds)]
    settings = {name: getattr(args, name) for name in _ABLATE_SETTINGS}
    words += to_argv(settings, _ABLATE_FLAGS)
    return " ".join(words)


# --------------------------------------------------------------------------- bench


def _add_bench(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="parameters, FLOPs, inference and training-step time with and without attention",
        description=(
            "Build MODEL with and without attention (a .keras file: its attention layers "
            "dropped, or inserted if it has none) and time both interleaved in one process "
            "(A B, B A, ..., after warm-up calls): medians, min-max and their ratio. --json "
            "FILE writes the result (schema senet.bench/1, see senet.bench.run_bench)."
        ),
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        default="emotion_cnn",
        help="emotion_cnn (48x48, default), resnet50 (224x224) or any resnet<depth>, or a "
        ".keras file",
    )
    parser.add_argument(
        "--attention", default="se", metavar="KIND", help=f"{_ATTENTION_HELP} (default se)"
    )
    parser.add_argument(
        "--reduction", type=_positive_float, help="default: the builder's (8 CNN, 16 ResNet)"
    )
    parser.add_argument(
        "--batch-sizes", nargs="+", type=_positive_int, default=[1, 16], help="default 1 16"
    )
    parser.add_argument(
        "--train-batch",
        type=_non_negative_int,
        default=16,
        help="batch of the timed training step (default 16; 0 skips it)",
    )
    parser.add_argument("--rounds", type=_positive_int, default=30, help="default 30")
    parser.add_argument("--warmup", type=_non_negative_int, default=3, help="default 3")
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="also write the result as JSON here; - prints only the JSON, to stdout",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json FILE")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--no-fuse",
        action="store_true",
        help="time inference on the models as built (default: the fused inference path, "
        "with the plain model folded the same way)",
    )
    _add_allow_h5(parser)
    parser.set_defaults(handler=_run_bench)


def _run_bench(args) -> int:
    to_stdout = args.json == "-"
    # a terminal, pipe or device is written through (nothing there to replace)
    if not to_stdout and args.json and os.path.isfile(args.json) and not args.overwrite:
        raise CLIError(f"{args.json} exists; give --overwrite to replace it")
    from senet._files import atomic_write_text
    from senet.bench import format_bench, run_bench

    result = run_bench(
        args.model,
        attention=args.attention,
        reduction=args.reduction,
        batch_sizes=tuple(args.batch_sizes),
        train_batch_size=args.train_batch or None,
        rounds=args.rounds,
        warmup=args.warmup,
        allow_h5=args.allow_h5,
        fused=not args.no_fuse,
        progress=not args.quiet,
    )
    if to_stdout:
        print(json.dumps(result, indent=2))
        return 0
    print(format_bench(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


# --------------------------------------------------------------------------- main

# One entry per subcommand; each adds its parser and sets `handler`.
_SUBCOMMANDS: list[Callable] = [
    _add_demo,
    _add_train,
    _add_evaluate,
    _add_predict,
    _add_explain,
    _add_export,
    _add_ablate,
    _add_bench,
    _add_convert,
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


def _one_line(error: BaseException) -> str:
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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print a Python warning as one line: ``senet: warning: MESSAGE`` (control characters
    escaped: a warning may quote a name from a file)."""
    from senet.errors import printable

    text = printable(" ".join(str(message).split()))
    print(f"senet: warning: {text}", file=file if file is not None else sys.stderr)


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
    warnings.showwarning = _show_warning  # one line, not file:line plus the source line
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
        print(f"senet {args.command}: error: {_one_line(error)}", file=sys.stderr)
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
        print(f"senet {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:
        # a run that stopped (a NaN loss, its last good checkpoint kept; a failed worker) is
        # reported, not traced, with its exit status
        status = next((code for kind, code in EXIT_STATUS if isinstance(error, kind)), None)
        if debug or status is None:
            raise
        print(f"senet {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return status
    finally:
        warnings.showwarning = shown
        if replaced is not None:
            signal.signal(signal.SIGTERM, replaced)


if __name__ == "__main__":
    sys.exit(main())
