"""Tokenizers, dataset sources, cached token shards and batch sampling.

Members load on first use (llm_sweep.lazy): importing the config schema does not load torch.
"""
from llm_sweep.lazy import lazy_exports

_EXPORTS = {"BatchSampler": "batches", "BatchShare": "batches", "StepPrefetcher": "batches", "iter_eval_batches": "batches", "Splits": "prepare",
            "prepare_dataset": "prepare", "TokenShard": "shards", "EOT": "tokenizer",
            "encode_document": "tokenizer", "decode": "tokenizer", "gpt2_encoding": "tokenizer"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
