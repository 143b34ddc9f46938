"""A metric sink that never makes training wait on the tracking store."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

from llm_sweep.tracking.redact import redact

log = logging.getLogger(__name__)

MetricValue = tuple[str, float, int, int]  # key, value, timestamp (ms), step
MAX_BATCH = 1000  # MLflow's limit on metrics per log_batch call
MAX_BACKOFF_S = 60.0
CLOSE_ATTEMPTS = 3


class BackgroundMetricLogger:
    """`log_metrics` only appends to a list; a daemon thread sends what is pending every
    `interval_s`, in batches, through `send`. Values the store refuses stay queued and are
    retried with backoff, so a store that is down for a while loses nothing."""

    def __init__(self, send: Callable[[list[MetricValue]], None], interval_s: float = 2.0):
        self._send = send
        self._interval_s = interval_s
        self._pending: list[MetricValue] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._deadline = 0.0
        self.sent = 0
        self.last_error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="mlflow-metrics", daemon=True)
        self._thread.start()

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        timestamp_ms = int(time.time() * 1000)
        with self._lock:
            self._pending.extend((key, float(value), timestamp_ms, step)
                                 for key, value in metrics.items())

    def close(self, timeout_s: float) -> int:
        """Send what is pending, within `timeout_s`; returns how many values were not sent."""
        self._deadline = time.monotonic() + timeout_s
        self._closing.set()
        self._thread.join(timeout_s)
        with self._lock:
            return len(self._pending)

    def _run(self) -> None:
        failures = 0
        while not self._closing.wait(min(self._interval_s * 2 ** min(failures, 6), MAX_BACKOFF_S)):
            if self._send_pending():
                failures = 0
            else:
                if failures == 0:
                    log.warning("MLflow: sending metrics failed (%s); keeping them to retry",
                                redact(str(self.last_error)))
                failures += 1
        # Closing: a few more tries, 1 s and 2 s apart, none started after the deadline.
        for attempt in range(CLOSE_ATTEMPTS):
            if attempt:
                time.sleep(min(2.0 ** (attempt - 1), max(0.0, self._deadline - time.monotonic())))
            if time.monotonic() >= self._deadline or self._send_pending():
                return

    def _send_pending(self) -> bool:
        """Send everything pending, oldest first; False when the store refuses a batch."""
        while True:
            with self._lock:
                batch = self._pending[:MAX_BATCH]
            if not batch:
                return True
            try:
                self._send(batch)
            except Exception as exc:  # any store or network failure: keep the values, retry later
                self.last_error = exc
                return False
            with self._lock:
                del self._pending[:len(batch)]  # only this thread removes, from the front
            self.sent += len(batch)
