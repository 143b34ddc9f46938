"""Optimizers (AdamW, SophiaG; `build.build_optimizer`), their step hooks, and learning-rate
schedules."""
