"""Mauka's health over HTTP as JSON: `GET /` the summary document, from a thread of its own."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)


class HealthServer:
    """Serves `summary()` at / (and /status, the original StatusPlugin's page)."""

    def __init__(self, host: str, port: int, summary: Callable[[], dict[str, Any]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] not in ("/", "/status"):
                    self._send(404, {"error": f"no such page {self.path!r}: try /"})
                    return
                try:
                    document = summary()
                except Exception as err:  # a broken page must not take the server down
                    logger.exception("health summary failed")
                    self._send(500, {"ok": False, "error": repr(err)})
                    return
                self._send(200, document)

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
        self._thread = threading.Thread(target=self._server.serve_forever, name="mauka-health", daemon=True)

    def start(self) -> None:
        """Start answering."""
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and release the port."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
