"""Makes this interpreter look like the GPU machine: the packages it lacks fail to import.

Put this folder first on PYTHONPATH (tests/test_gpu_check.py does for the check's dry run).
The GPU machine has torch, numpy, scipy, matplotlib, pyarrow and the carried wheels
(benchmarks/gpu_check.sh --wheels), but not the tracking and sweeping stack below; the paths
the check runs (bench, tracking=none training, the CUDA tests) must not need it.
"""
import importlib.abc
import sys

ABSENT = ("mlflow", "optuna", "submitit", "datasets", "hydra_plugins.hydra_submitit_launcher")


class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == top or name.startswith(top + ".") for top in ABSENT):
            raise ModuleNotFoundError(f"No module named '{name}' (absent on the GPU machine)",
                                      name=name)
        return None


sys.meta_path.insert(0, _Absent())
