"""Every command shown in README.md and docs/*.md is run by a test (docs/testing.md).

The commands are read from the pages' fenced `bash`, `sh` and `console` blocks. `TABLE`
says how each one is run: as written (`run`), as written plus listed arguments that make it
cheap on a CPU (`shrunk`), by another test or CI whose file still holds it (`covered`), or,
where it cannot run here, through its `--help` (`help`). A command of the pages missing from
the table fails, and so does an entry whose command left the pages.

The Python commands run one after another in one process (tests/fixtures/one_process.py),
those that need a trained run in a second one, which spares each the 3-5 s of its imports
and start-up. pytest, a server, a command that sets its environment (but for its threads) and
one that is not Python run in a process of their own."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND_BLOCKS = ("bash", "sh", "console")
# Shell set-up, not a command of its own: it prepares the shell for the lines after it.
SETUP = re.compile(r"^(\. \S+|source \S+|cd \S+|export [A-Za-z_]\w*=\S+)$")
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")
ONE_PROCESS = REPO / "tests" / "fixtures" / "one_process.py"


# --- the commands of the pages -------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    page: str            # README.md, docs/<page>.md
    text: str            # one line: continuations joined, comment dropped, spaces collapsed
    stdin: str = ""      # a heredoc's body
    prints: tuple = ()   # console blocks: the lines the page shows after it


def drop_comment(line: str) -> str:
    """The line without its `# comment` (a `#` at the start or after a space, not quoted)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def fenced_blocks(text: str):
    """(tag, lines) of every fenced code block, its indentation removed."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        i += 1
        if not opening:
            continue
        indent, tag, body = len(opening.group(1)), opening.group(2), []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:])
            i += 1
        i += 1
        yield tag, body


def block_commands(page: str, tag: str, body: list[str]) -> list[Command]:
    commands: list[Command] = []
    i = 0
    while i < len(body):
        line = body[i]
        i += 1
        if tag == "console":
            if not line.startswith("$ "):
                if commands and line.strip():
                    last = commands[-1]
                    commands[-1] = Command(last.page, last.text, last.stdin, (*last.prints, line.strip()))
                continue
            line = line[2:]
        while line.rstrip().endswith("\\") and i < len(body):
            line = line.rstrip()[:-1] + " " + body[i]
            i += 1
        text = " ".join(drop_comment(line).split())
        if not text or SETUP.match(text):
            continue
        stdin = ""
        heredoc = HEREDOC.search(text)
        if heredoc:
            end = body.index(heredoc.group(1), i)
            stdin, i = "\n".join(body[i:end]) + "\n", end + 1
        commands.append(Command(page, text, stdin))
    return commands


def collect() -> list[Command]:
    found = []
    for path in PAGES:
        for tag, body in fenced_blocks(path.read_text()):
            if tag in COMMAND_BLOCKS:
                found += block_commands(str(path.relative_to(REPO)), tag, body)
    return found


# --- how each command is run -----------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    kind: str                  # run | shrunk | covered | help
    expect: str = ""           # printed by the command (stdout or stderr)
    add: tuple = ()            # shrunk: arguments appended to the command
    swap: tuple = ()           # shrunk: (text, replacement) pairs, in the command and its heredoc
    env: tuple = ()            # (name, value) pairs for its environment
    rc: int = 0
    shared: bool = False       # runs in the folder of the trained run and sweep, not a fresh one
    after: str = ""            # a command of the table that runs first (once) in the same folder
    in_repo: bool = False      # runs in the repository's root (pytest's own commands)
    files: tuple = ()          # (path in its folder, file of the repository) pairs copied there first
    by: str = ""               # covered: the file that runs it
    held: str = ""             # covered: how that file holds it, when not as the page shows it
    why: str = ""              # why not as written


def run(expect: str, **kw) -> Entry:
    return Entry("run", expect=expect, **kw)


def shrunk(why: str, *add: str, expect: str, **kw) -> Entry:
    return Entry("shrunk", expect=expect, add=add, why=why, **kw)


def covered(by: str, why: str, held: str = "") -> Entry:
    return Entry("covered", by=by, why=why, held=held)


def help_(why: str) -> Entry:
    return Entry("help", why=why)


# Cheap on a CPU: the UTF-8 bytes tokenizer, 2 steps of 2 x 32 tokens, a one-batch evaluation,
# and no measurement of the CPU's dtypes and peak FLOP/s.
CPU = ("device=cpu", "dtype=fp32", "peak_flops=1e11", "data.tokenizer=bytes", "budget.time=null", "budget.steps=2",
       "batch.micro_batch_size=2", "batch.grad_accum=1", "batch.seq_len=32", "eval.interval=0",
       "eval.batches=1", "eval.final_batches=1", "compile=false")
# A GPU run or a long sweep is shown instead of launched: every job composed as the launcher
# would, its cost and the launcher's plan. device=cuda prices it at a GPU's expected rate
# (on a CPU a dry run would time each shape here, a minute for wide3).
DRY = ("sweep.dry_run=true", "device=cuda")
DRY_ONE = (*DRY, "--multirun")  # a single run, as the one job of a sweep
GPU = "meant for a GPU or a cluster: its dry run"
LONG = "minutes to hours of CPU training: its dry run"
SMALL = ("batch.micro_batch_size=2", "batch.seq_len=32", "peak_flops=1e11")
BENCH = ("bench.warmup_steps=1", "bench.steps=1", *SMALL)
COLLECT = ("tests/test_budget.py", "tests/test_sweeps_slurm.py", "--collect-only", "-n", "0", "-p", "no:cacheprovider")
TRAIN = "python -m llm_sweep"
SWEEP = "python -m llm_sweep --multirun +sweep=width_vs_depth_cpu"
EXPORT = "python -m llm_sweep.export outputs/2026-11-27/10-00-00 hf_model/"
BENCH_TINY = "python -m llm_sweep.bench model=tiny device=cpu"
# report/fit.json of a report --fit: a fit of synthetic runs that follow Chinchilla's law, made
# as tests/test_plan.py makes its own (test_fit.synthetic_runs(noise=0.001), 20 resamples).
CHINCHILLA = (("report/fit.json", "tests/fixtures/chinchilla_fit.json"),)
DESIGN = "10 simulated studies instead of 200, in one process"

TABLE: dict[str, Entry] = {
    # README.md: install, tests, quick start
    "python3 -m venv .venv && . .venv/bin/activate": covered(".ci/run", "CI installs from scratch"),
    "pip install torch==2.13.0": covered(".ci/run", "CI installs from scratch (quietly: -q)"),
    'pip install -e ".[dev]" --config-settings editable_mode=compat': covered(".ci/run", "CI installs from scratch"),
    "python -m pytest -q -n 2 --dist loadfile": covered(".ci/run", "CI runs the suite, this file included"),
    'python -m pytest -q -m "not slow" -n 2': shrunk(
        "the fast lane runs for a minute: its selection is collected from two files", *COLLECT,
        expect="deselected", in_repo=True),
    TRAIN: shrunk("2 training steps instead of 30 s", *CPU, "hydra.run.dir=outputs/quick",
                  expect="final val", shared=True),
    "python -m llm_sweep model=wide3 optim=adamw": shrunk(GPU, *DRY_ONE, expect="| 180M |"),
    "python -m llm_sweep experiment=lauzhack_final": shrunk(GPU, *DRY_ONE, expect="| 180M |"),
    "python -m llm_sweep --multirun model.n_embd=768,1024": shrunk(GPU, *DRY, expect="2 job(s)"),
    "mlflow ui --backend-store-uri sqlite:///mlflow.db": shrunk(
        "a server: started on a free port, asked for the trained run's metrics, stopped",
        "--port", "{port}", "--workers", "1", expect="final/val_loss", shared=True, after=TRAIN),
    # docs/configuration.md
    "python -m llm_sweep model.dropout=1.5": run("error: model.dropout=1.5", rc=2),
    "python -m llm_sweep data.tokenizer=bytes budget.time=null budget.flops=3e12 +shape=2x128": shrunk(
        "two minutes of CPU training: its dry run shows the FLOP budget binding", *DRY_ONE, expect="| flops |"),
    # docs/data.md
    "python -m llm_sweep.prepare data=slimpajama": shrunk(
        "offline: the hub switched off, it must say to set data.source", "data.cache_dir=cache",
        env=(("HF_HUB_OFFLINE", "1"), ("HF_HOME", "{empty}")), rc=2, expect="set data.source=/path/to/local/copy"),
    "python -m llm_sweep.prepare data=slimpajama data.source=/datasets/slimpajama-6b/": shrunk(
        "a local copy of a few records stands in for SlimPajama", "data.cache_dir=cache",
        swap=(("/datasets/slimpajama-6b/", "{slimpajama}"),), expect="slimpajama: train"),
    # docs/checkpoints.md
    EXPORT: shrunk("the trained run's folder instead of an example date",
                   swap=(("outputs/2026-11-27/10-00-00", "outputs/quick"),), expect="hf_model",
                   shared=True, after=TRAIN),
    "python -c \"from transformers import pipeline; print(pipeline('text-generation', 'hf_model')('ROMEO:', "
    "max_new_tokens=40))\"": covered(
        "tests/test_export.py", "it runs the pipeline on an export of each tokenizer",
        held='transformers.pipeline("text-generation", model=str(out_dir), device="cpu")'),
    # docs/tracking.md
    "mlflow server --backend-store-uri sqlite:////shared/mlflow/mlflow.db --artifacts-destination "
    "/shared/mlflow/artifacts --host 0.0.0.0 --port 5000": help_(
        "a server on a cluster's shared disk (tests/test_tracking_e2e.py runs one on this machine)"),
    "python -m llm_sweep --multirun +sweep=width_vs_depth hydra/launcher=slurm_a100": shrunk(
        GPU, *DRY, expect="Slurm, one job array"),
    # docs/sweeps.md
    "python -m llm_sweep --multirun model.n_embd=768,1024 optim.lr=6e-4,1e-3": shrunk(GPU, *DRY, expect="4 job(s)"),
    "python -m llm_sweep --multirun 'model.n_layer=range(2,10,2)'": shrunk(LONG, *DRY, expect="4 job(s)"),
    SWEEP: shrunk("2 of its 6 shapes (depth 2, widths 128 and 256), 2 training steps each instead of 75 s",
                  "model.n_layer=2", *CPU, expect="2/2 jobs finished", shared=True),
    "python -m llm_sweep --multirun +sweep=width_vs_depth hydra/launcher=slurm_a100 hydra.launcher.partition=gpu":
        shrunk(GPU, *DRY, expect="partition gpu"),
    "python -m llm_sweep --multirun model.n_embd=64,128 sweep.seeds=3": covered(
        "tests/test_sweep_seeds.py", "its dry run is checked there, job by job"),
    "python -m llm_sweep --multirun +sweep=width_vs_depth_cpu seed=7 sweep.seeds=2": covered(
        "tests/test_sweep_seeds.py", "its dry run is checked there, job by job"),
    "python -m llm_sweep --multirun +sweep=width_vs_depth hydra/launcher=slurm_a100 sweep.dry_run=true": run(
        "Dry run: nothing is launched"),
    "python -m llm_sweep --multirun +sweep=lr_search sweep.max_gpu_hours=100 hydra/launcher=slurm_a100": shrunk(
        GPU, *DRY, expect="20 trial"),
    "python -m llm_sweep --multirun hydra/sweeper=optuna hydra/launcher=local_parallel "
    "'optim.lr=tag(log,interval(1e-4,1e-2))' 'schedule.warmup_frac=interval(0,0.1)' hydra.sweeper.n_trials=20 "
    "hydra.sweeper.n_jobs=2 hydra.sweeper.pruner=sha": shrunk(LONG, *DRY, expect="20 trial"),
    "python -m llm_sweep --multirun hydra/launcher=slurm_a100 hydra.launcher.partition=gpu optim=adamw,sophiag "
    "checkpoint.interval=500 tracking.uri=http://<tracking-host>:5000": shrunk(
        GPU, *DRY, swap=(("<tracking-host>", "tracking-host"),), expect="2 job(s)"),
    "python -m llm_sweep --multirun hydra/launcher=slurm_packed hydra.launcher.partition=gpu "
    "distributed.trials_per_gpu=4 +sweep=isoflop_gpu sweep.dry_run=true": run("Packing: 4 trials per GPU"),
    "bash .ci/slurm_up.sh": covered(".ci/run", "it installs and starts daemons as root: CI does"),
    "python -m pytest -m slurm -q": shrunk(
        "the Slurm tests need a cluster and minutes: their selection is collected from two files", *COLLECT,
        expect="deselected", in_repo=True),
    "bash .ci/slurm_down.sh": shrunk("pointed at an empty state folder, so that it stops nothing",
                                     env=(("LLM_SWEEP_SLURM_DIR", "{empty}"),), expect="", in_repo=True),
    # docs/distributed.md
    "torchrun --standalone --nproc_per_node=8 -m llm_sweep model=wide3": help_("eight GPUs"),
    "torchrun --standalone --nproc_per_node=2 -m llm_sweep": covered(
        "tests/test_distributed.py", "it trains the two processes and compares them with one"),
    "python -m llm_sweep --multirun hydra/launcher=slurm_node8 hydra.launcher.partition=gpu model=wide3 "
    "optim=adamw,sophiag": shrunk(GPU, *DRY, expect="2 job(s)"),
    "python -m llm_sweep --multirun hydra/launcher=slurm_node8 hydra.launcher.nodes=2 hydra.launcher.partition=gpu "
    "model=wide3 batch.micro_batch_size=16 batch.grad_accum=16": shrunk(GPU, *DRY, expect="x 2 node(s)"),
    # docs/reports.md
    "python -m llm_sweep.report --parent <SWEEP_PARENT_RUN_ID>": shrunk(
        "the parent run of the trained sweep", swap=(("<SWEEP_PARENT_RUN_ID>", "{parent}"),),
        expect="summary.md", shared=True, after=SWEEP),
    "python -m llm_sweep.report --experiment width_vs_depth_cpu": run("summary.md", shared=True, after=SWEEP),
    "python -m llm_sweep.report --experiment optimizer --filter \"params.model.name = 'wide3'\"": shrunk(
        "the trained sweep's experiment and preset stand in for the optimizer sweep's",
        swap=(("optimizer", "width_vs_depth_cpu"), ("wide3", "tiny")), expect="summary.md",
        shared=True, after=SWEEP),
    "python -m llm_sweep.plan --budget 3h --seq-len 512": run("| wide3 |"),
    "python -m llm_sweep.plan --budget 3h --tokens-per-s 100000": run("| wide3 |"),
    "python -m llm_sweep.plan --budget 3h --bench outputs/<date>/<time>/bench.json": shrunk(
        "the bench.json of the tiny bench", swap=(("outputs/<date>/<time>/", "outputs/bench/"),),
        expect="| tiny |", shared=True, after=BENCH_TINY),
    "python -m llm_sweep.plan --budget 10m --probe --presets tiny --seq-len 128": shrunk(
        "one timed step of 2 sequences", "--probe-steps", "1", "--batch-size", "2", "--device", "cpu",
        "--dtype", "fp32", expect="| tiny |"),
    # docs/scaling.md
    "python -m llm_sweep.report --experiment isoflop --fit": covered(
        "tests/test_fit.py", "a minute of fitting: it runs report --fit on a synthetic store",
        held='"--experiment", "chinchilla", "--tracking-uri", uri, "--out", str(out), "--fit"'),
    "python -m llm_sweep.plan --fit report/fit.json --flops 1.1e18": run(
        "Compute-optimal (Approach 3", files=CHINCHILLA),
    "python -m llm_sweep.plan --fit report/fit.json --budget 3h --mfu 0.36": run(
        "Compute-optimal (Approach 3", files=CHINCHILLA),
    "python -m llm_sweep.plan --fit docs/results/isoflop/fit.json --flops 1e13 --tokenizer bytes --seq-len 128": run(
        "does not constrain", rc=2),
    "python -m llm_sweep.design --law docs/results/isoflop/fit.json --budgets 1e12,4e12,1.6e13 --shapes 7 --span 8 "
    "--noise 0.013 --flops-per-s 1.5e10 --processes 2": shrunk(
        DESIGN, "--repeats", "10", "--processes", "1", expect="process-hours"),
    "python -m llm_sweep.design --law docs/results/isoflop/fit.json --runs docs/results/isoflop/runs.csv "
    "--noise scatter": shrunk(DESIGN, "--repeats", "10", expect="tokens/param"),
    "python -m llm_sweep.report --experiment width_vs_depth --law docs/results/isoflop/fit.json": shrunk(
        "the trained sweep's experiment stands in for the GPU sweep's",
        swap=(("width_vs_depth", "width_vs_depth_cpu"),), expect="summary.md", shared=True, after=SWEEP),
    # docs/mup.md
    "python -m llm_sweep --multirun +sweep=mup_base_cpu": shrunk(
        LONG, *DRY, expect="each trial 3 jobs, seeds 1337, 1338, 1339, its value their mean"),
    "python -m llm_sweep --multirun model.parametrization=mup model.base_width=128 model.n_embd=128 "
    "optim.lr=5e-4,1e-3,2e-3,4e-3": shrunk(LONG, *DRY, expect="4 job(s)"),
    "python -m llm_sweep --multirun model.parametrization=mup model.base_width=128 model.n_embd=256,512,1024 "
    "optim.lr=2e-3": shrunk(LONG, *DRY, expect="3 job(s)"),
    "python -m llm_sweep model.parametrization=completep model.base_width=128 model.base_depth=2 model.n_layer=8 "
    "model.n_embd=512 optim.lr=2e-3": shrunk(LONG, *DRY_ONE, expect="completep"),
    "python -m llm_sweep.coordcheck model.parametrization=mup": shrunk(
        "two widths, one step of 2 x 32 tokens", "coordcheck.widths=[64,128]", "coordcheck.steps=1", *SMALL,
        "hydra.run.dir=out", expect="mup:"),
    "python -m llm_sweep.coordcheck coordcheck.parametrizations=[sp,mup]": covered(
        "tests/test_coordcheck.py", "it runs both parametrizations at two widths"),
    "python -m llm_sweep.coordcheck coordcheck.parametrizations=[mup,completep] coordcheck.widths=[128] "
    "coordcheck.depths=[2,4,8,16]": shrunk("two depths, one step of 2 x 32 tokens", "coordcheck.depths=[2,4]",
                                           "coordcheck.steps=1", *SMALL, "hydra.run.dir=out", expect="completep:"),
    # docs/performance.md
    BENCH_TINY: shrunk("one eager step", *BENCH, "bench.modes=[eager-fp32]", "hydra.run.dir=outputs/bench",
                       expect="tokens/s", shared=True),
    "python -m llm_sweep.bench model=wide3 batch=a100 device=cuda 'bench.modes=[eager-bf16,compile-bf16]'": shrunk(
        "needs CUDA: its config is composed and shown, nothing runs", "--cfg", "job", expect="n_embd: 1024"),
    "python -m llm_sweep.bench --multirun optim=adamw,sophiag 'bench.modes=[eager-fp32]' tracking=none": shrunk(
        "one step each", *BENCH, expect="sophiag"),
    "python - <<'EOF'": shrunk("2 sequences of 32 tokens instead of 16 of 128",
                               swap=(("(16, 129)", "(2, 33)"),), expect="return_logits=False"),
    "python -m llm_sweep.bench model=tiny device=cpu 'bench.modes=[eager-fp32,compile-fp32]' bench.warmup_steps=2 "
    "bench.steps=5": shrunk("one eager step: compiling costs a minute, and tests/test_bench.py compiles",
                            *BENCH, "bench.modes=[eager-fp32]", expect="eager-fp32"),
    "python -m llm_sweep.bench model=tiny device=cpu 'bench.modes=[eager-bf16,compile-bf16]' bench.warmup_steps=1 "
    "bench.steps=1": shrunk("one eager step: compiling costs a minute, and tests/test_bench.py compiles",
                            *BENCH, "bench.modes=[eager-bf16]", expect="eager-bf16"),
    "python -m llm_sweep.bench.packing --trials 1,2,4 -- model.n_layer=2 model.n_embd=128 data.tokenizer=bytes "
    "batch.micro_batch_size=8 batch.seq_len=128 device=cpu 'bench.modes=[eager-fp32]' bench.warmup_steps=2 "
    "bench.steps=10": covered("tests/test_bench_packing.py", "1.5 min on 2 cores: it packs one and two small trials "
                              "on the CPU", held='module="llm_sweep.bench.packing"'),
    "python -m llm_sweep.bench.packing --trials 1,2,4,8 -- model.n_layer=4 model.n_embd=256 data.tokenizer=bytes "
    "batch.micro_batch_size=128 batch.seq_len=512 device=cuda 'bench.modes=[compile-bf16]' bench.steps=200": help_(
        "compiled bf16 trials packed on a GPU"),
    "python -m llm_sweep tracking=none": shrunk("2 training steps instead of 30 s", *CPU, expect="final val"),
    "OMP_NUM_THREADS=1 python -m llm_sweep model.n_layer=2 model.n_embd=128 batch.micro_batch_size=8 "
    "batch.grad_accum=2 batch.seq_len=128 budget.time=null budget.steps=4 eval.interval=0 compile=false "
    "tracking=none": shrunk("a one-batch final evaluation, no measurement of the CPU", "eval.final_batches=1",
                            "dtype=fp32", "peak_flops=1e11", expect="final val"),
    "torchrun --standalone --nproc_per_node=2 -m llm_sweep <the same overrides>": covered(
        "tests/test_distributed.py", "it trains the two processes and compares them with one",
        held='"--standalone", "--nproc_per_node=2", "-m", "llm_sweep"'),
    # docs/statistics.md
    "python -m llm_sweep.design.calibrate --out docs/statistics.md --studies 200 --processes 2": covered(
        "tests/test_calibration.py", "25 minutes: it writes a page's tables between the markers with 10 studies",
        held='"--studies", "10", "--resamples", "10", "--out", str(page)'),
}

COMMANDS = collect()


# --- running them ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def argv_of(text: str) -> tuple[dict[str, str], list[str]]:
    """The environment a command sets before its program, and its arguments, with the
    program made this interpreter's (never a `python` found on PATH)."""
    words = [word for word in shlex.split(text) if not word.startswith("<<")]  # a heredoc is its input
    env = {}
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    program, rest = words[0], words[1:]
    if program in ("python", "python3"):
        return env, [sys.executable, *rest]
    if program in ("torchrun", "mlflow"):
        return env, [sys.executable, "-m", {"torchrun": "torch.distributed.run"}.get(program, program), *rest]
    return env, [program, *rest]


@dataclass
class Job:
    """One command made ready to run: its arguments, folder, environment and input."""
    text: str
    argv: list
    cwd: Path
    env: dict
    stdin: str


def in_one_process(text: str) -> bool:
    """A Python command that may share one process with the others of its group: `python -m`
    of the project or `python -` with a heredoc, setting no environment but its threads, or
    the `--help` of a help entry; not pytest, nor a server."""
    entry = TABLE[text]
    env, argv = argv_of(text)
    if entry.kind == "help":
        return argv[1:2] == ["-m"]
    return (entry.kind in ("run", "shrunk") and not entry.env and set(env) <= {"OMP_NUM_THREADS"}
            and (argv[1:2] == ["-m"] and argv[2].split(".")[0] == "llm_sweep" or argv[1:] == ["-"]))


class Runner:
    """Runs the table's commands, each at most once. Shared commands run in one folder: the
    trained run, the trained sweep, the tiny bench and their MLflow store; the others in a
    fresh folder each. The one-process commands of a group (those without a predecessor, or
    those with one) run together when the first of them is asked for, their predecessors first."""

    def __init__(self, root: Path):
        self.root = root
        self.count = 0
        self.shared = self.folder()
        self.done: dict[str, subprocess.CompletedProcess] = {}

    def folder(self) -> Path:
        self.count += 1
        path = self.root / f"c{self.count}"
        path.mkdir()
        (path / "docs").symlink_to(REPO / "docs")  # the committed results some commands read
        return path

    def outcome(self, text: str) -> subprocess.CompletedProcess:
        if text not in self.done:
            entry = TABLE[text]
            if entry.after:
                first = self.outcome(entry.after)
                assert first.returncode == TABLE[entry.after].rc, (
                    f"{entry.after}:\n{first.stdout[-2000:]}{first.stderr[-3000:]}")
                if text in self.done:  # it ran in the group of its predecessor's
                    return self.done[text]
            if in_one_process(text):
                group = [other for other, e in TABLE.items() if other not in self.done and in_one_process(other)
                         and (bool(e.after), e.in_repo) == (bool(entry.after), entry.in_repo)]
                for other in group:  # what the group's commands need, first
                    if TABLE[other].after:
                        self.outcome(TABLE[other].after)
                self.in_one_process([self.job(other) for other in group if other not in self.done])
            else:
                self.done[text] = self.alone(self.job(text))
        return self.done[text]

    def job(self, text: str) -> Job:
        entry = TABLE[text]
        cwd = REPO if entry.in_repo else self.shared if entry.shared else self.folder()
        for path, source in entry.files:
            (cwd / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / source, cwd / path)
        stdin = next((c.stdin for c in COMMANDS if c.text == text), "")
        command = text
        for old, new in entry.swap:
            command, stdin = command.replace(old, new), stdin.replace(old, new)
        env, argv = argv_of(command)
        if entry.kind == "help":  # the program (a subcommand with it), asked for its options
            return Job(text, [*argv[:4 if argv[2:3] == ["mlflow"] else 3], "--help"], cwd, {}, "")
        values = Values(self, cwd)
        argv = [values.fill(arg) for arg in argv + list(entry.add)]
        env.update({name: values.fill(value) for name, value in entry.env})
        return Job(text, argv, cwd, env, stdin)

    def environment(self, job: Job, inherited: dict = os.environ) -> dict:
        """Its own MLflow store in its folder, and what it sets."""
        return {**inherited, "MLFLOW_TRACKING_URI": f"sqlite:///{job.cwd / 'mlflow.db'}", **job.env}

    def alone(self, job: Job) -> subprocess.CompletedProcess:
        if job.argv[1:4] == ["-m", "mlflow", "ui"]:
            return serve(job.argv, job.cwd, self.environment(job), int(job.argv[job.argv.index("--port") + 1]))
        return subprocess.run(job.argv, cwd=job.cwd, env=self.environment(job), input=job.stdin,
                              capture_output=True, text=True, timeout=600)

    def in_one_process(self, jobs: list[Job]) -> None:
        answer = self.root / f"answer{self.count}.json"
        self.count += 1
        order = [{**({"code": job.stdin} if job.argv[1:] == ["-"] else {"module": job.argv[2], "args": job.argv[3:]}),
                  "cwd": str(job.cwd), "env": self.environment(job, inherited={})} for job in jobs]
        done = subprocess.run([sys.executable, str(ONE_PROCESS), str(answer)], input=json.dumps(order),
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        for job, result in zip(jobs, json.loads(answer.read_text())):
            self.done[job.text] = subprocess.CompletedProcess(job.argv, result["rc"], result["out"], "")


class Values:
    """What a placeholder of a shrunk command stands for, made when first asked for."""

    def __init__(self, runner: Runner, cwd: Path):
        self.runner, self.cwd = runner, cwd

    def fill(self, arg: str) -> str:
        for name in re.findall(r"\{(\w+)\}", arg):
            arg = arg.replace("{%s}" % name, str(getattr(self, name)()))
        return arg

    def empty(self) -> str:
        """A folder of its own, empty."""
        return str(self.runner.folder())

    def port(self) -> int:
        return free_port()

    def parent(self) -> str:
        return json.loads((self.cwd / "multirun" / "width_vs_depth_cpu" / "mlflow_parent.json").read_text())["run_id"]

    def slimpajama(self) -> str:
        """A local copy: JSONL records with a `text` field."""
        folder = self.cwd / "slimpajama-6b"
        folder.mkdir()
        records = ["The quick brown fox jumps over the lazy dog. " * 40, "Pack my box with five liquor jugs. " * 40]
        (folder / "part-0.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in records * 50))
        return f"{folder}/"


def serve(argv: list[str], cwd: Path, env: dict, port: int) -> subprocess.CompletedProcess:
    """Start the UI, ask its REST API for the runs as the runs table lists them (their
    metrics' names), and stop it."""
    log = cwd / "ui.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env={**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    metrics = ""
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.3)
        if proc.poll() is None:
            query = urllib.request.Request(f"{url}/api/2.0/mlflow/runs/search", data=json.dumps(
                {"experiment_ids": ["1"]}).encode(), headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(query, timeout=30) as response:
                runs = json.loads(response.read())["runs"]
            metrics = "\n".join(m["key"] for r in runs for m in r["data"]["metrics"])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    return subprocess.CompletedProcess(argv, 0 if metrics else 1, metrics, log.read_text())


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> Runner:
    return Runner(tmp_path_factory.mktemp("docs_commands"))


# --- the tests -------------------------------------------------------------------------------

def test_every_command_of_the_pages_has_an_entry():
    missing = [f"{c.page}: {c.text}" for c in COMMANDS if c.text not in TABLE]
    assert not missing, ("commands of the pages with no entry in TABLE of tests/test_docs_commands.py; add "
                         "each as run(...), shrunk(...), covered(...) or help_(...):\n  " + "\n  ".join(missing))


def test_every_entry_is_a_command_of_the_pages():
    shown = {c.text for c in COMMANDS}
    stale = [text for text in TABLE if text not in shown]
    assert not stale, "entries of TABLE that no page shows any more; remove them:\n  " + "\n  ".join(stale)
    for text, entry in TABLE.items():
        assert entry.kind == "run" or entry.why, f"say why it is not run as written: {text}"
        assert not entry.after or entry.after in TABLE, entry.after
        assert all(old in text for old, _ in entry.swap) or any(c.stdin for c in COMMANDS if c.text == text), text


def test_the_collection_reads_every_page():
    pages = {c.page for c in COMMANDS}
    assert {"README.md", "docs/configuration.md", "docs/sweeps.md", "docs/statistics.md"} <= pages
    heredoc = [c for c in COMMANDS if c.stdin]
    assert heredoc and all(c.stdin.strip() and "EOF" not in c.stdin for c in heredoc)
    assert len({c.text: c.stdin for c in COMMANDS}) == len({c.text for c in COMMANDS})


def entries(*kinds: str) -> list:
    return [pytest.param(text, id=text[:80]) for text, entry in TABLE.items() if entry.kind in kinds]


@pytest.mark.slow
@pytest.mark.parametrize("text", entries("run", "shrunk"))
def test_the_command_runs(runner, text):
    entry = TABLE[text]
    done = runner.outcome(text)
    printed = done.stdout + done.stderr
    assert done.returncode == entry.rc, f"exit {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert entry.expect in printed, f"{entry.expect!r} is not in what it printed:\n{printed[-3000:]}"
    for command in COMMANDS:
        if command.text == text:
            for line in command.prints:  # a console block's output, as the page shows it
                assert line in printed, f"{command.page} shows {line!r}; the command printed:\n{printed[-3000:]}"


def covering_forms(text: str) -> list[str]:
    """How another file may hold a command: as typed, without its program (`python -m X`,
    `torchrun`), or as a Python list of those arguments."""
    words = shlex.split(text)
    args = words[3:] if words[:2] in (["python", "-m"], ["python3", "-m"]) else words[1:]
    return [text] + ([" ".join(args), ", ".join(f'"{a}"' for a in args)] if args else [])


@pytest.mark.parametrize("text", entries("covered"))
def test_the_command_is_run_elsewhere(text):
    entry = TABLE[text]
    held = " ".join((REPO / entry.by).read_text().split())
    held_plainly = held.replace(" -q ", " ")  # CI runs pip and pytest quietly
    for part in [entry.held] if entry.held else text.split(" && "):
        forms = [part] if entry.held else covering_forms(part)
        assert any(form in held or form in held_plainly for form in forms), (
            f"{entry.by} no longer runs {part!r}: run it there again, or make the entry of {text!r} "
            "run(...) or shrunk(...)")


@pytest.mark.slow
@pytest.mark.parametrize("text", entries("help"))
def test_the_command_lists_its_options(runner, text):
    done = runner.outcome(text)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for option in re.findall(r"(?<![\w-])(--[\w-]+)", text):
        assert option in done.stdout, f"{option} is not an option of {' '.join(done.args[2:-1])}:\n{done.stdout}"


def anchor(heading: str) -> str:
    """A heading's anchor, as GitHub makes it."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_between_the_pages_resolves():
    broken = []
    for path in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue
            file, _, fragment = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                broken.append(f"{path.relative_to(REPO)}: {target}")
            elif fragment and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.M)
                if fragment not in {anchor(h) for h in headings}:
                    broken.append(f"{path.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
