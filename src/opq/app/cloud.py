"""The cloud side in one process tree: Makai's processes and a Mauka process, started and stopped together."""

from __future__ import annotations

import logging
import multiprocessing
import threading
from typing import Any

from opq.config import Settings
from opq.makai.service import Makai, MakaiConfig
from opq.mauka.registry import load_plugins
from opq.mauka.service import Mauka
from opq.store import open_store

logger = logging.getLogger(__name__)


def run_mauka(settings: Settings, db_url: str, stop: Any) -> None:
    """Body of the Mauka process: analyse until `stop` (a multiprocessing Event) is set."""
    stopping = threading.Event()

    def watch() -> None:
        stop.wait()
        stopping.set()

    threading.Thread(target=watch, daemon=True).start()
    plugins = load_plugins(settings.mauka)
    try:
        with open_store(db_url, settings.retention) as store:
            mauka = Mauka(store, settings.mauka, plugins)
            mauka.start()
            try:
                mauka.run(stopping)
            finally:
                mauka.close()
    except KeyboardInterrupt:
        pass


class Cloud:
    """Makai (three processes) and Mauka (one), on one database, for `opq serve` and `opq demo`.

    Mauka's settings are pointed at this Makai's live and event ports.
    """

    def __init__(self, settings: Settings, db_url: str, secret_key: str) -> None:
        makai = settings.makai
        host = makai.service_host
        mauka = settings.mauka.model_copy(
            update={
                "event_endpoint": f"tcp://{host}:{makai.event_port}",
                "live_endpoint": f"tcp://{host}:{makai.live_port}",
            }
        )
        self.settings = settings.model_copy(update={"mauka": mauka})
        self.makai = Makai(MakaiConfig(makai, db_url, settings.retention, secret_key))
        # fork, as Makai does: the child inherits the CLI's logging set-up.
        self._mp = multiprocessing.get_context("fork")
        self._stop_mauka = self._mp.Event()
        self._mauka = self._mp.Process(
            target=run_mauka, args=(self.settings, db_url, self._stop_mauka), name="mauka"
        )
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self.makai.run, args=(self._stop,), name="makai-watch")

    def start(self) -> None:
        """Start Mauka first (so it hears Makai's first announcement), then Makai."""
        self._mauka.start()
        self.makai.start()
        self._watcher.start()

    @property
    def mauka_alive(self) -> bool:
        """Whether the Mauka process still runs."""
        return self._mauka.is_alive()

    def stop(self) -> None:
        """Stop Makai (it writes what it holds), then Mauka."""
        self._stop.set()
        self._watcher.join()
        self.makai.stop()
        self._stop_mauka.set()
        self._mauka.join(timeout=15)
        if self._mauka.is_alive():
            logger.error("mauka did not stop: terminating it")
            self._mauka.terminate()
            self._mauka.join(timeout=5)
