"""The torch-free core: what a run is (the typed config, its rules, the budget and the
model's size) and what it leaves behind (the run record), the user-facing errors and the
one-line exit. Nothing here imports torch: a bad value fails before torch loads, and the
sweep callbacks, plan and report read configs without it (tests/test_architecture.py)."""
