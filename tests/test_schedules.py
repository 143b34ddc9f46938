import math

import numpy as np
import pytest
import torch

from llm_sweep.core.errors import ConfigError
from llm_sweep.core.optim_config import SCHEDULES, ScheduleConfig
from llm_sweep.core.rules import check
from llm_sweep.optim.schedules import lr_at, set_lr


def test_cosine_warms_up_linearly_from_zero():
    cfg = ScheduleConfig(name="cosine", warmup_frac=0.1)
    assert lr_at(0.0, cfg, 2.0) == 0.0
    assert lr_at(0.05, cfg, 2.0) == pytest.approx(1.0)
    assert lr_at(0.1, cfg, 2.0) == pytest.approx(2.0)


def test_cosine_midpoint_and_exact_minimum_at_the_end():
    cfg = ScheduleConfig(name="cosine", warmup_frac=0.1, min_lr_ratio=0.1)
    # Halfway through the decay the cosine sits halfway between lr=2.0 and min_lr=0.2.
    assert lr_at(0.55, cfg, 2.0) == pytest.approx(1.1)
    assert lr_at(1.0, cfg, 3e-4) == 3e-4 * 0.1


def test_explicit_min_lr_overrides_the_ratio():
    cfg = ScheduleConfig(name="cosine", min_lr=1e-5, min_lr_ratio=0.5)
    assert lr_at(1.0, cfg, 1e-3) == 1e-5


@pytest.mark.parametrize("name", ["cosine", "wsd"])
def test_learning_rate_never_rises_after_warmup(name):
    cfg = ScheduleConfig(name=name, warmup_frac=0.05, decay_frac=0.2, min_lr_ratio=0.1)
    lrs = np.array([lr_at(p, cfg, 1e-3) for p in np.linspace(0.05, 1.0, 500)])
    assert np.all(np.diff(lrs) <= 0)
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4)


def test_wsd_holds_the_plateau_then_decays_linearly():
    cfg = ScheduleConfig(name="wsd", warmup_frac=0.1, decay_frac=0.2, min_lr_ratio=0.0)
    assert lr_at(0.05, cfg, 1.0) == pytest.approx(0.5)
    assert [lr_at(p, cfg, 1.0) for p in (0.1, 0.5, 0.8)] == [1.0, 1.0, 1.0]
    assert lr_at(0.9, cfg, 1.0) == pytest.approx(0.5)
    assert lr_at(0.95, cfg, 1.0) == pytest.approx(0.25)
    assert lr_at(1.0, cfg, 1.0) == 0.0


def test_wsd_decay_may_not_overlap_warmup():
    cfg = ScheduleConfig(name="wsd", warmup_frac=0.3, decay_frac=0.8)
    with pytest.raises(ConfigError, match=r"schedule\.decay_frac=0\.8 is not allowed: must be in "
                                          r"\[0, 1 - schedule\.warmup_frac=0\.3\]"):
        check(cfg, "schedule.")


def test_constant_after_warmup():
    cfg = ScheduleConfig(name="constant", warmup_frac=0.2)
    assert [lr_at(p, cfg, 0.5) for p in (0.0, 0.1, 0.2, 0.7, 1.0)] == [0.0, 0.25, 0.5, 0.5, 0.5]


def test_onecycle_endpoints():
    cfg = ScheduleConfig(name="onecycle", warmup_frac=0.05, div_factor=100.0, final_div_factor=0.1)
    assert lr_at(0.0, cfg, 1e-3) == pytest.approx(1e-5)
    assert lr_at(0.05, cfg, 1e-3) == pytest.approx(1e-3)
    assert lr_at(1.0, cfg, 1e-3) == pytest.approx(1e-4)


@pytest.mark.parametrize("total_steps,pct_start", [(100, 0.3), (1000, 0.05)])
def test_onecycle_matches_torch_onecyclelr(total_steps, pct_start):
    lr = 6e-4
    cfg = ScheduleConfig(name="onecycle", warmup_frac=pct_start, div_factor=25.0, final_div_factor=1e3)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=total_steps, pct_start=pct_start, anneal_strategy="cos",
        div_factor=25.0, final_div_factor=1e3, cycle_momentum=False)
    # torch ends its phases at steps pct_start*N - 1 and N - 1; map each phase onto
    # [0, warmup_frac] and [warmup_frac, 1] of progress.
    peak_step = float(pct_start * total_steps) - 1
    for step in range(total_steps):
        if step <= peak_step:
            progress = pct_start * step / peak_step
        else:
            progress = pct_start + (1 - pct_start) * (step - peak_step) / (total_steps - 1 - peak_step)
        torch_lr = scheduler.get_last_lr()[0]
        assert lr_at(progress, cfg, lr) == pytest.approx(torch_lr, rel=1e-9, abs=0), step
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("name", SCHEDULES)
def test_progress_outside_unit_interval_clamps(name):
    cfg = ScheduleConfig(name=name, warmup_frac=0.1)
    assert lr_at(-0.5, cfg, 1e-3) == lr_at(0.0, cfg, 1e-3)
    assert lr_at(1.7, cfg, 1e-3) == lr_at(1.0, cfg, 1e-3)


def test_zero_warmup_starts_at_the_peak():
    cfg = ScheduleConfig(name="cosine", warmup_frac=0.0)
    assert lr_at(0.0, cfg, 1e-3) == 1e-3
    assert math.isclose(lr_at(0.5, cfg, 1e-3), 0.55e-3)


def test_unknown_schedule_names_the_key_and_choices():
    with pytest.raises(ConfigError, match=r"schedule\.name='linear'.*cosine, onecycle, wsd, constant"):
        check(ScheduleConfig(name="linear"), "schedule.")


def test_set_lr_writes_every_param_group():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    optimizer = torch.optim.AdamW([{"params": [a]}, {"params": [b], "lr": 5.0}], lr=1.0)
    set_lr(optimizer, 0.123)
    assert [g["lr"] for g in optimizer.param_groups] == [0.123, 0.123]
