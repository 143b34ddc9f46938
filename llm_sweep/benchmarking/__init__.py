"""Training throughput per numeric mode (`python -m llm_sweep.bench`): the training loop's own
step on random tokens, timed phase by phase, plus the batch sampler's rate."""
from llm_sweep.benchmarking.metrics import BenchRecord, PhaseTimes, compile_overhead_s
from llm_sweep.benchmarking.modes import MODES, BenchMode, parse_modes
from llm_sweep.benchmarking.results import BenchResult, format_report, read_bench, write_results
from llm_sweep.benchmarking.runner import run_bench

__all__ = ["BenchMode", "BenchRecord", "BenchResult", "MODES", "PhaseTimes", "compile_overhead_s",
           "format_report", "parse_modes", "read_bench", "run_bench", "write_results"]
