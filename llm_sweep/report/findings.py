"""summary.md: what the runs show, with the numbers, and what they are too few or too
noisy to show."""
from __future__ import annotations

from collections import Counter
from typing import Mapping, Optional, Sequence

from llm_sweep.core.references import CHINCHILLA_TOKENS_PER_PARAM, SEED_TOKENS_PER_PARAM
from llm_sweep.report.analysis import ConfigResult, Findings, Noise, ShapeSeries, within_noise
from llm_sweep.report.runs import RunRow
from llm_sweep.report.tables import ratio, si


def _shape(config: ConfigResult) -> str:
    run = config.best
    return f"{run.preset} {run.n_layer}x{run.n_embd} ({si(run.params)} params)"


def _result(config: ConfigResult) -> str:
    return f"{_shape(config)}: {config.loss:.4f} ({config.label})"


def _verdict(winner: str, difference: float, noise: Optional[Noise]) -> str:
    """One sentence that claims a winner only when the difference exceeds the seed spread."""
    verdict = within_noise(difference, noise)
    if verdict:
        return (f"The difference, {abs(difference):.4f}, is within the seed-to-seed spread "
                f"({noise.spread:.4f}): no conclusion.")
    if verdict is None:
        return (f"{winner} is lower by {abs(difference):.4f}; the noise is unknown (no repeated "
                "seeds), so this is not confirmed.")
    return (f"{winner} is lower by {abs(difference):.4f}, more than the seed-to-seed spread "
            f"({noise.spread:.4f}).")


def _noise_section(noise: Optional[Noise]) -> list[str]:
    if noise is None:
        return ["No config was run with several seeds, so the run-to-run noise is unknown: "
                "small differences below are unconfirmed."]
    return [f"Seed-to-seed spread: {noise.spread:.4f} (max - min final val loss over "
            f"{len(noise.config.runs)} seeds of {noise.config.best.name}). Differences no larger "
            "than this are reported as within the noise."]


def _shape_section(shapes: Optional[ShapeSeries], noise: Optional[Noise]) -> list[str]:
    if shapes is None:
        return ["No finished runs: nothing to compare."]
    ref = shapes.reference
    lines = [f"Reference shape: {_result(ref)}. Wider = same n_layer, larger n_embd; deeper = "
             f"same n_embd, more layers; other shapes ({len(shapes.other)}) are plotted only."]
    for name, series in (("wider", shapes.wider), ("deeper", shapes.deeper)):
        if len(series) == 1:
            lines.append(f"Only one {name} shape besides the reference: a single point, not a trend.")
    if not shapes.wider or not shapes.deeper:
        missing = " and ".join(n for n, s in (("wider", shapes.wider), ("deeper", shapes.deeper)) if not s)
        return lines + [f"Too few runs to compare shapes: no {missing} shape was run."]
    wider = min(shapes.wider, key=lambda c: c.loss)
    deeper = min(shapes.deeper, key=lambda c: c.loss)
    difference = deeper.loss - wider.loss
    lines += [f"- best wider: {_result(wider)}", f"- best deeper: {_result(deeper)}",
              _verdict("Wider" if difference > 0 else "Deeper", difference, noise)]
    return lines


def _tokens_section(findings: Findings) -> list[str]:
    best, runs = findings.lowest, findings.compared
    if best is None:
        return ["No finished run logged its tokens: nothing to locate."]
    lines = [f"Lowest final val loss {best.val_loss:.4f} ({best.name}, {si(best.params)} params) at "
             f"{ratio(best.tokens_per_param)} tokens/param and {ratio(best.tokens_per_non_embedding_param)}"
             f" tokens/non-embedding param (Chinchilla ~{CHINCHILLA_TOKENS_PER_PARAM:.0f}, "
             f"seed run ~{SEED_TOKENS_PER_PARAM:.0f})."]
    explored = {row.tokens_per_param for row in runs}
    if len(explored) < 3:
        return lines + [f"Too few tokens/param values ({len(explored)}) to locate a minimum."]
    if best.tokens_per_param in (min(explored), max(explored)):
        lines.append(f"The minimum is at the edge of the explored range ({ratio(min(explored))} to "
                     f"{ratio(max(explored))} tokens/param): the optimum may lie beyond it.")
    if findings.noise is not None:
        close = [row for row in runs if row is not best
                 and row.val_loss - best.val_loss <= findings.noise.spread]
        if close:
            spread = [row.tokens_per_param for row in (best, *close)]
            lines.append(f"{len(close)} other run(s) are within the seed-to-seed spread of it: the "
                         f"minimum lies somewhere in {ratio(min(spread))} to {ratio(max(spread))} "
                         "tokens/param.")
    return lines


def _optimizer_section(findings: Findings) -> list[str]:
    compared = [scale for scale in findings.optimizers if len(scale.by_optimizer) > 1]
    if not compared:
        return ["No model size was run with more than one optimizer: no comparison."]
    lines = []
    for scale in compared:
        ranked = sorted(scale.by_optimizer.items(), key=lambda item: item[1].loss)
        (winner, best), (_, second) = ranked[0], ranked[1]
        lines += [f"- {si(scale.params)} params: " + "; ".join(
                      f"{name} {config.loss:.4f} ({config.label})" for name, config in ranked),
                  "  " + _verdict(winner, second.loss - best.loss, findings.noise)]
    single = [f"{si(s.params)} ({', '.join(s.by_optimizer)})" for s in findings.optimizers
              if len(s.by_optimizer) == 1]
    if single:
        lines.append(f"Sizes run with one optimizer only: {', '.join(single)}.")
    return lines


def summary_markdown(rows: Sequence[RunRow], findings: Findings, source: str,
                     skipped: Mapping[str, str]) -> str:
    statuses = Counter(row.status for row in rows)
    others = len([row for row in rows if row.finished]) - len(findings.compared)
    lines = [f"# Sweep report: {source}", "",
             f"{len(rows)} runs (" + ", ".join(f"{n} {s.lower()}" for s, n in sorted(statuses.items()))
             + f"). Compared: {len(findings.compared)} finished runs at budget {findings.budget}"
             + (f"; {others} finished run(s) at other budgets are in runs.csv only." if others else "."),
             "", "## Noise", *_noise_section(findings.noise),
             "", "## Shape: wider vs deeper (final val loss)",
             *_shape_section(findings.shapes, findings.noise),
             "", "## Tokens per parameter", *_tokens_section(findings),
             "", "## Optimizers (final val loss, best config per size)", *_optimizer_section(findings)]
    if skipped:
        lines += ["", "## Skipped plots", *(f"- {name}: {why}" for name, why in skipped.items())]
    return "\n".join(lines) + "\n"
