"""llm_sweep's Optuna sweeper for Hydra: `--multirun hydra/sweeper=optuna`."""
