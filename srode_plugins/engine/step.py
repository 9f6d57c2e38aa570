"""The engine's training step: forward -> losses -> backward -> clip -> step, for every model, in one place.

A model describes one training iteration as a list of `LossStage`s (`training_stages(current_iter)`): each
stage runs its forward pass and returns named losses; the engine, under autocast, sums them, checks they are
finite, backpropagates (fp16: scaled by the GradScaler) and, every `accum_iter` iterations, unscales, clips
and steps that stage's optimizer. Stock BasicSR models (SRModel, SRGANModel, ESRGANModel, RealESRGANModel)
get their stages from `srode_plugins.compat_stages`, which reads the same attributes their
`optimize_parameters` reads. A model with neither runs its own `optimize_parameters` under autocast (legacy:
no loss scaling, accumulation or clipping). Nothing in torch is patched.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from srode_plugins.errors import OptionError, TrainingAborted

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class StageLosses:
    """What a stage's forward returns: `losses` are summed and backpropagated (an empty dict: nothing to
    optimise this iteration, e.g. a GAN generator between discriminator-only iterations); `monitors` are
    logged only (e.g. the discriminator's mean output)."""

    losses: dict[str, torch.Tensor]
    monitors: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class LossStage:
    """One optimisation stage: `compute()` runs the forward pass; the engine steps `optimizer` with the result."""

    optimizer: torch.optim.Optimizer
    compute: Callable[[], StageLosses]


StageSource = Callable[[int], Iterable[LossStage]]


def stage_source(model: Any) -> StageSource | None:
    """The model's own `training_stages`, else the stock-BasicSR adapter's stages, else None (legacy model)."""
    if callable(getattr(model, "training_stages", None)):
        return model.training_stages
    from srode_plugins.compat_stages import stock_stages

    return stock_stages(model)


class TrainingStep:
    """One training iteration of a model with the options under `train:`.

    Options (all off by default): `amp: bf16|fp16` (`auto` is resolved before, by engine.precision; fp16 starts
    its loss scale at `amp_init_scale`, default 65536; GradScaler skips steps whose scaled gradients overflow),
    `grad_clip: <max L2 norm>`, `accum_iter: N` (sum the gradients of N iterations, then step; the losses are
    divided by N so the step equals one over an N-times larger batch), `max_nonfinite: N` (consecutive skipped
    iterations before stopping, default 10). A non-finite loss skips the iteration and drops the gradients
    accumulated so far.
    """

    def __init__(self, model: Any, train_opt: dict[str, Any], device: torch.device) -> None:
        amp = train_opt.get("amp")
        if amp not in (None, False, *AMP_DTYPES):
            raise OptionError(f"value {amp!r}: use auto, bf16, fp16 or leave it out (fp32)", key="train.amp")
        self.device = device
        self.amp_dtype = AMP_DTYPES.get(amp) if amp else None
        self.scaler = torch.amp.GradScaler(device.type, init_scale=float(train_opt.get("amp_init_scale", 2.0**16)),
                                           enabled=amp == "fp16")
        self.grad_clip = float(train_opt["grad_clip"]) if train_opt.get("grad_clip") else None
        self.accum_iter = int(train_opt.get("accum_iter") or 1)
        self.max_nonfinite = int(train_opt.get("max_nonfinite", 10))
        self.skipped_total = 0
        self.skipped_in_a_row = 0
        self.stages = stage_source(model)
        if self.stages is None:
            self._check_legacy(model, amp)

    def _check_legacy(self, model: Any, amp: Any) -> None:
        needs = [what for what, on in (("amp: fp16 (loss scaling)", amp == "fp16"), ("grad_clip", self.grad_clip),
                                       ("accum_iter", self.accum_iter > 1)) if on]
        if needs:
            raise OptionError(
                f"{', '.join(needs)}: model {type(model).__name__} runs its own backward and step "
                "(optimize_parameters); implement training_stages (docs/plugin-contract.md) or drop the option",
                key="train." + needs[0].split(":")[0])

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype
                else contextlib.nullcontext())

    def run(self, model: Any, current_iter: int) -> bool:
        """Run one training iteration. Returns False when it was skipped (non-finite loss, or the model's
        `training_failure` hook took the error)."""
        if self.stages is None:
            return self._run_legacy(model, current_iter)
        boundary = current_iter % self.accum_iter == 0
        logged: OrderedDict[str, torch.Tensor] = OrderedDict()
        optimizers: list[torch.optim.Optimizer] = []
        try:
            finite = self._run_stages(current_iter, boundary, logged, optimizers)
        except Exception as error:
            handler = getattr(model, "training_failure", None)
            if handler is None or not handler(error, current_iter):
                raise
            self._drop_gradients(model)
            return False
        if not finite:
            self._drop_gradients(model)
            return self._count_skip(current_iter)
        if boundary and optimizers and self.scaler.is_enabled():
            self.scaler.update()
        self.skipped_in_a_row = 0
        model.log_dict = model.reduce_loss_dict(logged) if hasattr(model, "reduce_loss_dict") else logged
        if boundary and optimizers:
            _ema_step(model)
        hook = getattr(model, "after_training_step", None)
        if hook is not None:
            hook(current_iter)
        return True

    def _run_stages(self, current_iter: int, boundary: bool, logged: dict[str, torch.Tensor],
                    optimizers: list[torch.optim.Optimizer]) -> bool:
        assert self.stages is not None
        for stage in self.stages(current_iter):
            with self._autocast():
                result = stage.compute()
            logged.update(result.losses)
            logged.update(result.monitors)
            if not result.losses:
                continue
            total = torch.stack([loss.float() for loss in result.losses.values()]).sum()
            if not bool(torch.isfinite(total.detach())):
                return False
            self.scaler.scale(total / self.accum_iter).backward()
            if boundary:
                self._step(stage.optimizer)
                optimizers.append(stage.optimizer)
        return True

    def _step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler.is_enabled():
            self.scaler.unscale_(optimizer)
        if self.grad_clip is not None:
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.scaler.step(optimizer)  # a plain optimizer.step() when loss scaling is off
        optimizer.zero_grad(set_to_none=True)

    def _drop_gradients(self, model: Any) -> None:
        for optimizer in getattr(model, "optimizers", []):
            optimizer.zero_grad(set_to_none=True)

    def _run_legacy(self, model: Any, current_iter: int) -> bool:
        with self._autocast():
            model.optimize_parameters(current_iter)
        values = [v for v in (getattr(model, "log_dict", None) or {}).values() if isinstance(v, int | float)]
        if all(map(math.isfinite, values)):
            self.skipped_in_a_row = 0
            return True
        return self._count_skip(current_iter)

    def _count_skip(self, current_iter: int) -> bool:
        self.skipped_total += 1
        self.skipped_in_a_row += 1
        if self.skipped_in_a_row >= self.max_nonfinite:
            raise TrainingAborted(
                f"the loss was NaN/inf in {self.skipped_in_a_row} iterations in a row (last: {current_iter}); "
                f"{self.skipped_total} skipped in all. Lower the learning rate, set `train.grad_clip`, "
                f"or use `train.amp: bf16` instead of fp16. Raise `train.max_nonfinite` to tolerate more."
            )
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict(), "skipped_total": self.skipped_total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.skipped_total = int(state.get("skipped_total", 0))


def optimize_stages(model: Any, current_iter: int) -> None:
    """BasicSR's `optimize_parameters` for a model that describes its iteration with `training_stages`: one fp32
    step of its stages (what stock BasicSR code and direct callers get; srode's engine runs the stages itself,
    with the run's amp / clipping / accumulation options)."""
    TrainingStep(model, {}, torch.device(getattr(model, "device", "cpu"))).run(model, current_iter)


def _ema_step(model: Any) -> None:
    """BasicSR's EMA of net_g (`train.ema_decay`), after every optimizer step."""
    decay = getattr(model, "ema_decay", 0) or 0
    if decay > 0 and hasattr(model, "model_ema"):
        model.model_ema(decay=decay)


def to_channels_last(model: Any) -> None:
    """Convert every network of a model (`net_*` attributes) to channels_last."""
    for name in list(vars(model)):
        if name.startswith("net_") and isinstance(getattr(model, name), torch.nn.Module):
            getattr(model, name).to(memory_format=torch.channels_last)


def batch_to_channels_last(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v.contiguous(memory_format=torch.channels_last) if torch.is_tensor(v) and v.dim() == 4 else v
            for k, v in data.items()}


def compile_generator(model: Any, compile_opt: Any) -> None:
    """`train.compile: true` (or a dict of torch.compile kwargs) compiles `net_g` for training."""
    kwargs = dict(compile_opt) if isinstance(compile_opt, dict) else {}
    model.net_g = torch.compile(model.net_g, **kwargs)
