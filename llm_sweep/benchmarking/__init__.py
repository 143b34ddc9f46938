"""Training throughput per numeric mode (`python -m llm_sweep.bench`): the training loop's own
step on random tokens, timed phase by phase, plus the batch sampler's rate."""
from llm_sweep.benchmarking.metrics import BenchRecord, PhaseTimes, compile_overhead_s, mfu, tokens_per_s
from llm_sweep.benchmarking.modes import MODES, BenchMode, parse_modes
from llm_sweep.benchmarking.report import BenchResult, format_report, write_results
from llm_sweep.benchmarking.runner import run_bench

__all__ = ["BenchMode", "BenchRecord", "BenchResult", "MODES", "PhaseTimes", "compile_overhead_s",
           "format_report", "mfu", "parse_modes", "run_bench", "tokens_per_s", "write_results"]
