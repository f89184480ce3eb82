"""What other packages add to senet through entry points: attention kinds
(``senet.attention``) and tasks (``senet.tasks``). One loader for both."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Container
from typing import Any

from senet.errors import first_line

__all__ = ["load_entry_points"]


def load_entry_points(
    group: str, *, known: Container[str], register: Callable[[str, Any], None], what: str
) -> None:
    """``register(name, object)`` for each entry point of ``group`` whose lower-case name is
    not ``known``. One that fails to load or register is skipped with a one-line warning
    ("the attention kind 'x' (pkg.mod:Cls) could not be loaded: ImportError: ..."): a
    broken plugin must not break senet."""
    from importlib.metadata import entry_points

    for point in entry_points(group=group):
        if point.name.lower() in known:
            continue
        try:
            register(point.name, point.load())
        except Exception as error:  # noqa: BLE001 - any failure of another package's code
            warnings.warn(
                f"the {what} {point.name!r} ({point.value}) could not be loaded: "
                f"{type(error).__name__}: {first_line(error)}",
                stacklevel=3,
            )
