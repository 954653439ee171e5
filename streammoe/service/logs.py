"""Structured logs for the daemon: one JSON object per line, or readable text.

Why: a daemon's logs are read by machines (log shippers, alerting) more than by people, so
each line carries its facts as fields (``partition``, ``epoch``, ``offsets``...) instead of
inside a sentence.  Call sites pass them with ``extra={"fields": {...}}`` (or
:func:`log_event`); the text format appends them as ``key=value``.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging", "log_event"]

_HANDLER_NAME = "streammoe-service"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...fields, "exc"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in _fields(record).items():
            body.setdefault(k, v)
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}" + (f" {extra}" if extra else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "INFO", json_lines: bool = True, stream: TextIO | None = None) -> None:
    """Send the ``streammoe`` loggers to ``stream`` (stderr) in the chosen format.  Calling
    it again replaces the previous handler instead of adding a second one."""
    logger = logging.getLogger("streammoe")
    for h in list(logger.handlers):
        if h.get_name() == _HANDLER_NAME:
            logger.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    # kafka-python is chatty at INFO (every rebalance step); keep its warnings.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def log_event(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """``logger.log(level, msg)`` with ``fields`` attached for the formatters."""
    logger.log(level, msg, extra={"fields": fields})
