"""Serve a rendered Space's ``app.py`` for ``zoo demo``: the app's gradio Blocks, mounted on a FastAPI app behind a
request-body limit, on a socket bound before anything is announced.

Run in the Space folder as ``python -m zoo.demo_server SETTINGS_JSON`` (``zoo.space.demo`` does). Why not
``demo.launch()``: launch has no body limit (gradio reads a JSON body of any size into memory before the app's input
check refuses it) and moves to the next free port without telling its caller. Here:

- a body over ``max_body_bytes`` is answered 413 from its Content-Length, before a byte of it is read (or, without
  one, as soon as the bytes read pass the limit), so no request can hold more than the limit in memory;
- the socket is bound first, so the URL printed is the one served (port 0 picks a free port), and a busy port is a
  one-line error;
- SIGTERM and SIGINT stop uvicorn cleanly; with ``PR_SET_PDEATHSIG`` the process also ends when ``zoo demo`` dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib.util
import json
import signal
import socket
import sys
from pathlib import Path
from typing import Any


class TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware refusing HTTP request bodies over ``limit`` bytes with 413."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(send)
        seen = 0
        started = False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise TooLarge
            return message

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"error": f"request body over the demo's limit of {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the parent (``zoo demo``) dies, even by SIGKILL; a no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` (0: any free port).

    Raises:
        SystemExit: the port is taken or not allowed, as one line.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as e:
        sock.close()
        why = "is in use" if e.errno == errno.EADDRINUSE else f"cannot be used ({e.strerror})"
        raise SystemExit(f"port {port} {why}: pick another with --port, or --port 0 for any free port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(settings: dict[str, Any]) -> None:
    import gradio as gr
    import uvicorn
    from fastapi import FastAPI

    sock = bind(int(settings["port"]))
    folder = Path.cwd()
    sys.path.insert(0, str(folder))  # the app imports modules beside it (the image Space's network code)
    spec = importlib.util.spec_from_file_location("space_app", folder / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # builds the Blocks and loads every variant; its __main__ launch is skipped
    app = gr.mount_gradio_app(FastAPI(), module.demo, path="", show_error=True,
                              max_file_size=settings.get("max_file_size"),
                              allowed_paths=settings.get("allowed_paths"))
    server = uvicorn.Server(uvicorn.Config(BodyLimit(app, int(settings["max_body_bytes"])), log_level="warning",
                                           timeout_graceful_shutdown=5, lifespan="on"))
    host, port = sock.getsockname()
    print(f"serving on http://{host}:{port} (request bodies up to {settings['max_body_bytes']} bytes)", flush=True)
    server.run(sockets=[sock])


def main() -> None:
    _die_with_parent()
    serve(json.loads(sys.argv[1]))


if __name__ == "__main__":
    main()
