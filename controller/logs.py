"""structlog set-up: JSON lines in production, a console renderer for people.

Events are snake_case names with key-value fields, never f-strings:
``log.info("apply_succeeded", kind=..., name=...)``.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure(fmt: str = "json", level: str = "info") -> None:
    """Configure structlog and the standard library logging for the process."""
    renderer: structlog.typing.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


def get(name: str = "lensops") -> structlog.typing.FilteringBoundLogger:
    """A logger for a module."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)  # the wrapper_class that configure() sets
    return logger
