"""What a run checks and prepares before it trains, for one process and for a cluster's chief
alike: the config (a resume's saved one with the changes it may take), a directory a new run
may use, the run's data (its task's reader) and whether it still fits the run, the lock, and
the run directory made ready. Everything here that refuses a run only reads, so a refused run
changes nothing.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from senet import runs
from senet.checks import fail
from senet.config import RESUME_CHANGEABLE, TrainConfig
from senet.errors import ResumeConflict
from senet.tasks import get_task


def load_run_data(config: TrainConfig) -> dict[str, Any]:
    """The ``{"train", "val", "test"}`` splits a run with ``config`` trains and tests on
    (its task's reader, :meth:`senet.tasks.Task.load_data`).

    The one place a run's settings turn into data, so code that inspects a run afterwards
    (the demo's explanations, for example) sees exactly the images the run saw.
    """
    return get_task(config.task).load_data(config)


def saved_config(run_dir: Path) -> TrainConfig:
    """The config of the run in ``run_dir``, for a resume."""
    config_path = run_dir / runs.CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(
            f"cannot resume: {config_path} not found (is {run_dir} a run directory?)"
        )
    try:
        return TrainConfig.from_dict(runs.read_config(run_dir))
    except (ValueError, TypeError) as error:
        raise ValueError(f"cannot resume: {config_path} is not a valid config: {error}") from None


def _as_config(config: TrainConfig | dict[str, Any]) -> TrainConfig:
    return config if isinstance(config, TrainConfig) else TrainConfig.from_dict(dict(config))


def _same_value(name: str, saved: Any, given: Any) -> bool:
    if name == "data" and saved != given:
        # the same file by another spelling of its path
        with contextlib.suppress(OSError, TypeError, ValueError):
            return os.path.samefile(saved, given)
        return False
    return saved == given


def fixed_fields_that_differ(run: TrainConfig, asked: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{field: (the run's value, the value asked)}`` of the fields a run keeps (all but
    ``RESUME_CHANGEABLE``) that ``asked`` sets otherwise: the one check of a resume and of a
    worker joining a cluster."""
    return {
        name: (getattr(run, name), value)
        for name, value in asked.items()
        if name not in RESUME_CHANGEABLE and not _same_value(name, getattr(run, name), value)
    }


def check_batch_size(batch_size: int, replicas: int) -> None:
    """A global batch splits evenly over the replicas (the one check, local or cluster)."""
    if batch_size % replicas:
        raise fail("batch_size", f"a multiple of the {replicas} replicas", batch_size)


def _resume_config(config, run_dir: Path) -> tuple[TrainConfig, dict[str, tuple[Any, Any]]]:
    """The saved config with what ``config`` changes, and those changes.

    ``config`` None: the saved one. A dict: the fields asked (the others stay as saved). A
    TrainConfig: every field asked. Only ``RESUME_CHANGEABLE`` fields may differ.
    """
    saved = saved_config(run_dir)
    if config is None:
        return saved, {}
    asked = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    TrainConfig.from_dict({**saved.to_dict(), **asked})  # unknown fields and bad values
    conflicts = fixed_fields_that_differ(saved, asked)
    if conflicts:
        raise ResumeConflict(
            run_dir,
            conflicts,
            f"a resumed run keeps its settings (only {', '.join(RESUME_CHANGEABLE)} may "
            "change); start a new run to train with others",
        )
    changes = {
        name: (getattr(saved, name), asked[name])
        for name in RESUME_CHANGEABLE
        if name in asked and asked[name] != getattr(saved, name)
    }
    if "epochs" in changes and saved.lr_schedule == "cosine":
        raise ResumeConflict(
            run_dir,
            {"epochs": changes["epochs"]},
            f"its cosine learning-rate schedule is laid out for {saved.epochs} epochs",
        )
    return TrainConfig.from_dict({**saved.to_dict(), **asked}), changes


def check_new_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse a directory a new run must not write into (see :func:`train`)."""
    if runs.is_unused(run_dir):
        return
    if not overwrite:
        if runs.holds_run(run_dir):
            raise ValueError(
                f"{run_dir} already holds a run; resume it (resume=True, `--resume`), start "
                "it afresh (overwrite=True, `--overwrite`) or choose another output directory"
            )
        raise ValueError(
            f"{run_dir} is not empty and is not a senet run; choose a new or empty directory"
        )
    try:
        saved_config(run_dir)
    except (OSError, ValueError):
        raise ValueError(
            f"{run_dir} is not a senet run (no valid {runs.CONFIG_FILE}), and overwrite only "
            "starts a senet run afresh; choose a new or empty directory"
        ) from None


def resolve_config(
    config, run_dir: Path, resume: bool, overwrite: bool = False
) -> tuple[TrainConfig, dict[str, tuple[Any, Any]]]:
    """The run's config and the saved fields a resume changes (reads only).

    On resume: the saved config, with ``config``'s changes (:func:`_resume_config`). Else
    ``config``, for a directory a new run may use (:func:`check_new_run_dir`).
    """
    if resume and overwrite:
        raise ValueError(
            "give resume=True (`--resume`) or overwrite=True (`--overwrite`), not both"
        )
    if resume:
        return _resume_config(config, run_dir)
    if config is None:
        raise ValueError("Expected a TrainConfig or dict for `config` (None only with resume=True)")
    config = _as_config(config)
    check_new_run_dir(run_dir, overwrite)
    return config, {}


def check_run_matches(
    restored: runs.Restored, config: TrainConfig, run_dir: Path, class_names: Sequence[str]
) -> None:
    """Raise ValueError if the data (or config) no longer fits the run's checkpoint."""
    where = f"the data of {run_dir} ({config.data!r}) no longer matches the run"
    if restored.class_names is not None and list(restored.class_names) != list(class_names):
        raise ValueError(
            f"{where}: its class names are {list(class_names)}, the run was trained on "
            f"{list(restored.class_names)}"
        )
    problem = get_task(config.task).model_problem(restored.model, config, class_names)
    if problem:
        raise ValueError(f"{where}: {problem}")
    if restored.epochs_done > config.epochs:
        raise ResumeConflict(
            run_dir,
            {"epochs": (restored.epochs_done, config.epochs)},
            f"the run has already finished {restored.epochs_done} epochs",
        )


def read_run_start(
    config, run_dir: Path, resume: bool, overwrite: bool
) -> tuple[TrainConfig, dict[str, tuple[Any, Any]], dict[str, Any]]:
    """The checks a run starts with that only read (:func:`train` and the cluster's chief):
    the resolved config and its changes (:func:`resolve_config`), the run directory not
    in use, and the run's data, which must have training images.

    Returns ``(config, changes, sets)``.
    """
    config, changes = resolve_config(config, run_dir, resume, overwrite)
    if run_dir.is_dir():
        runs.check_unlocked(run_dir)
    sets = load_run_data(config)
    if len(sets["train"]) == 0:
        raise ValueError(f"No training images in {config.data!r} after the split.")
    return config, changes, sets


@contextlib.contextmanager
def locked(run_dir: Path, is_chief: bool):
    """Hold the run directory's lock (made if needed) on the chief; nothing elsewhere."""
    if not is_chief:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with runs.lock_run(run_dir):
        yield


def open_run_dir(
    run_dir: Path,
    config: TrainConfig,
    *,
    resume: bool,
    overwrite: bool,
    changes: dict[str, tuple[Any, Any]],
) -> None:
    """Prepare the locked run directory: clear an old run (``overwrite``), write the config
    (new runs, or a resume's changes, announced in one line) and remove killed writes."""
    figures = _task_figures(config, run_dir if overwrite else None)
    if overwrite and runs.holds_run(run_dir):
        runs.clear_run(run_dir, also=figures)
    runs.make_run_dir(run_dir)
    if changes:
        said = ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changes.items())
        extra = ""
        if "epochs" in changes:
            extra = f": training continues to epoch {config.epochs}"
        warnings.warn(
            f"resuming {run_dir} with {said}{extra} ({runs.CONFIG_FILE} updated)", stacklevel=4
        )
    if not resume or changes or not (run_dir / runs.CONFIG_FILE).exists():
        runs.write_config(run_dir, config.to_dict())
    runs.remove_temporary_files(run_dir, also=figures)


def _task_figures(config: TrainConfig, old_run: Path | None) -> tuple[str, ...]:
    """The figures of the run's task, and of the task of the run it replaces (``old_run``,
    when ``--overwrite`` starts a new run where another task's run was)."""
    figures = list(get_task(config.task).report_files)
    if old_run is not None:
        with contextlib.suppress(OSError, ValueError, TypeError):
            figures += get_task(saved_config(old_run).task).report_files
    return tuple(dict.fromkeys(figures))


def asked_value(config, name: str) -> Any:
    """The value ``config`` (a TrainConfig, a dict or None) gives ``name``, or None."""
    if isinstance(config, TrainConfig):
        return getattr(config, name)
    return dict(config).get(name) if config is not None else None
