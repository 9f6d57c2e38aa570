"""Per-iteration training extras that work with ANY BasicSR model, without editing it.

A model's `optimize_parameters` calls `loss.backward()` and `optimizer.step()` itself. `TrainingStep`
wraps that call: autocast (bf16 / fp16), fp16 loss scaling (the scalar `backward` is scaled while the
step runs), gradient clipping and a non-finite-loss guard (a step whose loss is NaN/inf is skipped,
counted, and training stops after `max_nonfinite` in a row).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from srode_plugins.errors import OptionError, TrainingAborted

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingStep:
    """Wraps one `model.optimize_parameters(it)` call with the options under `train:`.

    Options (all off by default): `amp: bf16|fp16` (`auto` is resolved before, by engine.precision; fp16 starts
    its loss scale at `amp_init_scale`, default 65536; GradScaler skips steps whose scaled gradients overflow),
    `grad_clip: <max L2 norm>`, `max_nonfinite: N` (consecutive skipped steps before stopping, default 10).
    """

    def __init__(self, model: Any, train_opt: dict[str, Any], device: torch.device) -> None:
        amp = train_opt.get("amp")
        if amp not in (None, False, *AMP_DTYPES):
            raise OptionError(f"value {amp!r}: use bf16, fp16 or leave it out (fp32)", key="train.amp")
        self.device = device
        self.amp_dtype = AMP_DTYPES.get(amp) if amp else None
        self.scaler = torch.amp.GradScaler(device.type, init_scale=float(train_opt.get("amp_init_scale", 2.0**16)),
                                           enabled=amp == "fp16")
        self.grad_clip = float(train_opt["grad_clip"]) if train_opt.get("grad_clip") else None
        self.max_nonfinite = int(train_opt.get("max_nonfinite", 10))
        self.skipped_total = 0
        self.skipped_in_a_row = 0
        self._skip = False
        self._scaler_stepped = False
        self._optimizers = list(model.optimizers)
        for optimizer in self._optimizers:
            self._wrap_step(optimizer)

    def _wrap_step(self, optimizer: torch.optim.Optimizer) -> None:
        original_step = optimizer.step

        def step(*args: Any, **kwargs: Any) -> Any:
            if self._skip:
                return None
            if self.scaler.is_enabled():
                self.scaler.unscale_(optimizer)
            if self.grad_clip is not None:
                params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
                torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            if not self.scaler.is_enabled():
                return original_step(*args, **kwargs)
            # GradScaler.step calls optimizer.step: hand it the original for that call.
            optimizer.step = original_step
            try:
                self._scaler_stepped = True
                return self.scaler.step(optimizer, *args, **kwargs)
            finally:
                optimizer.step = step

        # LR schedulers check this marker to know the step they wrapped is still the one being called.
        if hasattr(original_step, "_wrapped_by_lr_sched"):
            step._wrapped_by_lr_sched = True  # type: ignore[attr-defined]
        optimizer.step = step

    @contextlib.contextmanager
    def _scaled_backward(self) -> Iterator[None]:
        original_backward = torch.Tensor.backward
        guard = self

        def backward(tensor: torch.Tensor, gradient: Any = None, *args: Any, **kwargs: Any) -> Any:
            if gradient is None and tensor.numel() == 1:
                if guard._skip or not bool(torch.isfinite(tensor.detach()).all()):
                    guard._skip = True
                    return None
                if guard.scaler.is_enabled():
                    tensor = guard.scaler.scale(tensor)
            return original_backward(tensor, gradient, *args, **kwargs)

        torch.Tensor.backward = backward  # type: ignore[method-assign]
        try:
            yield
        finally:
            torch.Tensor.backward = original_backward  # type: ignore[method-assign]

    def run(self, model: Any, current_iter: int) -> bool:
        """Run one optimisation step. Returns False when the step was skipped (non-finite loss)."""
        self._skip = False
        self._scaler_stepped = False
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype
                    else contextlib.nullcontext())
        with self._scaled_backward(), autocast:
            model.optimize_parameters(current_iter)
        if self._scaler_stepped:
            self.scaler.update()
        if not self._skip:
            self.skipped_in_a_row = 0
            return True
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
