"""``senet serve``'s web side: the page, the JSON API and the guards around them.

Routes (OpenAPI at ``/docs`` and ``/openapi.json``):

- ``GET /``: the page (``static/index.html``, plain HTML, CSS and JavaScript).
- ``GET /model``: the model card (:meth:`senet.serve.service.Service._card`).
- ``GET /health``: ``{"status": "ok", ...}`` and how busy the server is.
- ``POST /predict``: a multipart form with an image in ``file``; ``senet predict --json``'s
  object back: a classifier's ``path``, ``frame``, ``faces`` (``box``, ``label``,
  ``probabilities``); a detector's ``detections`` (``box``, ``class``, ``score``; ``?min_score=``)
  and ``best_score``; a segmentation model's ``shape``, ``classes`` (pixels, fraction) and
  ``mask`` and ``overlay`` as base64 PNGs.
- ``POST /explain`` (classifiers): the same upload; the prediction plus each face's heatmap
  (a PNG, base64) as JSON, or ``?format=png``: the photo with the heatmaps and boxes drawn in.

Guards: a body over :attr:`Limits.max_upload_bytes` is refused with 413 from its
Content-Length, or as soon as it grows past the cap while it streams in; a body that stalls
for :attr:`Limits.body_timeout` seconds gets 408; at most :attr:`Limits.max_pending`
requests are worked on or waiting at once (one more: 503 with Retry-After); an answer
that takes over :attr:`Limits.timeout` seconds is 504. Every error is JSON ``{"error":
message}``, never a traceback. No route reads a file or a model named by the client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sys
import threading
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from senet import __version__
from senet.errors import first_line
from senet.serve.service import Limits, Service, UploadError

__all__ = ["BodyLimit", "create_app"]

_Upload = Annotated[UploadFile, File(description="an image file (JPEG, PNG, WebP, ...)")]
_STATIC = resources.files("senet.serve") / "static"
#: The page may load its own script, style and images, and nothing else.
_PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'"
)


def _json(status: int, message: str, headers: dict[str, str] | None = None):
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: request bodies capped in bytes and in time, before any route reads
    them (the multipart parser included)."""

    def __init__(self, app, max_bytes: int, body_timeout: float):
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._drain(receive)
            await self._refuse(send, 413, self._too_large())
            return
        state = {"received": 0, "refusal": None, "started": False}

        async def limited_receive():
            if state["refusal"] is not None:
                return {"type": "http.disconnect"}
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                state["refusal"] = (
                    408,
                    f"the request body stalled for {self.body_timeout:g} s; send it whole",
                )
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["refusal"] = (413, self._too_large())
                    if message.get("more_body"):
                        await self._drain(receive)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            # the route's answer to a body cut short is replaced by the reason it was cut
            if state["refusal"] is not None:
                if message["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await self._refuse(send, *state["refusal"])
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if state["refusal"] is None:
                raise
            if not state["started"]:
                state["started"] = True
                await self._refuse(send, *state["refusal"])

    async def _drain(self, receive) -> None:
        """Read and drop the rest of a refused body (up to 64 MiB or 4 caps), so the client,
        still sending, reads the refusal instead of a connection reset."""
        left = max(4 * self.max_bytes, 64 * 2**20)
        while left > 0:
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                return
            if message["type"] != "http.request":
                return
            left -= len(message.get("body", b""))
            if not message.get("more_body"):
                return

    def _too_large(self) -> str:
        return f"the request body is over the upload cap of {self.max_bytes} bytes"

    @staticmethod
    async def _refuse(send, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _Slots:
    """At most ``size`` requests in the model's queue; the rest are turned away at once."""

    def __init__(self, size: int):
        self.size = size
        self.busy = 0
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(size, thread_name_prefix="senet-serve")

    async def run(self, timeout: float, function):
        with self._lock:
            if self.busy >= self.size:
                raise UploadError(
                    f"busy: {self.busy} requests are being answered; try again shortly", 503
                )
            self.busy += 1

        def work():
            try:
                return function()
            finally:  # the slot is held until the work is done, timed out or not
                with self._lock:
                    self.busy -= 1

        future = asyncio.get_running_loop().run_in_executor(self._pool, work)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise UploadError(
                f"no answer within {timeout:g} s (the server is overloaded or the image "
                "is too large); try again or send a smaller image",
                504,
            ) from None


def create_app(service: Service):
    """The FastAPI application serving ``service`` (wrapped in :class:`BodyLimit`)."""
    limits: Limits = service.limits
    slots = _Slots(limits.max_pending)
    app = FastAPI(
        title="senet serve",
        version=__version__,
        description=(
            f"Faces, emotions and where the model looked, for {service.card['name']}. "
            "Upload an image as multipart form field `file`. Errors are JSON "
            '`{"error": message}`.'
        ),
        redoc_url=None,
    )

    @app.exception_handler(UploadError)
    async def _upload_error(request: Request, error: UploadError):
        headers = {"Retry-After": "1"} if error.status == 503 else None
        return _json(error.status, str(error), headers)

    @app.exception_handler(ValueError)
    async def _bad_value(request: Request, error: ValueError):
        return _json(400, first_line(error))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException):
        return _json(error.status_code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem.get('loc', ()))}: {problem.get('msg')}"
            for problem in error.errors()
        )
        hint = " (send the image as multipart form field 'file')" if "file" in problems else ""
        return _json(422, f"bad request: {problems}{hint}")

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, error: Exception):
        print(
            f"senet serve: {request.method} {request.url.path} failed: "
            f"{type(error).__name__}: {first_line(error)}",
            file=sys.stderr,
            flush=True,
        )
        return _json(500, f"internal error ({type(error).__name__}); the server log says more")

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.url.path == "/":
            response.headers["Content-Security-Policy"] = _PAGE_POLICY
        return response

    page = (_STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    app.mount("/static", StaticFiles(directory=str(_STATIC)), name="static")

    @app.get("/health", summary="Is the server up, and how busy is it")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": service.card["name"],
            "runtime": service.engine,
            "busy": slots.busy,
            "capacity": slots.size,
        }

    @app.get("/model", summary="The model card: classes, input, training data, warnings")
    async def model() -> dict[str, Any]:
        return service.card

    async def _read(file: UploadFile) -> tuple[bytes, str]:
        raw = await file.read(limits.max_upload_bytes + 1)
        return raw, file.filename or "upload"

    @app.post(
        "/predict",
        summary="Faces and their emotions; a detector's boxes; a segmentation's label map "
        "(senet predict --json's schema)",
    )
    async def predict(
        file: _Upload,
        min_score: Annotated[
            float | None,
            Query(ge=0, le=1, description="a detector's lowest score answered (default 0.5)"),
        ] = None,
    ) -> dict:
        raw, name = await _read(file)
        return await slots.run(
            limits.timeout, lambda: service.predict(raw, name, min_score=min_score)
        )

    @app.post(
        "/explain",
        summary="The prediction plus each face's heatmap; or the photo with them drawn in",
        responses={200: {"content": {"image/png": {}}}},
    )
    async def explain(
        file: _Upload,
        format: Annotated[str, Query(pattern="^(json|png)$", description="json or png")] = "json",
        method: Annotated[
            str | None,
            Query(description="gradcam, gradxact, gradcam++, intgrad or attention"),
        ] = None,
    ):
        raw, name = await _read(file)
        if format == "png":
            png = await slots.run(
                limits.timeout, lambda: service.explain_png(raw, name, method=method)
            )
            return Response(png, media_type="image/png")
        answer = await slots.run(limits.timeout, lambda: service.explain(raw, name, method=method))
        return JSONResponse(answer)

    return BodyLimit(app, limits.max_upload_bytes, limits.body_timeout)
