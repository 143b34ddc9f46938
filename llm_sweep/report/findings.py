"""summary.md: what the runs show, with the numbers, and what they are too few or too
noisy to show. Every comparison ends in a verdict over seeds (llm_sweep.scaling.verdicts)."""
from __future__ import annotations

from collections import Counter
from typing import Mapping, Optional, Sequence

from llm_sweep.core.references import CHINCHILLA_TOKENS_PER_PARAM, SEED_TOKENS_PER_PARAM
from llm_sweep.report.analysis import Findings
from llm_sweep.report.configs import ConfigResult, Matchup
from llm_sweep.report.parametrizations import shape_text
from llm_sweep.scaling.fit_record import Noise
from llm_sweep.report.rows import RunRow
from llm_sweep.report.tables import ratio, si
from llm_sweep.scaling.verdicts import P_THRESHOLD


def _shape(config: ConfigResult) -> str:
    run = config.best
    return f"{run.preset} {run.n_layer}x{run.n_embd} ({si(run.params)} params)"


def _result(config: ConfigResult) -> str:
    return f"{_shape(config)}: {config.loss:.4f} ({config.label})"


def _noise_section(noise: Optional[Noise]) -> list[str]:
    how = (f"Each comparison below is judged over its seeds (Welch's t-test and its 95% interval of the "
           f"difference, a winner only at p < {P_THRESHOLD:g}); a side with one seed gets no verdict. "
           "comparisons.json holds them all, on final val loss, ppl and accuracy.")
    if noise is None:
        return ["No config was run with several seeds, so the run-to-run noise is unknown: no "
                "comparison below can have a verdict.", how]
    low, high = noise.pooled_sd_ci
    return [f"Seed-to-seed sd of final val loss: {noise.pooled_sd or 0:.4f} (95% interval {low or 0:.4f} to "
            f"{high or 0:.4f}), pooled over {noise.repeated_configs} config(s) with {noise.dof} degrees of "
            f"freedom; the widest max - min over one config's seeds: {noise.max_spread:.4f}.", how]


def _shape_section(findings: Findings) -> list[str]:
    shapes = findings.shapes
    if shapes is None:
        return ["No finished runs: nothing to compare."]
    lines = [f"Reference shape: {_result(shapes.reference)}. Wider = same n_layer, larger n_embd; "
             f"deeper = same n_embd, more layers; other shapes ({len(shapes.other)}) are plotted only."]
    for name, series in (("wider", shapes.wider), ("deeper", shapes.deeper)):
        if len(series) == 1:
            lines.append(f"Only one {name} shape besides the reference: a single point, not a trend.")
    if findings.shape_lrs is not None:
        lines.append(f"Learning rates: {findings.shape_lrs.text}")
    best = findings.wider_vs_deeper
    if best is None:
        missing = " and ".join(n for n, s in (("wider", shapes.wider), ("deeper", shapes.deeper)) if not s)
        lines.append(f"Too few runs to compare shapes: no {missing} shape was run.")
    else:
        lines += [f"- best wider: {_result(best.a)}", f"- best deeper: {_result(best.b)}",
                  f"Best wider vs best deeper: {best.loss.verdict}"]
    if findings.against_reference:
        lines += ["Each shape against the reference:", *(f"- {m.loss.a} {m.a.loss:.4f} ({m.a.label}): "
                                                         f"{m.loss.verdict}" for m in findings.against_reference)]
    return lines


def _tokens_section(findings: Findings) -> list[str]:
    best, runs = findings.lowest, findings.compared
    if best is None:
        return ["No finished run logged its tokens: nothing to locate."]
    lines = [f"Lowest final val loss {best.val_loss:.4f} ({best.name}, {si(best.params)} params) at "
             f"{ratio(best.tokens_per_param)} tokens/param and {ratio(best.tokens_per_non_embedding_param)}"
             f" tokens/non-embedding param (Chinchilla ~{CHINCHILLA_TOKENS_PER_PARAM:.0f}, "
             f"seed run ~{SEED_TOKENS_PER_PARAM:.0f}: published numbers without seeds, for "
             "orientation, no verdict)."]
    explored = {row.tokens_per_param for row in runs}
    if len(explored) < 3:
        return lines + [f"Too few tokens/param values ({len(explored)}) to locate a minimum."]
    if best.tokens_per_param in (min(explored), max(explored)):
        lines.append(f"The minimum is at the edge of the explored range ({ratio(min(explored))} to "
                     f"{ratio(max(explored))} tokens/param): the optimum may lie beyond it.")
    if findings.noise is not None:
        # Other configs, not other seeds of the best's own config (they share its tokens/param).
        close = [row for row in runs if row.config_key != best.config_key
                 and row.val_loss - best.val_loss <= findings.noise.max_spread]
        if close:
            spread = [row.tokens_per_param for row in (best, *close)]
            lines.append(f"{len({row.config_key for row in close})} other config(s) are within the widest "
                         f"seed-to-seed spread of it: the minimum lies somewhere in {ratio(min(spread))} to "
                         f"{ratio(max(spread))} tokens/param.")
    return lines


def _lr_section(findings: Findings) -> list[str]:
    if not findings.lr_curves:
        return []
    lines = ["", "## Learning rate per shape (lr_transfer.json, lr_transfer.png)",
             "Each shape run at three or more learning rates: its best on the grid and the optimum "
             "of a parabola in log(lr) through the best and its neighbours."]
    for curve in findings.lr_curves:
        where = "AT THE EDGE of its grid" if curve.at_edge else f"optimum {curve.optimum:.3g}"
        lines.append(f"- {curve.transfer}, {curve.shape} ({curve.optimizer}): best lr {curve.best.lr:g} "
                     f"of {len(curve.points)} (loss {curve.best.loss:.4f}), {where}")
    lines += [f"- {transfer.verdict}" for transfer in findings.lr_transfers]
    return lines


def _verdict(m: Matchup) -> str:
    return f"  {m.loss.a} vs {m.loss.b}: {m.loss.verdict}"


def _optimizer_section(findings: Findings) -> list[str]:
    compared = [scale for scale in findings.optimizers if len(scale.by_optimizer) > 1]
    if not compared:
        return ["No model size was run with more than one optimizer: no comparison."]
    lines = []
    for scale in compared:
        ranked = sorted(scale.by_optimizer.items(), key=lambda item: item[1].loss)
        lines += [f"- {si(scale.params)} params: " + "; ".join(
                      f"{name} {config.loss:.4f} ({config.label})" for name, config in ranked),
                  *(_verdict(m) for m in scale.matchups)]
    single = [f"{si(s.params)} ({', '.join(s.by_optimizer)})" for s in findings.optimizers
              if len(s.by_optimizer) == 1]
    if single:
        lines.append(f"Sizes run with one optimizer only: {', '.join(single)}.")
    return lines


# A parametrization comparison's fairness (ParametrizationShape.fair), and whether a
# parametrization's loss falls at every wider width (WidthTrend.falls_monotonically).
FAIRNESS = {True: "fair to each side.",
            None: "fair only if the transferred side's base was tuned, which these runs do not show.",
            False: "NOT fair: a side's lr is at its grid's edge or was not tuned at this shape."}
FALLS = {True: "falls with every wider width (each step decided)", False: "does NOT fall with every wider width",
         None: "has steps without a verdict"}


def _parametrization_section(findings: Findings) -> list[str]:
    if not findings.parametrizations and not findings.width_trends:
        return []
    lines = ["", "## Parametrizations (final val loss, best config of each)"]
    for found in findings.parametrizations:
        ranked = sorted(found.configs.items(), key=lambda item: item[1].loss)
        lines.append(f"- {shape_text(found.shape)}: " + "; ".join(
            f"{label} {config.loss:.4f} ({config.label}; {found.settings[label].text})" for label, config in ranked))
        lines += [_verdict(m) for m in found.matchups]
        base = (f"rests on the base tuned by {', '.join(found.tuned_bases)}" if found.tuned_bases
                else "rests on no tuned base")
        lines.append(f"  This comparison {base}; {FAIRNESS[found.fair]}")
    for trend in findings.width_trends:
        lines.append(f"- across widths, {trend.label}: " + ", ".join(
            f"{config.best.n_embd} {config.loss:.4f}" for config in trend.configs)
            + f"; its loss {FALLS[trend.falls_monotonically]}")
        lines += [_verdict(m) for m in trend.steps]
    return lines


def summary_markdown(rows: Sequence[RunRow], findings: Findings, source: str,
                     skipped: Mapping[str, str], verdicts: Sequence[str] = (),
                     sections: Sequence[str] = ()) -> str:
    """summary.md: the verdict table (`verdicts`, its lines) on the first screen, then the
    findings at length, then `sections` (the fit's, the shape effect's) as given."""
    statuses = Counter(row.status for row in rows)
    others = len([row for row in rows if row.finished]) - len(findings.compared)
    lines = [f"# Sweep report: {source}", "",
             f"{len(rows)} runs (" + ", ".join(f"{n} {s.lower()}" for s, n in sorted(statuses.items()))
             + f"). Compared: {len(findings.compared)} finished runs at budget {findings.budget}"
             + (f"; {others} finished run(s) at other budgets are in runs.csv only." if others else "."),
             *(["", *verdicts] if verdicts else []),
             "", "## Noise", *_noise_section(findings.noise),
             "", "## Shape: wider vs deeper (final val loss)",
             *_shape_section(findings),
             "", "## Tokens per parameter", *_tokens_section(findings),
             "", "## Optimizers (final val loss, best config per size)", *_optimizer_section(findings),
             *_lr_section(findings), *_parametrization_section(findings)]
    for section in sections:
        lines += ["", section.rstrip("\n")]
    if skipped:
        lines += ["", "## Skipped plots", *(f"- {name}: {why}" for name, why in skipped.items())]
    return "\n".join(lines) + "\n"
