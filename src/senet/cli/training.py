"""The subcommands that train: ``senet train`` (one process or ``--workers N``), ``senet
ablate`` and ``senet demo``. Their training flags come from
:data:`senet.config.TRAIN_OPTIONS`."""

from __future__ import annotations

import os

from senet.cli._common import (
    CLIError,
)
from senet.config import (
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
from senet.tasks import get_task


def add_train(subparsers) -> None:
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
    print(get_task(result.config.task).summary(result.metrics))
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


def add_ablate(subparsers) -> None:
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
    "task",
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
    "model_options",
)


_ABLATE_FLAGS = {"synthetic_difficulty": "--difficulty"}


def _run_ablate(args) -> int:
    from senet.ablate import Settings, run_ablation

    shared = {name: getattr(args, name) for name in _ABLATE_SETTINGS}
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
        settings=Settings.from_train_fields(shared, latency_rounds=args.latency_rounds),
        jobs=args.jobs,
        command=_ablate_command(args),
        progress=not args.quiet,
    )
    for row in result.rows:
        score = row["score"]
        std = "" if row[f"{score}_std"] is None else f" +- {row[f'{score}_std']:.4f}"
        diff = ""
        if row["verdict"] != "baseline" and row["diff_mean"] is not None:
            diff = f"  diff {row['diff_mean']:+.4f}"
            if row["diff_low"] is not None:
                diff += f" [{row['diff_low']:+.4f}, {row['diff_high']:+.4f}]"
        mean = row[f"{score}_mean"]
        print(f"{row['name']}: {score} {mean:.4f}{std}{diff}  {row['verdict']}")
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


def add_demo(subparsers) -> None:
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
