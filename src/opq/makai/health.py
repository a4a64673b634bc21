"""Makai's health over HTTP as JSON: `GET /` a summary, `GET /boxes` each box's newest measurement."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

Document = Callable[[], dict[str, Any]]


class HealthServer:
    """Serves `summary()` at / and `boxes()` at /boxes from a thread of its own."""

    def __init__(self, host: str, port: int, summary: Document, boxes: Document) -> None:
        routes = {"/": summary, "/boxes": boxes}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                if route is None:
                    self._send(404, {"error": f"no such page {self.path!r}: try / or /boxes"})
                    return
                self._send(200, route())

            def _send(self, status: int, document: dict[str, Any]) -> None:
                body = json.dumps(document, sort_keys=True).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("health: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="makai-health", daemon=True)

    def start(self) -> None:
        """Start answering."""
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
