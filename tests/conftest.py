"""Shared test set-up: one token cache per test session, shared with subprocesses; the tiny
shapes runs train at; and the helpers that start the app as real processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ONE_PROCESS = REPO / "tests" / "fixtures" / "one_process.py"

# Under pytest-xdist (`-n 2` on 2 cores) each worker and the processes it starts compute on
# one thread: two workers of two threads each would oversubscribe the cores. A test that
# needs more sets OMP_NUM_THREADS for its own process.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# Tiny shapes that train in seconds on 2 CPU cores; UTF-8 bytes keep the embedding at 320
# rows (GPT-2's 50304 would be most of the model and of every step).
TINY = [
    "data.tokenizer=bytes", "model.n_layer=1", "model.n_embd=64", "model.head_dim=64",
    "batch.micro_batch_size=4", "batch.grad_accum=1", "batch.seq_len=32",
    "budget.time=null", "budget.steps=6", "eval.interval=0", "eval.batches=2",
    "eval.final_batches=2", "tracking=none", "compile=false",
]
# Two micro-batches per step: one per rank over 2 processes, both in one process.
DDP_TINY = [*[o for o in TINY if not o.startswith("batch.grad_accum")], "batch.grad_accum=2",
            "tracking.log_interval=1"]


@pytest.fixture(scope="session", autouse=True)
def token_cache(tmp_path_factory) -> Path:
    """Point every run (in-process and subprocess) at one session-wide token cache. Under
    pytest-xdist (`-n 2`) the workers share it: the cache's own file lock makes the first
    one to need a shard write it and the other wait for it."""
    shared = os.environ.get("LLM_SWEEP_TEST_CACHE")
    if shared is None and os.environ.get("PYTEST_XDIST_WORKER"):
        shared = str(tmp_path_factory.getbasetemp().parent / "token_cache")
    cache = Path(shared) if shared else tmp_path_factory.mktemp("token_cache")
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["LLM_SWEEP_CACHE"] = str(cache)
    return cache


@pytest.fixture(autouse=True)
def fresh_compile_cache():
    """Each test compiles from a clean dynamo cache: the graphs earlier tests compiled for
    the same code objects (a model's forward) would count toward dynamo's recompile limit,
    which is a hard error under fullgraph=True."""
    yield
    if "torch._dynamo" in sys.modules:
        sys.modules["torch._dynamo"].reset()


@pytest.fixture
def one_rank_env(monkeypatch) -> None:
    """The environment torchrun --nproc_per_node=1 gives its process (a free port)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0",
                       "LOCAL_RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def world_of_one(one_rank_env):
    """This process as a process group of one on Gloo: the DDP code paths, in-process."""
    from llm_sweep.training.distributed import join_world, leave_world

    world = join_world(60)
    assert world.distributed
    yield world
    leave_world()


def run_app(args: list[str], cwd: Path, module: str = "llm_sweep", timeout: float = 300,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m <module> <args>` as a real process and capture its output."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def run_in_processes(jobs: list[dict], folder: Path, processes: int = 2, timeout: float = 900) -> list[dict]:
    """Many `python -m` commands ({"module", "args", "cwd"}, tests/fixtures/one_process.py)
    in `processes` Python processes side by side, each running its share one after another,
    so the imports are paid once per process: their {"rc", "out", "cpu_s"}, in `jobs` order."""
    procs = [subprocess.Popen([sys.executable, str(ONE_PROCESS), str(folder / f"results{i}.json")],
                              stdin=subprocess.PIPE, text=True) for i in range(processes)]
    for i, proc in enumerate(procs):
        proc.stdin.write(json.dumps(jobs[i::processes]))
        proc.stdin.close()
    for proc in procs:
        assert proc.wait(timeout=timeout) == 0, "a command runner crashed: see its output above"
    shares = [json.loads((folder / f"results{i}.json").read_text()) for i in range(processes)]
    return [shares[i % processes][i // processes] for i in range(len(jobs))]


def torchrun(args: list[str], cwd: Path, nproc: int = 2, module: str | None = "llm_sweep",
             env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=<nproc> [-m <module>] <args>`, its output captured."""
    target = ["-m", module] if module else []
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={nproc}", *target, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def one_process_run(tmp_path_factory) -> Path:
    """DDP_TINY trained by one plain process, once per test worker: the run directory that
    runs of the same config over several processes are compared with (read it, never resume it)."""
    cwd = tmp_path_factory.mktemp("one_process")
    done = run_app([*DDP_TINY, "hydra.run.dir=run"], cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return cwd / "run"


def pytest_collection_modifyitems(items) -> None:
    """Tests that submit Slurm jobs are slow too: `-m "not slow"` is the fast lane."""
    for item in items:
        if item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.slow)


class StopAt:
    """A sink that interrupts training once a step is reached (a crash or a kill)."""

    def __init__(self, step: int):
        self.step = step

    def log_metrics(self, metrics: dict, step: int) -> None:
        if step >= self.step:
            raise KeyboardInterrupt
