"""The designer's answer as text: how tightly the study pins each estimate, and its cost."""
from __future__ import annotations

from typing import Optional

from llm_sweep.scaling.fit_record import Noise
from llm_sweep.scaling.law import Law
from llm_sweep.scaling.verdicts import P_THRESHOLD, POWER, seeds_for_power
from llm_sweep.scaling.simulate import TOLERANCE, Simulation, Spread

LABELS = {"a": "a (N_opt ~ C^a)", "b": "b (D_opt ~ C^b)", "tokens_per_param": "tokens/param at top C"}


def _value(name: str, value: float) -> str:
    return f"{value:.3g}" if name == "tokens_per_param" else f"{value:.3f}"


def _row(spread: Spread) -> str:
    name = spread.name
    rng = "no estimate" if spread.low != spread.low else (
        f"{_value(name, spread.low)} to {_value(name, spread.high)}")
    width = "" if spread.low != spread.low else (
        f"x{spread.width:.2f}" if name == "tokens_per_param" else f"{spread.width:.3f}")
    return (f"| {LABELS[name]} | {spread.approach} | {_value(name, spread.truth)} | "
            f"{_value(name, spread.median) if spread.median == spread.median else '-'} | {rng} | {width} | "
            f"{spread.pinned:.0%} | {spread.failed} |")


def format_simulation(simulation: Simulation, law: Law, source: str, noise_source: str,
                      flops_per_s: Optional[float], processes: int) -> str:
    design = simulation.design
    lines = [f"Study: {design.describe()}.",
             f"Truth: {source} (alpha {law.alpha:.3f}, beta {law.beta:.3f}, flops/token "
             f"{law.c:.3g} N^{law.k:.3f}: a = {law.a:.3f}). Noise: sd {simulation.noise:.4f}, "
             f"{noise_source}. {simulation.repeats} simulated studies.", "",
             f"| estimate | approach | truth | median | 95% range | width | within +-{TOLERANCE['a']} "
             f"(x{TOLERANCE['tokens_per_param']} for tokens/param) | failed fits |",
             "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    lines += [_row(spread) for spread in sorted(simulation.spreads, key=lambda s: (s.name, s.approach))]
    lines += ["", f"Cost: {design.compute:.3g} FLOPs in {design.jobs} runs."]
    if flops_per_s:
        hours = design.compute / flops_per_s / 3600
        lines[-1] += (f" At {flops_per_s:.3g} FLOP/s: {hours:.3g} process-hours"
                      + (f", {hours / processes:.3g} h with {processes} at once" if processes > 1 else "")
                      + ".")
    return "\n".join(lines) + "\n"


def format_seeds(gap: float, noise: Noise, source: str) -> str:
    """The seeds a side for 80% power at p < 0.01, at the noise and its interval's ends."""
    sd = noise.pooled_sd
    count = lambda value: seeds_for_power(gap, value)
    shown = lambda n: "more than 1000" if n is None else str(n)
    line = (f"To detect a true gap of {gap:g} in final loss at p < {P_THRESHOLD:g} with {POWER:.0%} power: "
            f"{shown(count(sd))} seeds a side, at the seed sd {sd:.4f} ({source})")
    low, high = noise.pooled_sd_ci
    if low is None:
        return line + ".\n"
    return (line + f". That sd rests on {noise.dof} degrees of freedom: its 95% interval {low:.4f} to {high:.4f} "
            f"needs {shown(count(low))} to {shown(count(high))} seeds a side.\n")
