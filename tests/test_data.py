"""Token shards, batch sampling and document sources."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from llm_sweep.core.errors import ConfigError, DataError
from llm_sweep.core.world import BatchShare
from llm_sweep.data.batches import BatchSampler, StepPrefetcher, iter_eval_batches
from llm_sweep.data.shards import HEADER, MAGIC, TokenShard
from llm_sweep.data.sources import shakespeare_documents, text_documents

# --- shards -------------------------------------------------------------------------

def test_shard_round_trip_is_a_read_only_memmap(tmp_path):
    path = tmp_path / "train.bin"
    shard = TokenShard.write(path, np.arange(1000, dtype=np.int64) * 50)
    assert path.stat().st_size == HEADER.size + 2 * 1000
    assert path.read_bytes()[:8] == MAGIC
    reopened = TokenShard.open(path)
    assert (len(reopened), reopened.path, reopened.tokens.dtype) == (1000, path, np.uint16)
    assert int(reopened.tokens[-1]) == 49_950 and np.array_equal(reopened.tokens, shard.tokens)
    with pytest.raises(ValueError, match="read-only"):
        reopened.tokens[0] = 1


def test_shard_streams_chunks(tmp_path):
    chunks = (np.full(n, n, dtype=np.uint16) for n in (3, 1, 5))
    shard = TokenShard.write(tmp_path / "val.bin", chunks)
    assert shard.tokens.tolist() == [3, 3, 3, 1, 5, 5, 5, 5, 5]


def test_ids_outside_uint16_are_refused_and_leave_no_file(tmp_path):
    with pytest.raises(DataError, match=r"train\.bin: token id 65536 does not fit in uint16"):
        TokenShard.write(tmp_path / "train.bin", np.array([1, 65536]))
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_previous_shard(tmp_path):
    path = tmp_path / "train.bin"
    TokenShard.write(path, np.arange(10, dtype=np.uint16))

    def dies_midway():
        yield np.arange(5, dtype=np.uint16)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        TokenShard.write(path, dies_midway())
    assert TokenShard.open(path).tokens.tolist() == list(range(10))
    assert [p.name for p in tmp_path.iterdir()] == ["train.bin"]


def test_truncated_shard_is_rejected_naming_the_path(tmp_path):
    path = tmp_path / "train.bin"
    TokenShard.write(path, np.arange(100, dtype=np.uint16))
    with open(path, "r+b") as file:
        file.truncate(HEADER.size + 150)
    with pytest.raises(DataError, match=rf"{path} is truncated.*100 tokens.*174 bytes.*delete it"):
        TokenShard.open(path)


def test_killed_writer_leaves_a_file_that_does_not_validate(tmp_path):
    # what a writer killed before its final header update leaves under its temp name
    path = tmp_path / ".train.bin.123.tmp"
    path.write_bytes(HEADER.pack(MAGIC, 1, 1, 0) + np.arange(50, dtype=np.uint16).tobytes())
    with pytest.raises(DataError, match="header says 0 tokens"):
        TokenShard.open(path)


def test_foreign_and_missing_files_are_rejected(tmp_path):
    foreign = tmp_path / "train.bin"
    foreign.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(DataError, match=rf"{foreign} is not a token shard"):
        TokenShard.open(foreign)
    (tmp_path / "tiny.bin").write_bytes(b"LLM")
    with pytest.raises(DataError, match=r"tiny\.bin is truncated \(3 bytes"):
        TokenShard.open(tmp_path / "tiny.bin")
    with pytest.raises(DataError, match=r"missing\.bin does not exist.*llm_sweep\.prepare"):
        TokenShard.open(tmp_path / "missing.bin")


# --- batches ------------------------------------------------------------------------

@pytest.fixture
def counting_shard(tmp_path) -> TokenShard:
    """Token i has id i, so a window's ids reveal where it was cut."""
    return TokenShard.write(tmp_path / "train.bin", np.arange(10_000, dtype=np.uint16))


def test_batch_is_a_pure_function_of_seed_step_micro(counting_shard):
    sampler = BatchSampler(counting_shard, micro_batch_size=8, seq_len=64, seed=7)
    x, y = sampler.get(step=3, micro=1)
    assert x.shape == y.shape == (8, 64) and x.dtype == y.dtype == torch.int64
    resumed = BatchSampler(counting_shard, micro_batch_size=8, seq_len=64, seed=7)
    assert torch.equal(resumed.get(3, 1)[0], x) and torch.equal(resumed.get(3, 1)[1], y)
    others = [sampler.get(4, 1), sampler.get(3, 0), BatchSampler(counting_shard, 8, 64, seed=8).get(3, 1)]
    for other_x, _ in others:
        assert not torch.equal(other_x, x)


def test_processes_cut_their_rows_of_the_same_micro_batch(counting_shard):
    whole = BatchSampler(counting_shard, micro_batch_size=8, seq_len=16, seed=7).get(3, 1)
    parts = [BatchSampler(counting_shard, 8, 16, seed=7, rows=slice(i, i + 2)).get(3, 1) for i in (0, 2, 4, 6)]
    assert torch.equal(torch.cat([x for x, _ in parts]), whole[0])
    assert torch.equal(torch.cat([y for _, y in parts]), whole[1])


def _global_batch(shares: list[BatchShare], micro_batch_size: int) -> list[tuple[int, int]]:
    return sorted((micro, row) for share in shares for micro in share.micro_batches
                  for row in range(micro_batch_size)[share.rows])


@pytest.mark.parametrize("micro_batch_size,grad_accum,world_size,splits", [
    (16, 1, 1, 1), (16, 1, 2, 2), (64, 4, 2, 1), (64, 4, 8, 2), (8, 3, 2, 2), (12, 6, 4, 2), (4, 2, 4, 2)])
def test_every_world_size_runs_exactly_the_global_batch(micro_batch_size, grad_accum, world_size, splits):
    shares = [BatchShare.of(micro_batch_size, grad_accum, rank, world_size) for rank in range(world_size)]
    assert _global_batch(shares, micro_batch_size) == [(m, r) for m in range(grad_accum)
                                                       for r in range(micro_batch_size)]
    assert {s.row_splits for s in shares} == {splits}
    assert len({len(s.micro_batches) for s in shares}) == 1  # every process does equal work
    assert len({s.rows.stop - s.rows.start for s in shares}) == 1
    # The last micro-batch: its holders' weights make the mean over processes its gradient.
    held = [s.last_micro_batch(grad_accum) for s in shares]
    assert sum(weight for _, weight in held) == world_size  # DDP divides by world_size
    assert sorted(row for row, weight in held if weight) == list(range(0, micro_batch_size, micro_batch_size // splits))


def test_a_batch_that_cannot_split_evenly_is_refused_naming_the_keys():
    with pytest.raises(ConfigError, match=r"batch.micro_batch_size=6 x batch.grad_accum=1 does not split evenly "
                                          r"over 4 processes.*divisible by 4.*multiple of 4"):
        BatchShare.of(6, 1, rank=0, world_size=4)


def test_targets_are_inputs_shifted_by_one(counting_shard):
    x, y = BatchSampler(counting_shard, micro_batch_size=16, seq_len=32, seed=0).get(0, 0)
    assert torch.equal(y, x + 1)  # contiguous windows of the counting shard
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert x.is_contiguous() and y.is_contiguous()


def test_windows_reach_both_ends_and_never_overrun(tmp_path):
    shard = TokenShard.write(tmp_path / "train.bin", np.arange(34, dtype=np.uint16))
    sampler = BatchSampler(shard, micro_batch_size=64, seq_len=32, seed=0)
    first_ids = {int(i) for step in range(4) for i in sampler.get(step, 0)[0][:, 0]}
    assert first_ids == {0, 1}  # the only two windows of 33 tokens in 34
    assert int(sampler.get(0, 0)[1].max()) == 33


def test_sequence_longer_than_the_split_names_the_key(counting_shard):
    with pytest.raises(DataError, match=r"batch\.seq_len=10000 needs windows of 10001 tokens but "
                                        r"the train split .* has only 10,000 tokens"):
        BatchSampler(counting_shard, micro_batch_size=1, seq_len=10_000, seed=0)
    with pytest.raises(DataError, match=r"batch\.seq_len=20000"):
        iter_eval_batches(counting_shard, micro_batch_size=1, seq_len=20_000)


def test_eval_batches_are_contiguous_full_batches(tmp_path):
    shard = TokenShard.write(tmp_path / "val.bin", np.arange(1001, dtype=np.uint16))
    batches = list(iter_eval_batches(shard, micro_batch_size=4, seq_len=10))
    assert len(batches) == 25  # 100 windows of 10 predicted tokens
    inputs = torch.cat([x for x, _ in batches]).flatten()
    targets = torch.cat([y for _, y in batches]).flatten()
    assert torch.equal(inputs, torch.arange(1000)) and torch.equal(targets, torch.arange(1, 1001))
    again = list(iter_eval_batches(shard, micro_batch_size=4, seq_len=10, max_batches=3))
    assert len(again) == 3 and all(torch.equal(a[0], b[0]) for a, b in zip(again, batches))


def test_eval_drops_the_partial_batch_unless_it_is_the_only_one(tmp_path):
    shard = TokenShard.write(tmp_path / "val.bin", np.arange(1001, dtype=np.uint16))
    sizes = [x.shape[0] for x, _ in iter_eval_batches(shard, micro_batch_size=4, seq_len=100)]
    assert sizes == [4, 4]  # windows 9 and 10 dropped
    short = TokenShard.write(tmp_path / "short.bin", np.arange(31, dtype=np.uint16))
    (x, y), = iter_eval_batches(short, micro_batch_size=4, seq_len=10)
    assert x.shape == (3, 10) and int(y[-1, -1]) == 30


# --- sources ------------------------------------------------------------------------

def test_shakespeare_is_38_plays_in_file_name_order():
    plays = list(shakespeare_documents())
    assert len(plays) == 38
    assert plays[0].startswith("# A Midsummer Night's Dream")  # comedies/a-midsummer-...
    assert plays[-1].startswith("# Timon of Athens")  # tragedies/timon-of-athens.md
    assert 5_000_000 < sum(map(len, plays)) < 5_600_000


def test_text_folders_are_walked_recursively_in_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.md").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "notes.csv").write_text("ignored,in,folders")
    records = [{"text": "third"}, {"text": ""}, {"text": "fourth", "meta": {"lang": "en"}}]
    (tmp_path / "c.jsonl").write_text("\n".join(map(json.dumps, records)) + "\n\n")
    extra = tmp_path.parent / f"{tmp_path.name}-extra.txt"
    extra.write_text("fifth")
    assert list(text_documents([str(tmp_path), str(extra)])) == ["first", "second", "third",
                                                                 "fourth", "fifth"]


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt", b"", r"empty\.txt is empty"),
    ("latin.txt", b"caf\xe9 au lait", r"latin\.txt is not UTF-8: byte 0xe9 at offset 3"),
    ("records.jsonl", b'{"text": "ok"}\n{"body": "no text"}\n',
     r"records\.jsonl:2: the record has no string 'text' field"),
    ("broken.jsonl", b'{"text": "ok"}\n{"text": \n', r"broken\.jsonl:2 is not valid JSON"),
])
def test_bad_text_files_are_named(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message):
        list(text_documents([str(tmp_path / name)]))


def test_missing_or_unsupported_paths_are_named(tmp_path):
    with pytest.raises(DataError, match=r"data\.paths: .*nowhere\.txt does not exist"):
        list(text_documents([str(tmp_path / "nowhere.txt")]))
    (tmp_path / "table.csv").write_text("a,b")
    with pytest.raises(DataError, match=r"table\.csv is not a \.txt/\.md/\.jsonl file"):
        list(text_documents([str(tmp_path / "table.csv")]))
    with pytest.raises(DataError, match=r"data\.paths=.* holds no \.txt/\.md/\.jsonl files"):
        list(text_documents([str(tmp_path)]))
    with pytest.raises(DataError, match=r"data\.name=text needs data\.paths"):
        list(text_documents([]))


# --- the step prefetcher ----------------------------------------------------------------

def same_batches(got, expected) -> bool:
    return len(got) == len(expected) and all(
        torch.equal(x, ex) and torch.equal(y, ey) for (x, y), (ex, ey) in zip(got, expected))


class RecordingSampler(BatchSampler):
    """Notes which thread sampled each (step, micro)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[int, int, str]] = []

    def get(self, step, micro):
        self.calls.append((step, micro, threading.current_thread().name))
        return super().get(step, micro)


def test_prefetched_steps_are_the_samplers_batches_prepared_in_the_background(counting_shard):
    sampler = RecordingSampler(counting_shard, micro_batch_size=4, seq_len=16, seed=3)
    reference = BatchSampler(counting_shard, micro_batch_size=4, seq_len=16, seed=3)
    with StepPrefetcher(sampler, range(3)) as prefetcher:
        for step in range(4):
            expected = [reference.get(step, micro) for micro in range(3)]
            assert same_batches(prefetcher.batches(step), expected)
    threads = {(step, micro): name for step, micro, name in sampler.calls}
    assert threads[0, 0] == threading.current_thread().name  # nothing was prepared yet
    assert all(threads[step, micro].startswith("step-prefetch")
               for step in (1, 2, 3) for micro in range(3))


def test_prefetcher_serves_steps_in_any_order(counting_shard):
    sampler = BatchSampler(counting_shard, micro_batch_size=2, seq_len=8, seed=0)
    with StepPrefetcher(sampler, range(2)) as prefetcher:
        for step in (17, 18, 3, 3, 40, 41, 42, 0):  # a resume, a repeat, jumps back and ahead
            expected = [sampler.get(step, micro) for micro in range(2)]
            assert same_batches(prefetcher.batches(step), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_prefetched_cuda_batches_equal_the_cpu_ones(counting_shard):
    on_cpu = BatchSampler(counting_shard, micro_batch_size=8, seq_len=64, seed=5)
    on_cuda = BatchSampler(counting_shard, micro_batch_size=8, seq_len=64, seed=5, device="cuda")
    with StepPrefetcher(on_cuda, range(2)) as prefetcher:
        for step in (0, 1, 2, 7):
            got = prefetcher.batches(step)
            assert all(x.is_cuda and y.is_cuda for x, y in got)
            expected = [on_cpu.get(step, micro) for micro in range(2)]
            assert same_batches([(x.cpu(), y.cpu()) for x, y in got], expected)
