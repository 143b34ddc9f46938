"""`python -m llm_sweep.bench`: training throughput per numeric mode, the training loop's own
step on random tokens timed phase by phase (`runner.run_bench`), plus the batch sampler's rate."""
