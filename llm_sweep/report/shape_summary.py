"""report --law FIT.json: the shape effect beyond N and D, as a section of summary.md,
shape_residuals.json, and the shape verdicts added to comparisons.json."""
from __future__ import annotations

import json
from pathlib import Path

from llm_sweep.core.budget import Budget
from llm_sweep.core.errors import DataError
from llm_sweep.report.analysis import Findings
from llm_sweep.scaling.fit_record import FitResult
from llm_sweep.report.shape_residuals import FitRange, GapSplit, ShapeResidual, shape_effects
from llm_sweep.report.tables import si

RESIDUALS_FILE = "shape_residuals.json"


def load_law(path: Path) -> tuple[FitResult, FitRange]:
    try:
        fit = FitResult.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"--law {path}: not a fit.json of `report --fit` ({type(exc).__name__}: {exc})") from exc
    return fit, FitRange(fit.inputs.n_range, fit.inputs.d_range)


def _interval(residual: ShapeResidual) -> str:
    ci = residual.interval
    return "one seed" if ci is None else f"{ci[0]:+.4f} to {ci[1]:+.4f}"


def _residual_row(r: ShapeResidual) -> str:
    where = "" if r.inside else " (outside the fit's N, D: an extrapolation)"
    return (f"| {r.label} | {si(r.params)} | {si(r.tokens)} | {r.measured:.4f} | {r.predicted:.4f} | "
            f"{r.residual:+.4f} | {_interval(r)}{where} | {len(r.residuals)} |")


def _split_line(s: GapSplit, time_budget: bool) -> str:
    tokens = "tokens (the throughput's share under a time budget)" if time_budget else "tokens"
    return (f"- {s.a.label} vs {s.b.label}: gap {s.gap:+.4f} = {s.from_params:+.4f} from parameters "
            f"{s.from_tokens:+.4f} from {tokens} {s.from_shape:+.4f} from shape. Shape: {s.shape.verdict}")


def section(residuals: list[ShapeResidual], splits: list[GapSplit], law_path: Path, fit: FitResult,
            time_budget: bool) -> str:
    """The section; `time_budget`: the compared runs had a time budget (tokens are throughput)."""
    law = fit.total.law
    method = "variable projection" if fit.total.approach3_varpro is not None else "L-BFGS"
    lines = ["## The shape effect beyond N and D", "",
             f"L(N, D) = {law.E.value:.4g} + {law.A.value:.4g} / N^{law.alpha.value:.3f} + "
             f"{law.B.value:.4g} / D^{law.beta.value:.3f} from {law_path} (Approach 3 by {method}, "
             f"N = all parameters, fitted on N {si(fit.inputs.n_range[0])} to {si(fit.inputs.n_range[1])}, "
             f"D {si(fit.inputs.d_range[0])} to {si(fit.inputs.d_range[1])}). It predicts each run's loss "
             "from its parameters and tokens alone; the residual (measured minus predicted) is what the "
             "shape adds beyond N and D. Only a law fitted to the same family (architecture, data, "
             "tokenizer, sequence length) says anything about these runs.", "",
             "| shape | params | tokens | measured | L(N, D) | residual | 95% interval (seeds) | seeds |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |", *map(_residual_row, residuals), ""]
    loose = [f"{name}: {getattr(law, name).reason}" for name in ("alpha", "beta")
             if not getattr(law, name).constrained]
    carried = (f"each shape verdict carries the law's own error ({len(law.refits)} bootstrap refits) "
               "beside the seeds'" if law.refits else
               "this fit.json holds no bootstrap refits (an older report): the verdicts treat the law as exact; "
               "refit it for verdicts that carry its error")
    lines += [(f"The law is NOT constrained ({'; '.join(loose)}): " if loose else "The law is constrained: ")
              + carried + ".", ""]
    if splits:
        lines += ["Each gap in final loss (negative: the first shape is lower), split into what the "
                  "change in parameters and in tokens explains through L(N, D) and what is left for "
                  "shape, with the verdict over seeds on the shape part:", "",
                  *(_split_line(s, time_budget) for s in splits), ""]
    return "\n".join(lines) + "\n"


def write_shape_effects(findings: Findings, law_path: Path, law: tuple[FitResult, FitRange],
                        out_dir: Path) -> tuple[str, list[GapSplit], tuple[Path, ...]]:
    """Write shape_residuals.json; the section of summary.md and the shape verdicts (for
    comparisons.json), which report/write.py writes."""
    fit, fitted = law
    residuals, splits = shape_effects(findings, fit.total.law, fitted, fit.inputs.configs)
    if not residuals:
        raise DataError("--law: no finished run at the compared budget logged its tokens: no residual")
    out = out_dir / RESIDUALS_FILE
    out.write_text(json.dumps([{"shape": r.label, "params": r.params, "tokens": r.tokens,
                                "measured": r.measured, "predicted": r.predicted, "residual": r.residual,
                                "residual_ci": None if r.interval is None else list(r.interval),
                                "seeds": len(r.residuals), "inside_fit": r.inside} for r in residuals],
                              indent=1, allow_nan=False) + "\n")
    time_budget = any(Budget.from_params(dict(row.config_key)).cfg.time for row in findings.compared)
    return section(residuals, splits, law_path, fit, time_budget), splits, (out,)
