"""Published reference points that reports and plans compare against."""

CHINCHILLA_TOKENS_PER_PARAM = 20.0  # compute-optimal training (Hoffmann et al., 2022)
SEED_TOKENS_PER_PARAM = 6.0  # the seed result: wide3 for 3 h on one A100
