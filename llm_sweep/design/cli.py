"""Design a scaling-law study before spending its compute.

    python -m llm_sweep.design --law fit.json --budgets 1e12,4e12,1.6e13 --shapes 7 --span 8
    python -m llm_sweep.design --budgets 1e18,4e18,1.6e19 --shapes 7 --span 8 --noise 0.01
    python -m llm_sweep.design --law fit.json --runs runs.csv --noise scatter   # a study's own design
    python -m llm_sweep.design --gap 0.05 --runs runs.csv    # seeds a side to detect a gap of 0.05

Simulates the study many times through the project's own fit (`report --fit`, point
estimates of Approaches 2 and 3) and prints how tightly it would pin the compute-optimal
exponents a and b and tokens/param at the top budget: the 95% range of the estimates,
the share of repeats within +-0.05 (exponents) or a factor 1.25 (tokens/param) of the
truth, and the failed fits; then the study's cost in FLOPs and machine-hours.

The truth is the Approach-3 law of --law (a fit.json of `report --fit`), else Chinchilla's
published one. The noise is the standard deviation of a run's final loss: a number, `seed`
(the pooled seed noise of --law's study; the default, 0.013 without one) or `scatter`
(the realised scatter of --runs around the law, for checking the designer against a study
that was run).

With --gap X: the seeds a side that Welch's two-sided test at p < 0.01 needs to find a true gap
of X in final loss with 80% power, at the seed noise measured in --runs (pooled over its
configs run with several seeds) or --law's study, and at the ends of that noise's own 95%
interval (a few degrees of freedom leave it loose); or at a --noise number.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from llm_sweep.core import console
from llm_sweep.core.console import user_errors
from llm_sweep.design.inputs import law_from_fit, measured_noise, noise_level, positive_floats, read_design
from llm_sweep.scaling.design import Design, log_spacing
from llm_sweep.scaling.law import CHINCHILLA, Law
from llm_sweep.scaling.simulate import simulate
from llm_sweep.design.table import format_seeds, format_simulation
from llm_sweep.scaling.fit import fit_point_estimates

DEFAULT_NOISE = 0.013  # the pooled seed noise of the committed CPU iso-FLOP study


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m llm_sweep.design", description=__doc__.splitlines()[0])
    parser.add_argument("--law", type=Path, metavar="FIT.json", help="the truth: a fit.json of report --fit "
                                                                    "(default: Chinchilla's published law)")
    parser.add_argument("--budgets", type=positive_floats, metavar="C1,C2,...", help="compute budgets in FLOPs")
    parser.add_argument("--shapes", type=int, default=7, help="model sizes per budget (default 7)")
    parser.add_argument("--span", type=float, default=8.0,
                        help="factor between a budget's largest and smallest size, centred on the "
                             "law's optimum (default 8)")
    parser.add_argument("--runs", type=Path, metavar="RUNS.csv",
                        help="instead of --budgets: the budgets and sizes of a study's runs.csv")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per run (default 1)")
    parser.add_argument("--noise", default="seed", help="sd of a run's loss: a number, seed or scatter")
    parser.add_argument("--repeats", type=int, default=200, help="simulated studies (default 200)")
    parser.add_argument("--flops-per-s", type=float, help="the machine's training FLOP/s, for its hours")
    parser.add_argument("--processes", type=int, default=1, help="runs at once (default 1)")
    parser.add_argument("--gap", type=float, metavar="X", help="instead of a study: the seeds a side that find a "
                                                                "gap of X in final loss (80%% power, p < 0.01)")
    args = parser.parse_args(argv)
    if args.gap is not None:
        if not args.gap > 0 or args.budgets is not None:
            parser.error("--gap takes a positive number, with --runs, --law or --noise NUMBER (no --budgets)")
        return args
    if (args.budgets is None) == (args.runs is None):
        parser.error("give either --budgets or --runs")
    if args.shapes < 3 or args.seeds < 1 or args.repeats < 10 or args.span <= 1 or args.processes < 1:
        parser.error("--shapes >= 3, --span > 1, --seeds >= 1, --repeats >= 10 and --processes >= 1")
    return args


@user_errors
def main(argv: Optional[list[str]] = None) -> None:
    console.configure_logging()
    args = parse_args(argv)
    if args.gap is not None:
        noise, source = measured_noise(args.noise, args.law, args.runs)
        console.show(format_seeds(args.gap, noise, source), end="")
        return
    law = law_from_fit(args.law) if args.law else Law(**CHINCHILLA)
    if args.runs:
        design = read_design(args.runs, args.seeds)
    else:
        design = Design.around_optimum(law, args.budgets, args.shapes, log_spacing(args.shapes, args.span),
                                       args.seeds)
    noise, noise_source = noise_level(args.noise, args.law, args.runs, law, DEFAULT_NOISE)
    simulation = simulate(law, design, noise, args.repeats, fit_point_estimates)
    source = str(args.law) if args.law else "Chinchilla's published law"
    console.show(format_simulation(simulation, law, source, noise_source, args.flops_per_s,
                                   args.processes), end="")
