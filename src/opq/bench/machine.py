"""The machine a benchmark ran on: CPU, memory, limits, load and the library versions figures depend on."""

from __future__ import annotations

import os
import platform
import sqlite3
from pathlib import Path

import numba
import numpy as np
import zmq

from opq.box.fleet import open_files_limit


def machine() -> dict[str, str | int | float | None]:
    """The machine, its load now, and the versions of Python, numpy, numba, ZeroMQ and SQLite."""
    model = None
    try:
        with Path("/proc/cpuinfo").open(encoding="utf-8") as cpuinfo:
            model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), None)
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "processor": model or platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "open_files_limit": open_files_limit(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "sqlite": sqlite3.sqlite_version,
    }
