"""`python -m llm_sweep.coordcheck`: do activations stay the same size as the model widens?

    python -m llm_sweep.coordcheck model.parametrization=mup
    python -m llm_sweep.coordcheck coordcheck.parametrizations=[sp,mup]
    python -m llm_sweep.coordcheck coordcheck.parametrizations=[mup,completep] \\
        coordcheck.widths=[256] coordcheck.depths=[2,4,8,16]

For each parametrization and each width of coordcheck.widths (or depth of coordcheck.depths):
a fresh model of that shape, coordcheck.steps AdamW/SophiaG steps at the constant lr
optim.lr (1e-2 here: updates must dominate the initial weights) on coordcheck.batch_size x
coordcheck.seq_len tokens of the training data (UTF-8 bytes by default), recording the RMS
of each layer kind's output on a fixed probe batch, and of its change since step 0, at every
step. The base
shape is model.base_width / model.base_depth where set, else the narrowest width and the
shallowest depth. Writes coordcheck.json and coordcheck.png to the run's output directory
and ends with one line per parametrization: whether every layer kind's update (its output's
change since step 0) stayed within 2x, either way, and no output grew more than 2x, from the
smallest shape to the largest (llm_sweep.coordcheck.verdict).
"""
from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from llm_sweep.coordcheck.measure import CoordRecord, Shape, measure_shape, shape_run
from llm_sweep.coordcheck.plot import plot_records
from llm_sweep.coordcheck.verdict import JSON_FILE, PNG_FILE, verdict, write_records
from llm_sweep.core import console
from llm_sweep.core.config import CONF_DIR, RunConfig, load_config, register_configs
from llm_sweep.core.console import user_errors
from llm_sweep.core.coordcheck_config import CoordcheckConfig
from llm_sweep.core.errors import ConfigError
from llm_sweep.core.rules import check
from llm_sweep.data.cache import prepare_dataset
from llm_sweep.hardware import resolve_device

register_configs()


def with_base_shape(cfg: DictConfig) -> DictConfig:
    """cfg with model.base_width and base_depth set where null: the narrowest width and the
    shallowest depth of the check (so `model.parametrization=mup` needs nothing more)."""
    coordcheck: CoordcheckConfig = OmegaConf.to_object(cfg.coordcheck)
    check(coordcheck, "coordcheck.")
    cfg = cfg.copy()
    if cfg.model.base_width is None:
        cfg.model.base_width = min(coordcheck.widths or [cfg.model.n_embd])
    if cfg.model.base_depth is None:
        cfg.model.base_depth = min(coordcheck.depths or [cfg.model.n_layer])
    return cfg


def shapes(run: RunConfig) -> list[Shape]:
    """Every (parametrization, width, depth) of the check, each a valid model."""
    check_cfg = run.coordcheck
    if check_cfg.seq_len > run.model.max_seq_len:
        raise ConfigError(f"coordcheck.seq_len={check_cfg.seq_len} exceeds model.max_seq_len="
                          f"{run.model.max_seq_len}")
    found = [Shape(parametrization, width, depth)
             for parametrization in check_cfg.parametrizations or [run.model.parametrization]
             for width in check_cfg.widths or [run.model.n_embd]
             for depth in check_cfg.depths or [run.model.n_layer]]
    for shape in found:
        try:
            check(shape_run(run, shape, run.model.base_width, run.model.base_depth).model, "model.")
        except ConfigError as exc:
            raise ConfigError(f"coordcheck.widths/depths: the shape {shape.depth} x {shape.width} "
                              f"breaks a model rule: {exc}") from exc
    return found


def run_check(run: RunConfig) -> list[CoordRecord]:
    device = resolve_device(run.device)
    shard = prepare_dataset(run.data).train
    records: list[CoordRecord] = []
    for shape in shapes(run):
        records += measure_shape(shape_run(run, shape, run.model.base_width, run.model.base_depth),
                                 shard, device)
    return records


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="coordcheck")
@user_errors
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    run = load_config(with_base_shape(cfg))
    records = run_check(run)
    write_records(records, out_dir / JSON_FILE)
    plot_records(records, out_dir / PNG_FILE)
    console.show(f"wrote {out_dir / JSON_FILE} and {out_dir / PNG_FILE}")
    for parametrization in dict.fromkeys(r.parametrization for r in records):
        console.show(verdict(records, parametrization)[1])
