"""Learning-rate schedulers any model can use (entry-point group `srode.lr_schedulers`).

`ValidationLRDecay` is the validation-driven decay of Le Scao (2020): when `patience` validations in a
row fail to improve the best score, every learning rate is multiplied by `factor`; once the largest
learning rate falls below `min_lr`, training should stop.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from srode_plugins.errors import OptionError

_MODES = ("max", "min")


class ValidationLRDecay(LRScheduler):
    """Multiply the learning rates by `factor` after `patience` validations without improvement.

    The per-iteration `step()` (called by BasicSR's `update_learning_rate`) leaves the learning rates
    unchanged; the engine calls `step_validation(score)` after each validation with the first metric of
    that validation (PSNR in dB for `mode: max`; use `mode: min` for a loss-like metric).

    Args:
        optimizer: the optimizer whose parameter groups are scaled.
        patience: number of consecutive validations without improvement that trigger a decay (>= 1).
        factor: multiplier applied to every learning rate at a decay, in (0, 1).
        min_lr: training should stop once the largest learning rate is below this value (>= 0).
        mode: "max" when a higher score is better (PSNR, SSIM), "min" when lower is better.
        last_epoch: index of the last per-iteration step, as in every torch scheduler.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        patience: int = 3,
        factor: float = 0.2,
        min_lr: float = 1e-7,
        mode: str = "max",
        last_epoch: int = -1,
    ) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise OptionError(f"patience must be an integer >= 1, got {patience!r}; set e.g. patience: 3",
                              key="train.scheduler.patience")
        if not 0.0 < float(factor) < 1.0:
            raise OptionError(f"factor must lie in (0, 1), got {factor!r}; set e.g. factor: 0.2",
                              key="train.scheduler.factor")
        if float(min_lr) < 0.0:
            raise OptionError(f"min_lr must be >= 0, got {min_lr!r}; set e.g. min_lr: 1.0e-7",
                              key="train.scheduler.min_lr")
        if mode not in _MODES:
            raise OptionError(f"mode must be one of {_MODES}, got {mode!r}", key="train.scheduler.mode")
        self.patience = patience
        self.factor = float(factor)
        self.min_lr = float(min_lr)
        self.mode = mode
        self.best_score: float | None = None
        self.validations_without_improvement = 0
        self.num_decays = 0
        self.stop_requested = False
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """Current learning rates: the per-iteration step never changes them."""
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def _is_improvement(self, score: float) -> bool:
        if self.best_score is None:
            return True
        return score > self.best_score if self.mode == "max" else score < self.best_score

    def step_validation(self, score: float) -> bool:
        """Record one validation score; decay the learning rates when the patience runs out.

        Args:
            score: the validation's first metric (e.g. PSNR in dB). A NaN score counts as no improvement.

        Returns:
            True when training should stop: the largest learning rate is now below `min_lr`.
        """
        score = float(score)
        if not math.isnan(score) and self._is_improvement(score):
            self.best_score = score
            self.validations_without_improvement = 0
        else:
            self.validations_without_improvement += 1
            if self.validations_without_improvement >= self.patience:
                for group in self.optimizer.param_groups:
                    group["lr"] = float(group["lr"]) * self.factor
                self.validations_without_improvement = 0
                self.num_decays += 1
        self._last_lr = self.get_lr()
        self.stop_requested = max(self._last_lr) < self.min_lr
        return self.stop_requested
