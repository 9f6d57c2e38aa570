"""ValidationLRDecay follows the paper's rule on scripted validation scores."""

from __future__ import annotations

import pytest
import torch

from srode_plugins.errors import OptionError
from srode_plugins.lr_schedulers import ValidationLRDecay


def _optimizer(lr: float = 1e-3, groups: int = 1) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr * (i + 1)} for i in range(groups)]
    return torch.optim.Adam(params, lr=lr)


def _lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [group["lr"] for group in optimizer.param_groups]


def test_lr_decays_after_patience_validations_without_improvement_and_counter_resets() -> None:
    optimizer = _optimizer(1e-3)
    scheduler = ValidationLRDecay(optimizer, patience=3, factor=0.2, min_lr=1e-9)
    # PSNR trace: improves twice, then stalls 3 times (decay), stalls 2 more (no decay), improves, stalls 3 (decay)
    trace = [20.0, 21.0, 20.5, 21.0, 20.9, 20.0, 20.0, 22.0, 21.0, 21.5, 21.9]
    expected = [1e-3, 1e-3, 1e-3, 1e-3, 2e-4, 2e-4, 2e-4, 2e-4, 2e-4, 2e-4, 4e-5]
    for score, lr in zip(trace, expected, strict=True):
        assert scheduler.step_validation(score) is False
        assert _lrs(optimizer)[0] == pytest.approx(lr, rel=1e-12)
    assert scheduler.best_score == 22.0
    assert scheduler.num_decays == 2
    assert scheduler.get_last_lr() == pytest.approx([4e-5])


def test_equal_score_is_not_an_improvement() -> None:
    optimizer = _optimizer(1.0)
    scheduler = ValidationLRDecay(optimizer, patience=2, factor=0.5, min_lr=0.0)
    for score in (30.0, 30.0, 30.0):
        scheduler.step_validation(score)
    assert _lrs(optimizer) == [0.5]


def test_nan_score_counts_as_no_improvement() -> None:
    optimizer = _optimizer(1.0)
    scheduler = ValidationLRDecay(optimizer, patience=1, factor=0.5, min_lr=0.0)
    scheduler.step_validation(10.0)
    scheduler.step_validation(float("nan"))
    assert _lrs(optimizer) == [0.5]
    assert scheduler.best_score == 10.0


def test_stop_is_requested_once_every_lr_falls_below_min_lr() -> None:
    optimizer = _optimizer(1e-3, groups=2)  # lrs 1e-3 and 2e-3
    scheduler = ValidationLRDecay(optimizer, patience=1, factor=0.1, min_lr=1e-5)
    stops = [scheduler.step_validation(score) for score in (5.0, 4.0, 4.0, 4.0)]
    # after 3 decays the lrs are 1e-6 and 2e-6, both below 1e-5; after 2 decays 2e-5 is still above
    assert stops == [False, False, False, True]
    assert _lrs(optimizer) == pytest.approx([1e-6, 2e-6])


def test_min_mode_treats_lower_scores_as_better() -> None:
    optimizer = _optimizer(1.0)
    scheduler = ValidationLRDecay(optimizer, patience=1, factor=0.5, min_lr=0.0, mode="min")
    scheduler.step_validation(1.0)
    scheduler.step_validation(0.5)
    assert _lrs(optimizer) == [1.0]
    scheduler.step_validation(0.7)
    assert _lrs(optimizer) == [0.5]


def test_per_iteration_step_leaves_lr_unchanged() -> None:
    optimizer = _optimizer(1e-3)
    scheduler = ValidationLRDecay(optimizer)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert _lrs(optimizer) == [1e-3]


def test_state_dict_round_trip_restores_patience_counter_and_best_score() -> None:
    optimizer = _optimizer(1.0)
    scheduler = ValidationLRDecay(optimizer, patience=3, factor=0.5, min_lr=0.0)
    for score in (10.0, 9.0, 9.0):
        scheduler.step_validation(score)
    state = scheduler.state_dict()
    assert "optimizer" not in state

    resumed_optimizer = _optimizer(1.0)
    resumed = ValidationLRDecay(resumed_optimizer, patience=3, factor=0.5, min_lr=0.0)
    resumed.load_state_dict(state)
    assert resumed.best_score == 10.0
    assert resumed.validations_without_improvement == 2
    resumed.step_validation(9.0)  # third stall in a row: decays only if the counter was restored
    assert _lrs(resumed_optimizer) == [0.5]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"patience": 0}, "train.scheduler.patience"),
        ({"factor": 1.0}, "train.scheduler.factor"),
        ({"min_lr": -1.0}, "train.scheduler.min_lr"),
        ({"mode": "up"}, "train.scheduler.mode"),
    ],
)
def test_invalid_options_name_the_option_key(kwargs: dict, key: str) -> None:
    with pytest.raises(OptionError, match=key):
        ValidationLRDecay(_optimizer(), **kwargs)
