"""Tasks: the kinds of problem senet trains (:class:`Task`, the seam), by name.

``TrainConfig.task`` (``senet train --task NAME``) names one. Built in:
``classification``, ``segmentation`` and ``detection``. A package adds one through the
``senet.tasks`` entry point (then every command, and the worker processes of ``--workers``
and ``senet ablate``, find it)::

    [project.entry-points."senet.tasks"]
    mytask = "mypackage.tasks:MyTask"

or, in one process, with :func:`register_task`. This module imports no Keras.
"""

from __future__ import annotations

import importlib

from senet.checks import check_choice
from senet.tasks.base import Task

__all__ = ["ENTRY_POINT_GROUP", "Task", "get_task", "register_task", "task_names"]

ENTRY_POINT_GROUP = "senet.tasks"

#: The built-in tasks, imported when first asked for.
_BUILT_IN = {
    "classification": "senet.tasks.classification:ClassificationTask",
    "segmentation": "senet.tasks.segmentation:SegmentationTask",
    "detection": "senet.tasks.detection:DetectionTask",
}
_REGISTRY: dict[str, Task] = {}
_plugins_loaded = False


def register_task(task: Task | type[Task]) -> None:
    """Make ``get_task(task.name)`` return ``task`` (a :class:`Task` or its class)."""
    if isinstance(task, type) and issubclass(task, Task):
        task = task()
    if not isinstance(task, Task):
        raise TypeError(f"`task` must be a senet.tasks.Task, got {type(task).__name__}")
    if not isinstance(task.name, str) or not task.name.strip():
        raise ValueError(f"a task needs a name, got {task.name!r}")
    _REGISTRY[task.name.lower()] = task


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from senet.plugins import load_entry_points

    load_entry_points(
        ENTRY_POINT_GROUP,
        known={*_BUILT_IN, *_REGISTRY},
        register=lambda name, task: register_task(task),
        what="task",
    )


def task_names() -> tuple[str, ...]:
    """Every task's name: the built-in ones, then those registered or added by packages."""
    _load_plugins()
    return (*_BUILT_IN, *(name for name in _REGISTRY if name not in _BUILT_IN))


def get_task(name: str) -> Task:
    """The task called ``name`` (any case); a ValueError naming ``task`` if there is none."""
    name = check_choice("task", name, task_names())
    if name not in _REGISTRY:
        module, _, attribute = _BUILT_IN[name].partition(":")
        register_task(getattr(importlib.import_module(module), attribute))
    return _REGISTRY[name]
