"""Log setup: plain lines for people, JSON lines (``REMIXBOT_LOG_FORMAT=json``) for log collectors.

Every line logged while a job is handled carries its ``job_id``: code that handles a job wraps the
work in ``with job_context(job.id):`` (a context variable, so tasks started inside inherit it), or
passes ``extra={"job_id": …}``. Plain lines show it as ``[job 3f9a0c1b2d4e]``; JSON lines as a field.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
from collections.abc import Iterator

_current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("remixbot_job_id", default=None)

PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Tag every log line inside (and in tasks created inside) with ``job_id``."""
    token = _current_job.set(job_id)
    try:
        yield
    finally:
        _current_job.reset(token)


def bind_job(job_id: str) -> None:
    """Tag the log lines of the rest of the current task with ``job_id`` (arq runs each job in a task)."""
    _current_job.set(job_id)


class JobIdFilter(logging.Filter):
    """Gives each record a ``job_id`` attribute: its own ``extra``, the current job, or None."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = _current_job.get()
        return True


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(PLAIN)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        job_id = getattr(record, "job_id", None)
        if not job_id:
            return line
        head, _, rest = line.partition("\n")  # keep a traceback below the tagged line
        return f"{head} [job {job_id}]" + (f"\n{rest}" if rest else "")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job_id (when set), exception."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            entry["job_id"] = job_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str = "INFO", fmt: str = "plain") -> None:
    """Configure the root logger once for this process: ``fmt`` is "plain" or "json"."""
    handler = logging.StreamHandler()
    handler.addFilter(JobIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
