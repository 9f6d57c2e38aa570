"""Reference data shipped with the plugin (facts about the official ResShift checkpoints and outputs).

`fill_deterministic` is the weight rule the reference outputs in `data/resshift_tiny_reference_outputs.json`
were produced with, so a re-implementation can be compared with the official code without its weights.
"""

from __future__ import annotations

import json
import math
import zlib
from importlib import resources
from typing import Any

import torch


def read_reference_data(name: str) -> Any:
    """A JSON file of `srode_resshift/data/` (key/shape manifests, reference outputs)."""
    return json.loads(resources.files("srode_resshift").joinpath("data").joinpath(name).read_text())


def fill_deterministic(module: torch.nn.Module) -> None:
    """Set every parameter from a generator seeded by its name (CRC32): values depend on the name only."""
    for name, parameter in module.named_parameters():
        values = torch.randn(
            parameter.shape, generator=torch.Generator().manual_seed(zlib.crc32(name.encode())), dtype=torch.float64
        )
        if parameter.ndim >= 2:
            values = values / math.sqrt(parameter[0].numel())
        elif name.endswith("weight"):
            values = 1 + 0.1 * values
        else:
            values = 0.1 * values
        parameter.data.copy_(values.float())
