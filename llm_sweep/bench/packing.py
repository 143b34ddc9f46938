"""`python -m llm_sweep.bench.packing`: how many small trials to pack on one device, measured.

    python -m llm_sweep.bench.packing --trials 1,2,4,8 -- model.n_layer=4 model.n_embd=256 device=cuda 'bench.modes=[compile-bf16]'
    python -m llm_sweep.bench.packing --trials 1,2 -- model=tiny device=cpu 'bench.modes=[eager-fp32]'
    python -m llm_sweep.bench.packing --trials 1,4 -- model.n_embd=128,256 device=cuda   # a grid: trials alternate shapes

For each packing k of --trials (k=1 always runs, first: it is the baseline) it starts k
processes of `python -m llm_sweep.bench <overrides> distributed.trials_per_gpu=k` at once
on one device: on CUDA they share the first visible GPU, each capped at 1/k of its memory;
on a CPU each takes max(1, CPUs // k) threads. A barrier (llm_sweep.bench.packing_barrier)
starts their timed steps together after all have warmed up. A grid in the overrides
(`model.n_embd=128,256`) is cycled through by the k trials; at k=1 each of its shapes runs
alone in turn. Prints one row per packing (and mode): the tokens/s of all k trials over the
window where all were timing, the speed-up over running them alone, the MFU of their FLOPs
together against the device's peak, and the peak memory of a trial; writes packing.json
(every trial's bench.json inside) and packing.md to --out.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NoReturn, Optional, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from llm_sweep.bench.packing_barrier import BARRIER_ENV, TIMEOUT_ENV, cpu_count, threads_per_trial
from llm_sweep.bench.packing_report import format_report, summarize, write_results
from llm_sweep.core import console
from llm_sweep.core.config import CONF_DIR, load_config, register_configs
from llm_sweep.core.console import exit_with_error, user_errors
from llm_sweep.core.errors import LlmSweepError
from llm_sweep.sweeping.command_line import command_line_error

log = logging.getLogger(__name__)
PROG = "python -m llm_sweep.bench.packing"
SET_HERE = ("distributed.trials_per_gpu", "hydra.run.dir")  # the command sets these per trial
POLL_S = 0.2
INTERRUPTED_EXIT_CODE = 130  # as a shell reports Ctrl-C


@dataclass(frozen=True)
class Trial:
    """One bench process: trial `index` of the `group` of processes started together."""

    k: int  # the packing: trials on the device at once
    group: int  # k=1 with a grid: each shape alone, one group after another
    index: int
    shape: tuple[str, ...]  # the grid's overrides for this trial (none without a grid)
    folder: Path  # its hydra.run.dir: bench.json, stdout.log, stderr.log


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit code 2
        exit_with_error(f"{self.prog}: {message}")


def packings(text: str) -> list[int]:
    """--trials: comma-separated packings, each an integer >= 1; 1 is added (the baseline)."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give integers >= 1, e.g. --trials 1,2,4,8")
    return sorted({1, *values})


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The command's options, and the bench's overrides (what follows `--`)."""
    argv = list(argv)
    options, overrides = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=packings, default=[1, 2, 4, 8], metavar="K1,K2,...",
                        help="trials at once on the device, one packing each (default 1,2,4,8)")
    parser.add_argument("--out", type=Path, help="output folder, new or empty "
                                                 "(default outputs/packing/<date>_<time>)")
    parser.add_argument("--timeout", type=float, default=1800.0, metavar="S",
                        help="seconds one packing's processes may take, and the barrier waits (default 1800)")
    args, extra = parser.parse_known_args(options)
    if extra:
        hint = "" if extra[0].startswith("-") else " (the bench's overrides go after --)"
        parser.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    if not args.timeout > 0:
        parser.error("--timeout takes seconds > 0")
    return args, overrides


def expand_grid(overrides: Sequence[str]) -> tuple[list[str], list[tuple[str, ...]]]:
    """The overrides every trial gets, and the grid's shapes (each a tuple of overrides, in
    the order the sweeps enumerate them; one empty shape without a grid)."""
    for arg in overrides:
        if arg.startswith("-"):
            exit_with_error(f"{PROG}: {arg}: only the bench's key=value overrides go after --")
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        exit_with_error(f"cannot read the overrides: {str(exc).strip().splitlines()[0]}")
    fixed, axes = [], []
    for override in parsed:
        key = override.key_or_group
        if key in SET_HERE:
            exit_with_error(f"{PROG}: {key} is set by the command for each trial; leave it out")
        if not override.is_sweep_override():
            fixed.append(override.input_line)
        elif key.startswith("bench."):
            exit_with_error(f"{PROG}: {override.input_line}: the trials of a packing time the same "
                            "modes and steps; give one value")
        else:
            try:
                values = list(override.sweep_string_iterator())
            except HydraException:
                exit_with_error(f"{PROG}: {override.input_line}: a grid needs values to list, not an interval")
            axes.append([f"{override.get_key_element()}={value}" for value in values])
    return fixed, list(itertools.product(*axes))


def plan_groups(ks: Sequence[int], shapes: Sequence[tuple[str, ...]], out: Path) -> list[list[Trial]]:
    """The processes to start together, packing by packing: at k=1 each shape alone, at k > 1
    one group of k trials that cycle through the shapes."""
    groups = []
    for k in ks:
        if k == 1:
            groups += [[Trial(1, g, 0, shape, out / "k1" / f"trial{g}")] for g, shape in enumerate(shapes)]
        else:
            groups.append([Trial(k, 0, i, shapes[i % len(shapes)], out / f"k{k}" / f"trial{i}")
                           for i in range(k)])
    return groups


def trial_command(trial: Trial, fixed: Sequence[str]) -> list[str]:
    folder = str(trial.folder)
    if not re.fullmatch(r"[\w./:+@-]+", folder):  # a space, a quote, ...: a quoted override value
        folder = "'" + folder.replace("'", "\\'") + "'"
    return [sys.executable, "-m", "llm_sweep.bench", *fixed, *trial.shape,
            f"distributed.trials_per_gpu={trial.k}", f"hydra.run.dir={folder}"]


def trial_env(trial: Trial, group_size: int, timeout_s: float) -> dict[str, str]:
    """The trial's environment: the caller's (CUDA_VISIBLE_DEVICES included), its share of
    the CPU threads, and the barrier it meets the other processes of its group at."""
    barrier = trial.folder.parent / f"barrier{trial.group}"
    return {**os.environ, "OMP_NUM_THREADS": str(threads_per_trial(trial.k)),
            BARRIER_ENV: f"{group_size}:{barrier}", TIMEOUT_ENV: str(timeout_s)}


def _stop(proc: subprocess.Popen) -> None:
    """End a trial that is still running, and what it started (its own process group)."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(wait_s)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def run_group(group: Sequence[Trial], fixed: Sequence[str], timeout_s: float) -> Optional[tuple[str, int]]:
    """Start the group's processes at once and wait for them: None when all succeeded, else
    why not and the exit code to end with (the others are stopped as soon as one fails)."""
    procs: list[subprocess.Popen] = []
    try:
        for trial in group:
            trial.folder.mkdir(parents=True)
            with open(trial.folder / "stdout.log", "w") as out, open(trial.folder / "stderr.log", "w") as err:
                procs.append(subprocess.Popen(trial_command(trial, fixed), stdout=out, stderr=err,
                                              env=trial_env(trial, len(group), timeout_s),
                                              start_new_session=True))
        deadline = time.monotonic() + timeout_s
        while True:
            codes = [proc.poll() for proc in procs]
            for trial, code in zip(group, codes):
                if code not in (None, 0):
                    return _failure(trial, code)
            if all(code == 0 for code in codes):
                return None
            if time.monotonic() > deadline:
                return (f"k={group[0].k}: the trials ran past --timeout {timeout_s:g} s; "
                        f"see {group[0].folder.parent}", 1)
            time.sleep(POLL_S)
    finally:
        for proc in procs:
            if proc.poll() is None:
                _stop(proc)


def _failure(trial: Trial, code: int) -> tuple[str, int]:
    """A failed trial in one line: its own error line where it gave one (a user error, exit
    code 2 again), else where its output is (exit code 1)."""
    lines = (trial.folder / "stderr.log").read_text(errors="replace").strip().splitlines()
    said = next((line for line in reversed(lines) if line.startswith("error: ")), None)
    if code == console.USER_ERROR_EXIT_CODE and said:
        return said[len("error: "):], code
    return f"k={trial.k} trial {trial.index} failed (exit code {code}); see {trial.folder / 'stderr.log'}", 1


def check_overrides(fixed: Sequence[str], shapes: Sequence[tuple[str, ...]], k: int) -> None:
    """A misspelled key or a value out of its range, in any shape: one line, exit code 2,
    before any process starts."""
    why = command_line_error([*fixed, *shapes[0]])
    if why:
        exit_with_error(why)
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        for shape in shapes:
            try:
                load_config(compose("config", overrides=[*fixed, *shape, f"distributed.trials_per_gpu={k}"]))
            except LlmSweepError as exc:
                exit_with_error(exc)


def default_out() -> Path:
    return Path("outputs") / "packing" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def run_packings(groups: Sequence[Sequence[Trial]], fixed: Sequence[str], timeout_s: float,
                  grid: bool) -> list[dict]:
    """Every group in turn; each trial's bench.json with where it ran. Ends the command,
    naming the trial, when one fails."""
    trials = []
    for group in groups:
        k = group[0].k
        log.info("packing k=%d: %d process(es) at once, %d thread(s) each%s", k, len(group),
                 threads_per_trial(k), f" ({' '.join(group[0].shape)})" if k == 1 and grid else "")
        started = time.monotonic()
        failed = run_group(group, fixed, timeout_s)
        if failed:
            exit_with_error(*failed)
        log.info("packing k=%d: done in %.1f s", k, time.monotonic() - started)
        trials += [{**json.loads((t.folder / "bench.json").read_text()), "k": t.k, "group": t.group,
                    "index": t.index, "shape": list(t.shape), "folder": str(t.folder)} for t in group]
    return trials


@user_errors
def main(argv: Optional[Sequence[str]] = None) -> None:
    console.configure_logging()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, overrides = parse_args(argv)
    fixed, shapes = expand_grid(overrides)
    check_overrides(fixed, shapes, max(args.trials))
    out = (args.out or default_out()).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        exit_with_error(f"{PROG}: --out {out} is not an empty folder; name a new one")
    try:
        trials = run_packings(plan_groups(args.trials, shapes, out), fixed, args.timeout, len(shapes) > 1)
    except KeyboardInterrupt:  # the trials are stopped on the way out (run_group)
        exit_with_error(f"interrupted; the trials so far are in {out}", INTERRUPTED_EXIT_CODE)
    result = summarize(trials, {"command": [PROG, *argv], "packings": args.trials, "overrides": fixed,
                                "shapes": [list(shape) for shape in shapes], "cpus": cpu_count()})
    console.show(format_report(result), end="")
    json_path, md_path = write_results(result, out)
    console.show(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
