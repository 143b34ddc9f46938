"""The loss-curve picture of a run, drawn from the metrics.jsonl that train() writes."""
from __future__ import annotations

import json
from pathlib import Path

from llm_sweep.core.run_record import TOKENS, TRAIN_LOSS, VAL_LOSS


def read_loss_curves(metrics_path: Path, tokens_per_step: int
                     ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(tokens, loss) points of the train and the validation loss, in logging order.

    Train records carry progress/tokens; evaluation records only their step.
    """
    train, val = [], []
    for line in Path(metrics_path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a killed job
            continue
        tokens = record["step"] * tokens_per_step
        if TRAIN_LOSS in record:
            train.append((int(record.get(TOKENS, tokens)), record[TRAIN_LOSS]))
        if VAL_LOSS in record:
            val.append((tokens, record[VAL_LOSS]))
    return train, val


def plot_loss_curve(metrics_path: Path, tokens_per_step: int, out_path: Path,
                    title: str = "") -> bool:
    """Draw train and validation loss against tokens into a PNG; False if nothing was logged."""
    train, val = read_loss_curves(metrics_path, tokens_per_step)
    if not train and not val:
        return False
    # A Figure with the Agg canvas, not pyplot: no global backend, no GUI, thread-safe.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100, layout="constrained")
    axes = figure.subplots()
    if train:
        axes.plot(*zip(*train), label=TRAIN_LOSS, linewidth=1.2)
    if val:
        axes.plot(*zip(*val), "o-", label=VAL_LOSS, linewidth=1.5, markersize=3)
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("tokens")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(out_path)
    return True
