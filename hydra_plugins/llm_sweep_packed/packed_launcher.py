"""`hydra/launcher=slurm_packed`: many small trials inside one Slurm allocation.

hydra-submitit-launcher submits one Slurm job per trial, each holding whole GPUs: a grid of
3M-parameter models on an 8-GPU node leaves most of every GPU idle. This launcher submits
one Slurm job per pack of `trials_per_job` trials. Inside the job the pack runs
`gpus_per_node x distributed.trials_per_gpu` trials at once, each in a process of its own
(spawned, so each has its own Hydra state), and each trial claims one place on one GPU of
the allocation (llm_sweep.sweeping.gpu_slots) with its share of the CPU threads. The
trials run exactly what the plain Slurm launcher's jobs run (the launcher's `__call__`:
Hydra's `run_job` in the trial's own job directory), and the sweep gets one result per trial.

Slurm's pre-timeout or preemption signal reaches every trial (the pack also forwards it):
each saves a checkpoint at its next step boundary; the pack then requeues itself whole, and
in the requeued job the finished trials are skipped and the others resume.
"""
import logging
import multiprocessing
import os
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, List, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

from hydra_plugins.llm_sweep_packed.config import register
from llm_sweep.sweeping.gpu_slots import PACKED_ENV

log = logging.getLogger(__name__)
register()


class PackedSlurmLauncher(SlurmLauncher):
    """Slurm jobs that each run a pack of trials, several per GPU."""

    PACKS_TRIALS = True  # the asynchronous sweeper submits trials one per job: not with this one

    def __init__(self, trials_per_job: Optional[int] = None, **params: Any) -> None:
        super().__init__(**params)
        self.trials_per_job = trials_per_job

    def at_once(self) -> int:
        """Trials one job runs side by side: a place on each GPU, or on the CPUs of a CPU node."""
        per_gpu = int(OmegaConf.select(self.config, "distributed.trials_per_gpu", default=1))
        return max(1, self.params.get("gpus_per_node") or 0) * per_gpu

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from llm_sweep.sweeping.submitit_executor import executor_for  # submitit: only when launching

        executor = executor_for(self, self.config)
        trials = []
        for index, overrides in enumerate(job_overrides):
            num = initial_job_idx + index
            log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
            trials.append((list(overrides), "hydra.sweep.dir", num, f"job_id_for_{num}", Singleton.get_state()))
        size = self.trials_per_job or self.at_once()
        packs = [TrialPack(self, trials[i:i + size], self.at_once()) for i in range(0, len(trials), size)]
        log.info("%d trial(s) in %d Slurm job(s), %d at a time in each", len(trials), len(packs), self.at_once())
        handles = [executor.submit(pack) for pack in packs]
        return [result for pack, handle in zip(packs, handles) for result in pack_results(pack, handle)]


def pack_results(pack: "TrialPack", handle: Any) -> List[JobReturn]:
    """Each trial's JobReturn; every trial FAILED when the pack's job ended without results."""
    try:
        return handle.results()[0]
    except Exception as error:
        lines = str(error).strip().splitlines() or [type(error).__name__]
        reason = RuntimeError(f"Slurm job {handle.job_id}: {lines[0]} (logs: {handle.paths.stderr})")
        return [JobReturn(status=JobStatus.FAILED, _return_value=reason) for _ in pack.trials]


class TrialPack:
    """What one Slurm job runs: its trials, `at_once` at a time, each in a spawned process."""

    def __init__(self, launcher: PackedSlurmLauncher, trials: list, at_once: int) -> None:
        self.launcher, self.trials, self.at_once = launcher, trials, at_once
        self._pool: Optional[ProcessPoolExecutor] = None

    def __call__(self) -> List[JobReturn]:
        import cloudpickle  # in the Slurm job only (submitit's dependency): the task may live in __main__

        os.environ[PACKED_ENV] = "1"
        if not os.environ.get("CUDA_VISIBLE_DEVICES"):  # a CPU node: the trials share its CPUs
            cpus = len(os.sched_getaffinity(0))
            os.environ["OMP_NUM_THREADS"] = str(max(1, cpus // min(self.at_once, len(self.trials))))
        payloads = [cloudpickle.dumps((self.launcher, trial)) for trial in self.trials]
        with ProcessPoolExecutor(self.at_once, mp_context=multiprocessing.get_context("spawn")) as pool:
            self._pool = pool
            futures = [pool.submit(run_trial, payload) for payload in payloads]
            return [outcome(future) for future in futures]

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """On Slurm's signal: let every running trial save (they got the signal; forwarded in
        case they did not), then requeue the whole pack."""
        import submitit  # in the Slurm job only, as hydra-submitit-launcher does

        for child in multiprocessing.active_children():
            try:
                os.kill(child.pid, signal.SIGUSR2)
            except ProcessLookupError:
                pass
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        return submitit.helpers.DelayedSubmission(TrialPack(self.launcher, self.trials, self.at_once))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pool": None}


def run_trial(payload: bytes) -> bytes:
    """One trial, in a process of the pack: the launcher's own `__call__`. Its JobReturn goes
    back through cloudpickle, as submitit sends a job's: Hydra's plugin scan re-executes the
    config modules, so a config node's class is no longer the one its module names."""
    import cloudpickle  # in the trial's process only

    launcher, trial = cloudpickle.loads(payload)
    return cloudpickle.dumps(launcher(*trial))


def outcome(future: Future) -> JobReturn:
    import cloudpickle  # in the Slurm job only

    try:
        return cloudpickle.loads(future.result())
    except BaseException as error:  # the trial's process ended without Hydra's result
        return JobReturn(status=JobStatus.FAILED, _return_value=error)
