"""Tokenizers, dataset sources, cached token shards (`cache.prepare_dataset`) and batches."""
