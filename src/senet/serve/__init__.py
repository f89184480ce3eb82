"""``senet serve``: a local web page and JSON API for a face-emotion model.

Start it with ``senet serve MODEL`` (or :func:`serve`) and open http://127.0.0.1:8000/: drop
in a photo or take a webcam snapshot, and the page shows each face's box, its emotion with
all the probabilities, and the heatmap of where the model looked (the method and layer
named), under the model's card (classes, input, training data and the synthetic-data
warning when it applies). The same answers are JSON at ``POST /predict`` and ``POST
/explain`` (OpenAPI at ``/docs``).

The model runs as its LiteRT export by default (:mod:`senet.runtime`: made, checked and
cached on first use); heatmaps come from the Keras model (they need gradients). Needs the
``serve`` extra: ``pip install "senet[serve]"`` (FastAPI, uvicorn, python-multipart).

Pieces: :mod:`senet.serve.service` (uploads to answers, no web), :mod:`senet.serve.app`
(routes, limits, errors), ``static/`` (the page).
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from collections.abc import Callable

from senet.serve.service import Limits, Service, UploadError, sniff

__all__ = ["SERVE_HINT", "Limits", "Service", "UploadError", "create_app", "serve", "sniff"]

#: What to install when FastAPI or uvicorn is missing.
SERVE_HINT = 'pip install "senet[serve]"'
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def create_app(service: Service):
    """The ASGI application serving ``service`` (:func:`senet.serve.app.create_app`)."""
    _require()
    from senet.serve.app import create_app as build

    return build(service)


def _require() -> None:
    from senet.inference import require

    for module, package in (
        ("fastapi", "fastapi"),
        ("uvicorn", "uvicorn"),
        ("python_multipart", "python-multipart"),
    ):
        require(module, package, "senet serve", SERVE_HINT)


def _listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), for uvicorn to serve on.

    Raises:
        OSError: One line: the address is taken, or not this machine's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections accepted from
    # such a socket, and without it every answer on a kept-alive connection waited 40 ms
    # (Nagle's algorithm against the client's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


def serve(
    model_path: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    say: Callable[[str], None] | None = None,
    **options,
) -> None:
    """Serve ``model_path`` until interrupted (Ctrl-C or SIGTERM).

    Args:
        model_path: The model file.
        host: The address to listen on; anything but the loopback (127.0.0.1) is warned
            about: the server has no authentication.
        port: The port; 0 takes a free one (the URL printed says which).
        say: Where the start-up lines go (default stderr).
        **options: :class:`Service`'s (``runtime``, ``method``, ``limits``, ...).
    """
    _require()
    import uvicorn

    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    if host not in _LOOPBACK:
        warnings.warn(
            f"serving on {host}: anyone who can reach this machine can send images to the "
            "model and read its answers (senet serve has no authentication)",
            UserWarning,
            stacklevel=2,
        )
    sock = _listen(host, port)
    service = Service(model_path, say=say, **options)
    app = create_app(service)
    limits = service.limits
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=5,
        # connections beyond this get uvicorn's own 503; the JSON one comes first
        limit_concurrency=max(64, 4 * limits.max_pending),
        server_header=False,
    )
    actual = sock.getsockname()[1]
    shown = f"[{host}]" if sock.family == socket.AF_INET6 else host
    say(
        f"senet serve: {service.card['name']} ({service.engine}) on http://{shown}:{actual}/ "
        f"(API: /docs); Ctrl-C stops"
    )
    uvicorn.Server(config).run(sockets=[sock])  # until Ctrl-C or SIGTERM
    say("senet serve: stopped")
