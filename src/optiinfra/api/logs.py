"""Access logs written off the event loop.

uvicorn logs one line per request from its event loop, and its access formatter copies each record before
formatting it. At a few hundred requests a second that is several per cent of the loop's time, spent in front of
every waiting connection (health checks included). Here the loop only puts the record on a queue; a thread of its
own formats and writes it with uvicorn's own formatter, so the lines look exactly as before.
"""

from __future__ import annotations

import atexit
import copy
import logging
import queue
from logging.handlers import QueueHandler, QueueListener
from typing import Any

import uvicorn.config
import uvicorn.logging


class BackgroundHandler(QueueHandler):
    """Hands records to a listener thread that formats and writes them with `target`."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__(queue.SimpleQueue())
        self.listener = QueueListener(self.queue, target, respect_handler_level=True)
        self.listener.start()
        atexit.register(self.listener.stop)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The listener's handler formats the record; QueueHandler's own preparation would format it here, on the
        # caller's thread, and drop the arguments the access formatter needs.
        return record


def background_access_handler(fmt: str, stream: Any) -> BackgroundHandler:
    target = logging.StreamHandler(stream)
    target.setFormatter(uvicorn.logging.AccessFormatter(fmt=fmt))
    return BackgroundHandler(target)


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration with the access lines written by a background thread."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["handlers"]["access"] = {
        "()": "optiinfra.api.logs.background_access_handler",
        "fmt": config["formatters"]["access"]["fmt"],
        "stream": "ext://sys.stdout",
    }
    return config
