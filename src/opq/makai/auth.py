"""Which boxes may connect: a ZAP allow-list of the registered boxes' CURVE keys, kept fresh.

A box's key maps to its box id, which ZeroMQ attaches to every message it sends as the
"User-Id" property: Makai checks it against the box id inside the message. ZAP runs only at the
handshake, so a box revoked while connected is caught by `BoxKeys.allows` on each message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Final

import zmq
import zmq.auth.thread

from opq.errors import OpqError
from opq.store import Store

logger = logging.getLogger(__name__)

_REFUSAL_LOG_INTERVAL_S: Final = 60.0


class BoxKeys:
    """The registered boxes' public keys (Z85) → box id, re-read from the store on `refresh`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._box_of_key: dict[str, str] = {}
        self._boxes: frozenset[str] = frozenset()
        self.refused: Counter[str] = Counter()
        """Refused handshakes per unknown key."""
        self._last_logged: dict[str, float] = {}
        self.refresh()

    def refresh(self) -> None:
        """Read the keys again: boxes added since get in, revoked ones no longer do."""
        box_of_key = self._store.boxes.public_keys()
        with self._lock:
            added = set(box_of_key.values()) - self._boxes
            self._box_of_key = box_of_key
            self._boxes = frozenset(box_of_key.values())
        if added:
            logger.info("boxes allowed in: %s", ", ".join(sorted(added)))

    def refresh_or_keep(self) -> None:
        """`refresh`, but if the store cannot be read, keep the keys already known (and say so)."""
        try:
            self.refresh()
        except OpqError as err:
            logger.warning("cannot re-read box keys, keeping the ones I have: %s", err)

    def box_of(self, key: str) -> str | None:
        """The box holding this key, if it is registered."""
        with self._lock:
            return self._box_of_key.get(key)

    def allows(self, box_id: str) -> bool:
        """Whether the box still has a registered key (it may have been revoked since it connected)."""
        return box_id in self._boxes

    def callback(self, _domain: str, key: bytes) -> bool:
        """ZAP credentials provider: let in only the keys of registered boxes."""
        text = key.decode("ascii", "replace")
        if self.box_of(text) is not None:
            return True
        self.refused[text] += 1
        now = time.monotonic()
        if now - self._last_logged.get(text, -_REFUSAL_LOG_INTERVAL_S) >= _REFUSAL_LOG_INTERVAL_S:
            self._last_logged[text] = now
            logger.warning("refused a box with unregistered key %s (%d times)", text, self.refused[text])
        return False


class _BoxAuthenticator(zmq.auth.thread.ThreadAuthenticator):
    """A ThreadAuthenticator whose User-Id for a CURVE client is its box id."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], keys: BoxKeys) -> None:
        super().__init__(context)
        self._keys = keys

    def curve_user_id(self, client_public_key: bytes) -> str:
        key = zmq.utils.z85.encode(client_public_key).decode("ascii")
        return self._keys.box_of(key) or ""


def start_authenticator(
    context: zmq.Context[zmq.Socket[bytes]], keys: BoxKeys
) -> zmq.auth.thread.ThreadAuthenticator:
    """Run ZAP for every CURVE server socket of `context`; stop() it before terminating the context."""
    authenticator = _BoxAuthenticator(context, keys)
    authenticator.start()
    authenticator.configure_curve_callback("*", credentials_provider=keys)
    return authenticator


MAX_FRAME_BYTES: Final = 64 * 1024
"""Largest frame a box may send (a measurement is ~100 bytes, a cycle 400): a bigger one drops its
connection before it is read into memory."""


def curve_server(socket: zmq.Socket[bytes], secret_key: str) -> None:
    """Make `socket` a CURVE server for boxes with the cloud's secret key (Z85); ZAP decides who gets in."""
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
    socket.curve_server = True
    socket.curve_secretkey = secret_key.encode("ascii")
    socket.zap_enforce_domain = False
