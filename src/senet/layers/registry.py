"""Build any attention layer from a short name, so networks take ``attention="se"``."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import keras

from senet.layers.cbam import CBAM
from senet.layers.eca import EfficientChannelAttention
from senet.layers.spatial import ChannelSpatialSqueezeExcite, SpatialSqueezeExcite
from senet.layers.squeeze_excite import SqueezeExcite

_REGISTRY: dict[str, Callable[..., keras.layers.Layer]] = {
    "se": SqueezeExcite,
    "eca": EfficientChannelAttention,
    "sse": SpatialSqueezeExcite,
    "scse": ChannelSpatialSqueezeExcite,
    "cbam": CBAM,
}


def kinds() -> tuple[str, ...]:
    """The registered attention kinds, e.g. ``("se", "eca", "sse", "scse", "cbam")``."""
    return tuple(_REGISTRY)


def _is_none(kind) -> bool:
    return kind is None or (isinstance(kind, str) and kind.lower() == "none")


def register(kind: str, factory: Callable[..., keras.layers.Layer]) -> None:
    """Make ``attention(kind, ...)`` build ``factory(...)`` (a layer class or function).

    Kinds are case-insensitive, like :func:`attention`'s lookup: ``register("MyAttn", f)``
    is found by ``attention("myattn")`` and ``attention("MyAttn")``.
    """
    if not isinstance(kind, str) or not kind or _is_none(kind):
        raise ValueError(
            f"Expected `kind` to be a non-empty name other than 'none'. Received: kind={kind!r}"
        )
    if not callable(factory):
        raise ValueError(f"Expected `factory` to be callable. Received: factory={factory!r}")
    # attention() looks kinds up in lower case, so store them that way.
    _REGISTRY[kind.lower()] = factory


def _accepts(factory, option: str) -> bool:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True
    return option in parameters


def attention(
    kind: str | None, *, reduction: float | None = None, **options
) -> keras.layers.Layer | None:
    """Build an attention layer by name.

    Args:
        kind: One of :func:`kinds` (``"se"``, ``"eca"``, ``"sse"``, ``"scse"``,
            ``"cbam"``), or ``None``/``"none"`` for no attention (returns ``None``).
        reduction: Bottleneck reduction ratio, passed only to kinds that have a
            bottleneck (se, scse, cbam) and ignored by the others (eca, sse), so a
            network can take one ``reduction`` for any ``kind``.
        **options: The layer's own arguments (``name``, ``squeeze``, ``gate``, ...).

    Returns:
        A new, unbuilt layer, or ``None``.

    Example:
        >>> attention("se", reduction=16, name="block1_se").name
        'block1_se'
        >>> attention("none") is None
        True
    """
    if _is_none(kind):
        return None
    if not isinstance(kind, str) or kind.lower() not in _REGISTRY:
        raise ValueError(
            f"Expected `kind` to be one of {kinds() + ('none',)} or None. Received: kind={kind!r}"
        )
    factory = _REGISTRY[kind.lower()]
    if reduction is not None and _accepts(factory, "reduction"):
        options["reduction"] = reduction
    return factory(**options)


def load_model(path, **kwargs) -> keras.Model:
    """``keras.models.load_model`` with every senet layer registered (they are, once imported)."""
    return keras.models.load_model(path, **kwargs)
