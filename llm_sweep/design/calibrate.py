"""Check the intervals the project prints against known truths; write docs/statistics.md.

    python -m llm_sweep.design.calibrate --out docs/statistics.md --studies 200 --processes 2
    python -m llm_sweep.design.calibrate --law fit.json --runs runs.csv --noise scatter --studies 100

Without --law/--runs, the standard set: verdicts over 2-10 seeds, then fits of simulated
studies on three designs (llm_sweep.scaling.calibration): Chinchilla's law on a centred
grid, the committed CPU study's law on the designer's recommended design at its seed
noise, and a truth other than the law the grid is centred on (the grid placed for a law
with other exponents, so every budget's minimum sits off-centre). With --law and --runs
(or --budgets), one design of the user's. Every table is printed, and with --out written
as a Markdown page with the method around it.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from llm_sweep.core import console
from llm_sweep.core.console import user_errors
from llm_sweep.design.inputs import law_from_fit, noise_level, positive_floats, read_design
from llm_sweep.scaling.calibration import Coverage, VerdictCoverage, calibrate_fit, calibrate_verdicts
from llm_sweep.scaling.design import Design, log_spacing
from llm_sweep.scaling.law import CHINCHILLA, Law
from llm_sweep.scaling.verdicts import P_THRESHOLD, POWER, seeds_for_power

REPO = Path(__file__).resolve().parents[2]
COMMITTED_LAW = REPO / "docs/results/isoflop_mup/fit.json"
VERDICT_SEEDS = (2, 3, 4, 5, 10)
GAPS_IN_SD = (1.0, 2.0, 3.0)
# Exponents of a law the misplaced grid is centred on: not the truth's.
MISPLACED = dict(alpha=0.28, beta=0.34)
# The generated part of a page (docs/statistics.md): between these, the rest is prose.
START, END = "<!-- calibration tables: start -->", "<!-- calibration tables: end -->"


@dataclass(frozen=True)
class Case:
    title: str
    law: Law
    design: Design
    noise: float


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m llm_sweep.design.calibrate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--law", type=Path, metavar="FIT.json", help="a fit.json: the truth of one design")
    parser.add_argument("--runs", type=Path, metavar="RUNS.csv", help="that design: a study's runs.csv")
    parser.add_argument("--budgets", type=positive_floats, metavar="C1,C2,...", help="or its budgets")
    parser.add_argument("--shapes", type=int, default=9, help="sizes per budget with --budgets (default 9)")
    parser.add_argument("--span", type=float, default=16.0, help="their span with --budgets (default 16)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per run with --budgets (default 3)")
    parser.add_argument("--noise", default="seed", help="sd of a run's loss: a number, seed or scatter")
    parser.add_argument("--studies", type=int, default=200, help="simulated studies per design (default 200)")
    parser.add_argument("--resamples", type=int, default=100, help="bootstrap resamples per fit (default 100)")
    parser.add_argument("--pairs", type=int, default=20000, help="simulated comparisons per seed count")
    parser.add_argument("--processes", type=int, default=1, help="studies fitted at once (default 1)")
    parser.add_argument("--out", type=Path, metavar="FILE.md", help="write the tables as a Markdown page")
    args = parser.parse_args(argv)
    if args.runs and args.budgets:
        parser.error("give --runs or --budgets, not both")
    if (args.runs or args.budgets) and not args.law:
        parser.error("--runs/--budgets need --law (the truth)")
    if min(args.studies, args.resamples) < 10 or args.processes < 1 or args.pairs < 100:
        parser.error("--studies and --resamples >= 10, --pairs >= 100, --processes >= 1")
    return args


def standard_cases(noise_arg: str) -> list[Case]:
    chinchilla = Law(**CHINCHILLA)
    committed = law_from_fit(COMMITTED_LAW)
    noise, _ = noise_level(noise_arg, COMMITTED_LAW, None, committed, 0.03)
    # The designer's recommended design: 4 budgets 4x apart, 9 sizes over 16x, 3 seeds each.
    grid = lambda law, first: Design.around_optimum(law, [first * 4 ** i for i in range(4)], 9, log_spacing(9, 16), 3)
    return [
        Case("Chinchilla's law, 4 budgets x 9 sizes (16x) x 3 seeds centred on its optimum, noise 0.01",
             chinchilla, grid(chinchilla, 1e18), 0.01),
        Case(f"The committed CPU study's law ({COMMITTED_LAW.relative_to(REPO)}), the designer's recommended "
             f"design (4 budgets x 9 sizes x 3 seeds), its seed noise {noise:.4f}",
             committed, grid(committed, 1e12), noise),
        Case("Chinchilla's law on a grid centred for another law (alpha 0.28, beta 0.34): every minimum "
             "off-centre, noise 0.01",
             chinchilla, grid(Law(**{**CHINCHILLA, **MISPLACED}), 1e18), 0.01),
    ]


def user_case(args: argparse.Namespace) -> Case:
    law = law_from_fit(args.law)
    design = (read_design(args.runs, 1) if args.runs else
              Design.around_optimum(law, args.budgets, args.shapes, log_spacing(args.shapes, args.span), args.seeds))
    noise, source = noise_level(args.noise, args.law, args.runs, law, 0.03)
    return Case(f"{args.law}: {design.describe()}; noise {noise:.4f} ({source})", law, design, noise)


def verdict_lines(rows: list[VerdictCoverage]) -> list[str]:
    lines = ["| seeds a side | pairs | no gap: interval excludes 0 | interval vs p < 0.05 disagree | "
             "1-sd gap: interval covers it | one side's mean interval covers |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r.seeds} | {r.pairs} | {r.null_excludes_zero:.1%} | {r.disagree_with_p} | {r.gap_coverage:.1%} | "
              f"{r.mean_coverage:.1%} |" for r in rows]
    return lines


def power_lines() -> list[str]:
    lines = [f"| gap (in seed sd) | seeds a side for {POWER:.0%} power at p < {P_THRESHOLD:g} |", "| ---: | ---: |"]
    return lines + [f"| {gap:g} | {seeds_for_power(gap, 1.0)} |" for gap in GAPS_IN_SD]


def _width(c: Coverage, value: float) -> str:
    if value != value:  # NaN: no study gave an interval
        return "-"
    return f"x{value:.3g}" if c.name == "tokens_per_param" else f"{value:.3g}"


def _bias(c: Coverage) -> str:
    if c.median_bias != c.median_bias:
        return "no estimate"
    return f"{c.median_bias:+.1%}" if c.name == "tokens_per_param" else f"{c.median_bias:+.3f}"


def fit_lines(case: Case, rows: list[Coverage]) -> list[str]:
    lines = [f"**{case.title}.** {case.design.describe()}.", "",
             "| value | approach | truth | coverage of 95% interval | median printed width | realised spread "
             "(2.5-97.5%) | printed / realised | constrained | median bias |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in rows:
        ratio = "-" if c.width_ratio != c.width_ratio else f"{c.width_ratio:.2f}"
        lines.append(f"| {c.name} | {c.approach} | {c.truth:.3g} | {c.coverage:.0%} | {_width(c, c.median_width)} | "
                     f"{_width(c, c.realised_width)} | {ratio} | {c.constrained:.0%} | {_bias(c)} |")
    return lines + [""]


@user_errors
def main(argv: Optional[list[str]] = None) -> None:
    console.configure_logging()
    args = parse_args(argv)
    cases = [user_case(args)] if args.law else standard_cases(args.noise)
    verdicts = [] if args.law else [calibrate_verdicts(n, args.pairs, seed=n) for n in VERDICT_SEEDS]
    body = ["## Verdicts over seeds", "", *verdict_lines(verdicts), "", "## Seeds for a verdict", "",
            *power_lines(), ""] if verdicts else []
    body += ["## Scaling-law fits", ""]
    for case in cases:
        rows = calibrate_fit(case.law, case.design, case.noise, args.studies, args.resamples, 0, args.processes)
        body += fit_lines(case, rows)
    text = "\n".join(body) + "\n"
    console.show(text, end="")
    if args.out:
        command = " ".join(["python -m llm_sweep.design.calibrate", *(sys.argv[1:] if argv is None else argv)])
        write_tables(args.out, f"Written by `{command}`.\n\n{text}")
        console.show(f"wrote {args.out}")


def write_tables(path: Path, tables: str) -> None:
    """The tables between the page's markers (its prose kept), or a page of them alone."""
    old = path.read_text() if path.exists() else ""
    if START in old and END in old:
        head, rest = old.split(START, 1)
        text = f"{head}{START}\n{tables}{END}{rest.split(END, 1)[1]}"
    else:
        text = f"# Calibration\n\n{START}\n{tables}{END}\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
