"""The subcommands that use a model: ``senet evaluate``, ``predict``, ``explain``,
``export``, ``convert`` and ``bench``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from senet.cli._common import (
    ATTENTION_HELP,
    EXPLAIN_METHOD_CHOICES,
    MODEL_HELP,
    CLIError,
    add_allow_h5,
    add_allow_savedmodel,
    add_model_inputs,
    model_input_options,
    print_warnings,
)
from senet.config import non_negative_int as _non_negative_int
from senet.config import positive_float as _positive_float
from senet.config import positive_int as _positive_int
from senet.config import unit_float as _unit_float
from senet.tasks import get_task


def add_evaluate(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="accuracy, per-class precision/recall/F1 and confusion matrix of a saved classifier; "
        "Dice, IoU and HD95 per class of a segmentation model",
    )
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
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
    add_allow_h5(parser)
    add_allow_savedmodel(parser)
    add_model_inputs(parser)
    parser.set_defaults(handler=_run_evaluate)


def _run_evaluate(args) -> int:

    from senet.evaluation import evaluate

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
                **model_input_options(args),
            )
        finally:
            print_warnings(args.command, caught)
    task = get_task(metrics.get("task", "classification"))
    print(json.dumps(metrics, indent=2) if args.json else task.summary(metrics))
    return 0


def add_predict(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="emotions of the faces in photos and videos; masks of images and volumes; "
        "a detector's boxes",
        description=(
            "A classifier: detect faces (OpenCV Haar cascade), classify each and print its "
            "box, emotion and class probabilities; video files (.mp4, .avi, ...) are read "
            "frame by frame. A segmentation model (senet train --task segmentation): label "
            "every pixel of images, or voxel of NIfTI volumes (.nii, .nii.gz; sliding "
            "windows), and write STEM_mask.png + STEM_overlay.png or STEM_mask.nii.gz into "
            "--annotate DIR. A detector (senet train --task detection): boxes, classes and "
            "scores of images and video frames (--min-score), drawn into --annotate DIR."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
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
        "for a second input of the same name); a segmentation model's masks and overlays",
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
        "--min-score",
        type=_unit_float,
        default=None,
        help="a detector's lowest score printed and drawn (default 0.5)",
    )
    parser.add_argument(
        "--no-fuse",
        action="store_true",
        help="run SE ResNets as trained (default: their fused inference path, fuse_se)",
    )
    add_runtime(parser, default="keras")
    add_allow_h5(parser)
    add_allow_savedmodel(parser)
    add_model_inputs(parser)
    parser.set_defaults(handler=_run_predict)


def add_runtime(parser, *, default: str) -> None:
    from senet.runtime import RUNTIMES  # the names only: no TensorFlow for --help

    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=default,
        help="run a .keras classifier in Keras, or as its LiteRT (.tflite) export, made, "
        "checked against the model and cached on first use (SENET_CACHE_DIR, default "
        f"~/.cache/senet); exported files run in their own runtime (default: {default})",
    )


def _run_predict(args) -> int:
    from senet.inference import open_model

    # a model outside a run is loaded to read its task, once: the command then uses it
    task, model = open_model(
        args.model, allow_h5=args.allow_h5, allow_savedmodel=args.allow_savedmodel
    )
    if task != "classification" and args.runtime != "keras":
        raise CLIError(f"--runtime {args.runtime} runs classifiers; {args.model} is a {task} model")
    if task == "segmentation":
        return _run_segment(args, model)
    if task == "detection":
        return _run_detect(args, model)
    if args.min_score is not None:
        raise CLIError("--min-score is for detectors (senet train --task detection)")
    from senet.predict import iter_predictions

    if args.runtime == "litert":
        if args.no_fuse:
            raise CLIError("--no-fuse is for --runtime keras (the LiteRT export is fused)")
        from senet.runtime import runtime_model

        model = runtime_model(args.model, "litert", model)

    results = iter_predictions(
        args.model,
        args.paths,
        every=args.every,
        annotate_dir=args.annotate,
        overwrite=args.overwrite,
        fuse=not args.no_fuse,
        model=model,
        **model_input_options(args),
    )
    return _print_results(args, results, _format_prediction)


def _print_results(args, results, text) -> int:
    """Each result as it comes, as a JSON line (``--json``) or ``text(result)``; library
    warnings (a truncated video's missing frames) as one line each, in order."""
    with warnings.catch_warnings(record=True) as caught:
        for result in results:  # a generator: its work runs here, warnings caught
            print_warnings(args.command, caught)
            print(json.dumps(result.to_dict()) if args.json else text(result), flush=True)
        print_warnings(args.command, caught)
    return 0


def _where(result) -> str:
    """A result's file, and its video frame if any."""
    from senet.errors import printable

    where = printable(result.path)
    return where if result.frame is None else f"{where} [frame {result.frame}]"


def _run_detect(args, model=None) -> int:
    from senet.detect import DEFAULT_MIN_SCORE, iter_detections

    bar = DEFAULT_MIN_SCORE if args.min_score is None else args.min_score
    results = iter_detections(
        args.model,
        args.paths,
        min_score=bar,
        every=args.every,
        annotate_dir=args.annotate,
        overwrite=args.overwrite,
        allow_h5=args.allow_h5,
        model=model,
    )

    def text(result) -> str:
        found = "; ".join(
            f"{d.label} {d.score:.2f} ({', '.join(f'{v:.0f}' for v in d.box)})"
            for d in result.detections
        )
        if not found:
            found = "nothing found"
            if result.best_score is not None:
                found = (
                    f"nothing scored {bar:g} or more (best {result.best_score:.2f}; "
                    "--min-score lowers the bar)"
                )
        return f"{_where(result)}: {found}"

    return _print_results(args, results, text)


def _run_segment(args, model=None) -> int:
    from senet.errors import printable
    from senet.segment import iter_segmentations

    if not args.annotate:
        raise CLIError("a segmentation model writes masks: give --annotate DIR")
    results = iter_segmentations(
        args.model,
        args.paths,
        out_dir=args.annotate,
        overwrite=args.overwrite,
        allow_h5=args.allow_h5,
        allow_savedmodel=args.allow_savedmodel,
        model=model,
    )

    def text(result) -> str:
        shares = ", ".join(f"{name} {row['fraction']:.1%}" for name, row in result.classes.items())
        size = "x".join(map(str, result.shape))
        return f"{printable(result.path)} ({size}): {shares} -> {result.mask}"

    return _print_results(args, results, text)


def _format_prediction(result) -> str:
    where = _where(result)
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


def add_explain(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="heatmaps of where a model looks on the faces in photos; a segmentation "
        "model's attention gates per decoder level",
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
    add_allow_h5(parser)
    add_model_inputs(parser)
    parser.set_defaults(handler=_run_explain)


def _run_explain(args) -> int:
    from senet.inference import open_model

    task, model = open_model(args.model, allow_h5=args.allow_h5)
    if task == "detection":
        raise CLIError(f"{args.model} is a detector: senet explain does not take detectors yet")
    if task == "segmentation":
        from senet.segment import explain_segmentation

        for written in explain_segmentation(
            args.model,
            args.paths,
            out_dir=args.out,
            overwrite=args.overwrite,
            allow_h5=args.allow_h5,
            model=model,
        ):
            print(written, flush=True)
        return 0
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
                model=model,
                **model_input_options(args),
            ):
                print_warnings(args.command, caught)
                _print_explanation(photo)
        finally:
            print_warnings(args.command, caught)
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


# senet.export.FORMATS and QUANTIZATIONS (tests/test_export.py checks they agree)
EXPORT_FORMAT_CHOICES = ("savedmodel", "tflite", "onnx")


QUANTIZE_CHOICES = ("dynamic", "float16", "int8")


def add_export(subparsers) -> None:
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


def add_convert(subparsers) -> None:
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


def add_bench(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="parameters, FLOPs, inference and training-step time with and without attention",
        description=(
            "Build MODEL with and without attention (a .keras file: its attention layers "
            "dropped, or inserted if it has none) and time both interleaved in one process "
            "(A B, B A, ..., after warm-up calls): medians, min-max and their ratio. --json "
            "FILE writes the result (schema senet.bench/2, see senet.bench.run_bench)."
        ),
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        default="emotion_cnn",
        help="emotion_cnn (48x48, default), resnet50 (224x224) or any resnet<depth>, unet "
        "(--task segmentation, 128x128), retinanet (--task detection, 320x320), or a .keras "
        "file",
    )
    parser.add_argument(
        "--attention", default="se", metavar="KIND", help=f"{ATTENTION_HELP} (default se)"
    )
    parser.add_argument(
        "--task",
        default="classification",
        metavar="TASK",
        help="the model's task: the timed training step's loss (default classification; "
        "another task's model is given as its .keras file)",
    )
    parser.add_argument(
        "--reduction", type=_positive_float, help="default: the builder's (8 CNN, 16 ResNet)"
    )
    parser.add_argument(
        "--image-size",
        type=_positive_int,
        help="side of a named network's square input (default: the size above)",
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
    add_allow_h5(parser)
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
        task=args.task,
        attention=args.attention,
        reduction=args.reduction,
        batch_sizes=tuple(args.batch_sizes),
        train_batch_size=args.train_batch or None,
        rounds=args.rounds,
        warmup=args.warmup,
        allow_h5=args.allow_h5,
        fused=not args.no_fuse,
        progress=not args.quiet,
        image_size=args.image_size,
    )
    if to_stdout:
        print(json.dumps(result, indent=2))
        return 0
    print(format_bench(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def add_serve(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="a local web page and JSON API: drop in a photo, see the faces, emotions and heatmaps",
        description=(
            "Serve MODEL (a face classifier) at http://127.0.0.1:8000/: a page where you "
            "upload a photo or take a webcam snapshot and see each face's box, emotion, "
            "probabilities and the heatmap of where the model looked, under the model's "
            "card; and a JSON API (POST /predict, POST /explain, GET /model, GET /health; "
            "OpenAPI at /docs). A detector's page draws its boxes, a 2-D segmentation "
            "model's tints its classes. The model runs as its LiteRT export by default (made, "
            "checked and cached on first use); heatmaps come from the .keras model. Needs "
            'pip install "senet[serve]".'
        ),
    )
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; any other is "
        "warned about: there is no authentication)",
    )
    parser.add_argument(
        "--port", type=_port, default=8000, help="port (default 8000; 0: any free one)"
    )
    add_runtime(parser, default="litert")
    parser.add_argument(
        "--method",
        choices=EXPLAIN_METHOD_CHOICES,
        default="gradcam",
        help="the page's default heatmap (default gradcam)",
    )
    parser.add_argument(
        "--layer", default=None, help="the layer explained (default: the method's own)"
    )
    parser.add_argument(
        "--max-upload-mb",
        type=_positive_float,
        default=20.0,
        help="largest upload in MB (default 20)",
    )
    parser.add_argument(
        "--max-megapixels",
        type=_positive_float,
        default=40.0,
        help="most pixels an image may claim in its header, in millions (default 40)",
    )
    parser.add_argument(
        "--max-pending",
        type=_positive_int,
        default=16,
        help="requests answered or waiting at once; more get 503 + Retry-After (default 16)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=60.0,
        help="seconds a request may take before it gets 504 (default 60)",
    )
    add_allow_h5(parser)
    add_model_inputs(parser)
    parser.set_defaults(handler=_run_serve)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0..65535, got {port}")
    return port


def _run_serve(args) -> int:
    from senet.serve import Limits, serve

    limits = Limits(
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=int(args.max_megapixels * 1e6),
        max_pending=args.max_pending,
        timeout=args.timeout,
    )
    try:
        serve(
            args.model,
            host=args.host,
            port=args.port,
            runtime=args.runtime,
            method=args.method,
            layer=args.layer,
            limits=limits,
            **model_input_options(args),
        )
    except KeyboardInterrupt:
        print("senet serve: stopped", file=sys.stderr)
    return 0
