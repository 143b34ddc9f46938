"""The first screen of summary.md: every question the report answers, in one table.

One row per question: the answer (a winner, no detectable difference, not enough seeds;
for a fitted value, constrained or not), the effect with its 95% interval, p, the seeds a
side, and what would change the answer (the seeds a side that 80% power at p < 0.01 needs
for the gap seen, at the seeds' own sd).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from llm_sweep.report.analysis import Findings
from llm_sweep.report.parametrizations import shape_text
from llm_sweep.report.shape_residuals import GapSplit
from llm_sweep.report.tables import markdown_table, ratio, si
from llm_sweep.scaling.estimates import Constant, Estimate, at_largest_budget
from llm_sweep.scaling.fit_record import FitResult
from llm_sweep.scaling.verdicts import HIGHER_IS_BETTER, NO_SPREAD, P_THRESHOLD, POWER, Comparison

HEADERS = ("question", "answer", "effect (95% interval)", "p", "seeds a side", "what would change it")
NOT_ENOUGH = "not enough seeds"
NO_DIFFERENCE = "no detectable difference"


@dataclass(frozen=True)
class Question:
    text: str
    comparison: Comparison


def _answer(c: Comparison) -> str:
    if c.p_value is None:
        return "no spread between seeds: no verdict" if c.verdict == NO_SPREAD else NOT_ENOUGH
    if not c.decided:
        return NO_DIFFERENCE
    a_better = (c.diff > 0) == HIGHER_IS_BETTER[c.metric]
    return f"{c.a if a_better else c.b} is better"


def _change(c: Comparison) -> str:
    fewest = min(c.n_a, c.n_b)
    if c.p_value is None and fewest < 2:
        return "2+ seeds a side for any verdict"
    if c.decided:
        return "a contrary result at more seeds"
    if c.seeds_needed is None:
        return "no seed count detects a gap this small" if c.p_value is not None else "seeds that vary"
    more = max(c.seeds_needed - fewest, 0)
    power = f"{POWER:.0%} power at p < {P_THRESHOLD:g}"
    extra = " (the law's error counts too: a tighter law)" if c.law_sd else ""
    return (f"{more} more seed(s) a side for {power} at this gap{extra}" if more
            else f"the gap is below what {fewest} seeds detect at {power}{extra}")


def _effect(c: Comparison) -> str:
    interval = "" if c.diff_ci is None else f" ({c.diff_ci[0]:+.4f} to {c.diff_ci[1]:+.4f})"
    return f"{c.diff:+.4f}{interval}"


def comparison_row(question: Question) -> list[str]:
    c = question.comparison
    return [question.text, _answer(c), _effect(c), "-" if c.p_value is None else f"{c.p_value:.2g}",
            f"{c.n_a} / {c.n_b}", _change(c)]


def _bounds(estimate: Estimate, as_ratio: bool) -> str:
    low, high = estimate.ci
    show = ratio if as_ratio else (lambda v: f"{v:.3f}")
    return "" if low is None or high is None else f" ({show(low)} to {show(high)})"


def fitted_row(text: str, value: Estimate, constrained: bool, reason: str, as_ratio: bool = False) -> list[str]:
    """A fitted value as a question: constrained by the rule, or why not."""
    shown = "-" if value.value is None else (ratio(value.value) if as_ratio else f"{value.value:.3f}")
    answer = "constrained" if constrained else f"not constrained: {reason}"
    change = "-" if constrained else "more budgets, a wider span of sizes or more seeds (python -m llm_sweep.design)"
    return [text, answer, shown + _bounds(value, as_ratio), "-", "-", change]


def constant_row(text: str, constant: Constant) -> list[str]:
    return fitted_row(text, constant, constant.constrained, constant.reason)


def verdict_table(questions: Sequence[Question], fitted: Sequence[list[str]] = (),
                  heading: Optional[str] = "## Verdicts") -> list[str]:
    """The table's lines (empty without a question)."""
    rows = [comparison_row(q) for q in questions] + list(fitted)
    if not rows:
        return []
    cells = [[cell.replace("|", "\\|") for cell in row] for row in rows]
    head = [heading, ""] if heading else []
    return [*head, markdown_table(HEADERS, cells, [False, False, False, True, True, False]).rstrip("\n")]


def finding_questions(findings: Findings) -> list[Question]:
    """The sweep's questions on final val loss, in the order summary.md discusses them."""
    found = []
    if findings.wider_vs_deeper is not None:
        found.append(Question("Wider or deeper (the best of each)?", findings.wider_vs_deeper.loss))
    found += [Question(f"{m.loss.a} against the reference", m.loss) for m in findings.against_reference]
    found += [Question(f"Which optimizer at {si(scale.params)} params?", m.loss)
              for scale in findings.optimizers for m in scale.matchups]
    for shape in findings.parametrizations:
        base = f" (on the base tuned by {', '.join(shape.tuned_bases)})" if shape.tuned_bases else " (no tuned base)"
        found += [Question(f"Which parametrization at {shape_text(shape.shape)}?{base}", m.loss) for m in shape.matchups]
    found += [Question(f"Wider lower? {m.loss.a} against {m.loss.b}", m.loss)
              for trend in findings.width_trends for m in trend.steps]
    return found


def shape_questions(splits: Sequence[GapSplit]) -> list[Question]:
    return [Question(f"Shape beyond N and D: {s.a.label} vs {s.b.label}", s.shape) for s in splits]


def fit_rows(fit: FitResult) -> list[list[str]]:
    """The compute-optimal exponent and tokens/param at the largest budget, by each approach."""
    law, two = fit.total.law, fit.total.approach2
    rows = [constant_row("Compute-optimal a (N_opt ~ C^a), Approach 3", law.a),
            constant_row("Compute-optimal a, Approach 2", two.a)]
    for name, optima in (("Approach 3", law.at_compute), ("Approach 2", two.at_compute)):
        at = at_largest_budget(optima)
        if at is not None:
            rows.append(fitted_row(f"Tokens/param at the largest budget, {name}", at.tokens_per_param,
                                   at.constrained, at.reason, as_ratio=True))
    return rows
