"""Initialise a network for one scale from weights trained at another (EDSR trains x3 / x4 from x2).

The body of an SR network does not depend on the scale; only the upsampler does. Every tensor whose name
and shape agree is copied, except those under the arch's upsampler prefixes, which keep their fresh
initialisation; the report lists what was copied, what is new and which source tensors went unused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from srode_plugins.api import SrodeError, unwrap_state_dict

# Layers that depend on the upsampling factor, per BasicSR arch name. EDSR's `upsample` is a stack of
# conv + pixel-shuffle stages (one per factor 2, or one x3). RRDBNet always upsamples x4 internally and
# handles x2 / x1 by pixel-unshuffling the input, so only its `conv_first` changes shape (caught by shape).
UPSAMPLER_PREFIXES: dict[str, tuple[str, ...]] = {
    "EDSR": ("upsample.",),
    "RRDBNet": (),
}


class CheckpointFormatError(SrodeError):
    """A checkpoint file does not hold the state dict that was asked for."""


@dataclass(frozen=True)
class TransferReport:
    """Outcome of `transfer_weights`: tensor names, sorted."""

    copied: list[str]  # target tensors now equal to the source tensor of the same name
    new: list[str]  # target tensors left at their fresh initialisation (upsampler, or no matching source)
    unused: list[str]  # source tensors with no place in the target

    def summary(self) -> str:
        lines = [
            f"copied {len(self.copied)} tensors; {len(self.new)} left new; {len(self.unused)} source tensors unused"
        ]
        lines += [f"  new:    {name}" for name in self.new]
        lines += [f"  unused: {name}" for name in self.unused]
        return "\n".join(lines)


def load_basicsr_params(path: str | os.PathLike[str], param_key: str | None = "params") -> dict[str, Tensor]:
    """The state dict in a BasicSR checkpoint (`{'params': ..., 'params_ema': ...}`) or a bare state dict.

    `param_key` picks the entry (falling back to the other of params / params_ema when absent, as BasicSR
    does); a `module.` prefix from DataParallel is removed.
    """
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, Mapping):
        raise CheckpointFormatError(f"Checkpoint '{path}' holds a {type(checkpoint).__name__}, not a state dict.")
    is_bare_state_dict = all(isinstance(value, Tensor) for value in checkpoint.values())
    if not is_bare_state_dict:
        keys = [key for key in (param_key, "params", "params_ema") if key and key in checkpoint]
        if not keys:
            raise CheckpointFormatError(
                f"Checkpoint '{path}' has no '{param_key}' entry (it has: {', '.join(map(str, checkpoint))}); "
                "pass --param-key with one of those."
            )
        checkpoint = checkpoint[keys[0]]
    return unwrap_state_dict(checkpoint, None)


def transfer_weights(
    source: Mapping[str, Tensor], target: nn.Module, new_prefixes: tuple[str, ...] = ()
) -> TransferReport:
    """Copy into `target` every source tensor whose name and shape match, except names under `new_prefixes`.

    Args:
        source: state dict of the network trained at the other scale.
        target: freshly initialised network at the new scale; modified in place.
        new_prefixes: name prefixes to leave new although they may match (e.g. `UPSAMPLER_PREFIXES['EDSR']`).

    Returns:
        The `TransferReport`.
    """
    state = target.state_dict()
    copied, new = [], []
    for name, tensor in state.items():
        candidate = source.get(name)
        if candidate is None or name.startswith(new_prefixes) or candidate.shape != tensor.shape:
            new.append(name)
            continue
        with torch.no_grad():
            tensor.copy_(candidate)
        copied.append(name)
    unused = set(source) - set(copied)
    return TransferReport(sorted(copied), sorted(new), sorted(unused))
