"""MLflow's own system metrics for a run: CPU, memory, disk and network, and with
nvidia-ml-py the utilization, memory and power of the job's GPUs (those in
CUDA_VISIBLE_DEVICES, not every GPU of a shared node), sampled from a background thread
and logged as `system/...`. Switch off with `tracking.system_metrics=false`."""
from __future__ import annotations

import logging
import os
from typing import Any

from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

log = logging.getLogger(__name__)


class SystemMetrics:
    def __init__(self, run_id: str, tracking_uri: str):
        self.monitor = SystemMetricsMonitor(run_id, tracking_uri=tracking_uri)
        for monitor in self.monitor.monitors:
            if isinstance(monitor, GPUMonitor):
                _keep_visible_gpus(monitor)
        self.monitor.start()

    def stop(self) -> None:
        self.monitor.finish()


def _keep_visible_gpus(monitor: Any) -> None:
    """Limit a GPU monitor to the devices CUDA_VISIBLE_DEVICES names (NVML indices or UUID
    prefixes), in that order: the metric names then count from 0 as CUDA numbers them."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return
    import pynvml  # an optional extra: llm_sweep[gpu]

    def uuid(handle: Any) -> str:
        value = pynvml.nvmlDeviceGetUUID(handle)
        return value.decode() if isinstance(value, bytes) else value

    handles = []
    for name in (device.strip() for device in visible.split(",") if device.strip()):
        if name.isdigit() and int(name) < len(monitor.gpu_handles):
            handles.append(monitor.gpu_handles[int(name)])
        else:
            handles += [h for h in monitor.gpu_handles if uuid(h).startswith(name)][:1]
    monitor.gpu_handles, monitor.num_gpus = handles, len(handles)
