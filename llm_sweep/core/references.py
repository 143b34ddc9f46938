"""Published reference points that reports and plans compare against."""

CHINCHILLA_TOKENS_PER_PARAM = 20.0  # compute-optimal training (Hoffmann et al., 2022)
SEED_TOKENS_PER_PARAM = 6.0  # the seed result: wide3 for 3 h on one A100

# The seed's run: wide3 (10 x 1024, 16 heads) at seq_len 512, ~100k tokens/s for 3 h.
SEED_PARAMS = 179_983_360
SEED_NON_EMBEDDING_PARAMS = 128_472_064
SEED_TOKENS = 1.08e9
SEED_FLOPS_PER_TOKEN = 1_142_814_720  # 6 N + 12 n_layer n_embd seq_len
SEED_COMPUTE = SEED_FLOPS_PER_TOKEN * SEED_TOKENS
