"""Offline GPT-2 tokenizer, dataset sources, cached token shards and batch sampling."""
from llm_sweep.data.batches import BatchSampler, iter_eval_batches
from llm_sweep.data.prepare import Splits, prepare_dataset
from llm_sweep.data.shards import TokenShard
from llm_sweep.data.tokenizer import EOT, encode_document, gpt2_encoding

__all__ = ["BatchSampler", "EOT", "Splits", "TokenShard", "encode_document", "gpt2_encoding",
           "iter_eval_batches", "prepare_dataset"]
