"""A service's health over HTTP as JSON (what Health and people read): a page per path, from a thread."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

Page = Callable[[], dict[str, Any]]


class HealthServer:
    """Serves each page's document as JSON at its path (`GET /`, `GET /boxes`, ...)."""

    def __init__(self, host: str, port: int, pages: Mapping[str, Page], *, name: str) -> None:
        known = ", ".join(pages)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page = pages.get(self.path.split("?", 1)[0])
                if page is None:
                    self._send(404, {"error": f"no such page {self.path!r}: try {known}"})
                    return
                try:
                    document = page()
                except Exception as err:  # a broken page must not take the server down
                    logger.exception("%s health page %s failed", name, self.path)
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
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"{name}-health", daemon=True)

    def start(self) -> None:
        """Start answering."""
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and release the port."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
