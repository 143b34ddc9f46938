"""The report and plan commands: tables, plots and conclusions from tracked runs, and
what each model preset can see in a time budget."""

CHINCHILLA_TOKENS_PER_PARAM = 20.0  # compute-optimal training (Hoffmann et al., 2022)
SEED_TOKENS_PER_PARAM = 6.0  # the seed result: wide3 for 3 h on one A100
