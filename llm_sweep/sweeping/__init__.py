"""Sweep-level pieces: results table, preemption handling, Optuna pruning reports."""
