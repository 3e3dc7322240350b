"""Prometheus metrics of the bot and the workers, served when ``REMIXBOT_METRICS_PORT`` is set.

Nothing is recorded, and ``prometheus_client`` (the ``metrics`` extra) is never imported, until
``serve`` is called; without the package ``serve`` says so in the log and every call stays a no-op.

    remixbot_queue_depth{group}                  jobs waiting (not running) in a queue
    remixbot_job_wait_seconds{group}             queued → started
    remixbot_job_run_seconds{group,model}        started → finished
    remixbot_jobs_total{group,model,outcome}     finished jobs: done, failed, cancelled
    remixbot_model_loads_total{model}            models loaded into memory
    remixbot_gpu_memory_bytes{device,kind}       allocated, reserved, free, total (workers with CUDA)
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)


class _Metrics:
    def __init__(self, prometheus: Any):
        self.queue_depth = prometheus.Gauge("remixbot_queue_depth", "Jobs waiting (not running) in a queue.", ["group"])
        self.wait = prometheus.Histogram(
            "remixbot_job_wait_seconds", "Seconds from queued to started.", ["group"], buckets=SECONDS
        )
        self.run = prometheus.Histogram(
            "remixbot_job_run_seconds", "Seconds from started to finished.", ["group", "model"], buckets=SECONDS
        )
        self.jobs = prometheus.Counter("remixbot_jobs", "Finished jobs by outcome.", ["group", "model", "outcome"])
        self.loads = prometheus.Counter("remixbot_model_loads", "Models loaded into memory.", ["model"])
        self.gpu_memory = prometheus.Gauge(
            "remixbot_gpu_memory_bytes", "GPU memory of a worker's device.", ["device", "kind"]
        )


_metrics: _Metrics | None = None


def serve(port: int, address: str = "0.0.0.0") -> bool:
    """Start recording and serve /metrics on ``port``. False (and a warning) without prometheus_client."""
    global _metrics
    try:
        import prometheus_client
    except ImportError:
        log.warning("REMIXBOT_METRICS_PORT is set but prometheus-client is missing: pip install 'remixbot[metrics]'")
        return False
    if _metrics is None:
        _metrics = _Metrics(prometheus_client)
    prometheus_client.start_http_server(port, addr=address)
    log.info("metrics on http://%s:%d/metrics", address, port)
    return True


def enabled() -> bool:
    return _metrics is not None


def queue_depth(group: str, waiting: int) -> None:
    if _metrics is not None:
        _metrics.queue_depth.labels(group).set(waiting)


def job_started(group: str, wait_seconds: float) -> None:
    if _metrics is not None:
        _metrics.wait.labels(group).observe(max(0.0, wait_seconds))


def job_finished(group: str, model: str, outcome: str, run_seconds: float) -> None:
    if _metrics is not None:
        _metrics.run.labels(group, model).observe(max(0.0, run_seconds))
        _metrics.jobs.labels(group, model, outcome).inc()


def model_loaded(model: str) -> None:
    if _metrics is not None:
        _metrics.loads.labels(model).inc()


def gpu_memory(device: str, amounts: dict[str, int]) -> None:
    """``amounts``: kind ("allocated", "reserved", "free", "total") → bytes."""
    if _metrics is not None:
        for kind, value in amounts.items():
            _metrics.gpu_memory.labels(device, kind).set(value)
