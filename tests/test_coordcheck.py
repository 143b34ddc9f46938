"""The coordinate check: under mup the activations keep their size as the model widens, under
sp they grow; under completep they keep it as the model deepens."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from conftest import run_app
from llm_sweep.coordcheck.cli import run_check
from llm_sweep.coordcheck.measure import MODULES, CoordRecord
from llm_sweep.coordcheck.verdict import LIMIT, drifts, verdict
from llm_sweep.core.budget import BudgetConfig
from llm_sweep.core.config import BatchConfig, OptimConfig, RunConfig, load_config
from llm_sweep.core.coordcheck_config import CoordcheckConfig
from llm_sweep.core.data_config import DataConfig
from llm_sweep.core.errors import ConfigError
from llm_sweep.core.model_config import ModelConfig
from llm_sweep.models import parametrization

# A cheap setting: one layer, 3 steps of 4 x 32 bytes of Shakespeare (about 2 s on 2 cores),
# at the command's lr (conf/coordcheck.yaml), where updates set every output's size.
CHEAP = dict(steps=3, batch_size=4, seq_len=32)
WIDTHS = [64, 128, 256, 512]


def cheap_run(**coordcheck) -> RunConfig:
    model = ModelConfig(n_layer=1, n_embd=64, max_seq_len=64, base_width=64, base_depth=1)
    return load_config(RunConfig(model=model, data=DataConfig(tokenizer="bytes"), budget=BudgetConfig(steps=1),
                                 batch=BatchConfig(seq_len=32), device="cpu", optim=OptimConfig(lr=1e-2),
                                 coordcheck=CoordcheckConfig(**{**CHEAP, **coordcheck})))


def test_mup_keeps_every_activation_and_update_within_2x_across_widths_and_sp_grows():
    records = run_check(cheap_run(parametrizations=["sp", "mup"], widths=WIDTHS))
    assert {(r.parametrization, r.width, r.depth, r.step, r.module) for r in records} == {
        (p, w, 1, s, m) for p in ("sp", "mup") for w in WIDTHS for s in range(3) for m in MODULES}
    assert all(r.delta == 0.0 for r in records if r.step == 0)
    passes, line = verdict(records, "mup")
    assert passes, line
    assert line.startswith("mup: width-independent: no activation or update grows or shrinks more than 2x "
                           "from width 64 to 512")
    sp = {(d.module, d.measure): d.ratio for d in drifts(records, "sp")}
    assert sp[("logits", "change")] > LIMIT  # measured 2.8x
    assert max(sp.values()) > 10  # the hidden layers most (mlp 81x)
    assert not verdict(records, "sp")[0]
    # At the base width the two are the same model: the same numbers.
    at_base = {p: sorted((r.step, r.module, r.rms, r.delta) for r in records
                         if r.parametrization == p and r.width == 64) for p in ("sp", "mup")}
    assert at_base["sp"] == at_base["mup"]


def test_completep_keeps_every_activation_and_update_within_2x_across_depths():
    records = run_check(cheap_run(parametrizations=["completep"], widths=[64], depths=[1, 2, 4, 8]))
    assert {r.depth for r in records} == {1, 2, 4, 8} and {r.width for r in records} == {64}
    passes, line = verdict(records, "completep")
    assert passes and line.startswith("completep: depth-independent"), line


def tied_embedding_lr_over_width(config, name, param):
    scales = parametrization.optimizer_scales(config, name, param)
    return replace(scales, lr=scales.lr / parametrization.width_mult(config)) if name == "tok_emb.weight" else scales


def hidden_lr_without_fan_in(config, name, param):
    scales = parametrization.optimizer_scales(config, name, param)
    if name.startswith("blocks.") and param.dim() == 2:
        return replace(scales, lr=scales.lr * parametrization.fan_in_mult(config, param.size(1)))
    return scales


@pytest.mark.parametrize("target, mutant, line", [
    ("llm_sweep.models.layers.logit_multiplier", lambda config: parametrization.logit_multiplier(config) ** 2,
     "mup: NOT width-independent: the logits update shrinks"),
    ("llm_sweep.optim.adamw.optimizer_scales", tied_embedding_lr_over_width,
     "mup: NOT width-independent: the embedding update shrinks"),
    ("llm_sweep.optim.adamw.optimizer_scales", hidden_lr_without_fan_in,
     "mup: NOT width-independent: the mlp update grows"),
], ids=["head-multiplier-twice", "tied-embedding-lr-over-width", "hidden-lr-without-fan-in"])
def test_the_check_fails_a_parametrization_with_a_known_bug_naming_module_and_direction(
        monkeypatch, target, mutant, line):
    """Mutation tests: each bug applied to mup, the check must fail it in one line."""
    monkeypatch.setattr(target, mutant)
    records = run_check(cheap_run(parametrizations=["mup"], widths=WIDTHS))
    passes, said = verdict(records, "mup")
    assert not passes and said.startswith(line), said
    assert said.endswith("from width 64 to 512 after 3 step(s) (limit 2x)")


def test_the_verdict_reads_updates_both_ways_and_lets_a_level_shrink():
    def record(width: int, step: int, module: str, rms: float, delta: float) -> CoordRecord:
        return CoordRecord("mup", width, 2, step, module, rms, delta)

    records = [record(64, 0, "logits", 1.0, 0.0), record(1024, 0, "logits", 9.0, 0.0),  # step 0 is not read
               record(64, 1, "logits", 1.0, 1.0), record(1024, 1, "logits", 0.1, 0.6),  # a level may shrink
               record(64, 1, "mlp", 1.0, 1.0), record(256, 1, "mlp", 5.0, 5.0), record(1024, 1, "mlp", 1.9, 1.9)]
    found = [(d.module, d.measure, d.ratio, d.smallest, d.largest) for d in drifts(records, "mup")]
    assert found[0] == ("mlp", "change", 1.9, 64, 1024) and found[-1] == ("logits", "level", 0.1, 64, 1024)
    assert verdict(records, "mup") == (True, "mup: width-independent: no activation or update grows or shrinks "
                                             "more than 2x from width 64 to 1024 after 2 step(s) (largest: mlp "
                                             "change 1.90x)")
    records += [record(64, 1, "residual", 1.0, 1.0), record(1024, 1, "residual", 1.0, 0.4)]
    assert verdict(records, "mup") == (False, "mup: NOT width-independent: the residual update shrinks 2.50x "
                                              "from width 64 to 1024 after 2 step(s) (limit 2x)")
    records += [record(64, 1, "attention", 1.0, 1.0), record(1024, 1, "attention", 3.0, 1.0)]
    assert verdict(records, "mup")[1].startswith("mup: NOT width-independent: the attention output grows 3.00x")


def test_a_width_that_breaks_a_model_rule_names_the_coordcheck_key():
    with pytest.raises(ConfigError, match=r"^coordcheck\.widths/depths: the shape 1 x 96 breaks a model rule: "
                                          r"model\.n_embd=96 is not a multiple of model\.head_dim=64"):
        run_check(cheap_run(widths=[64, 96]))
    with pytest.raises(ConfigError, match=r"^coordcheck\.seq_len=128 exceeds model\.max_seq_len=64"):
        run_check(cheap_run(widths=[64, 128], seq_len=128))


@pytest.mark.slow
def test_the_command_writes_records_and_a_plot_and_ends_with_one_verdict_per_parametrization(tmp_path):
    done = run_app(["coordcheck.parametrizations=[sp,mup]", "coordcheck.widths=[64,256]", "coordcheck.steps=2",
                    "coordcheck.batch_size=2", "coordcheck.seq_len=32", "model.n_layer=1", "device=cpu",
                    "hydra.run.dir=out"], cwd=tmp_path, module="llm_sweep.coordcheck", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "coordcheck.json").read_text())
    assert len(rows) == 2 * 2 * 2 * len(MODULES)  # parametrizations x widths x steps x modules
    assert set(rows[0]) == {"parametrization", "width", "depth", "step", "module", "rms", "delta"}
    assert {row["parametrization"] for row in rows} == {"sp", "mup"} and all(row["rms"] > 0 for row in rows)
    assert (tmp_path / "out" / "coordcheck.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    last = done.stdout.strip().splitlines()[-2:]
    assert last[0].startswith("sp: NOT width-independent") and last[1].startswith("mup: width-independent")
