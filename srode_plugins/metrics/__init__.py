"""Perceptual (LPIPS, DISTS) and no-reference (NIQE) image metrics on torch tensors, offline only.

`scores` holds the tensor functions, `val_metrics` the BasicSR metric functions registered as `lpips`, `dists` and
`niqe` (entry points of the core distribution), `networks` the weight handling, `weights` the DISTS registry entry.
Importing this package imports nothing heavy (no torch, lpips or pyiqa).
"""

# The metric names `basicsr evaluate --metrics` and `val.metrics` accept beside BasicSR's own, all lower-is-better.
PERCEPTUAL_METRICS = ("lpips", "dists", "niqe")

__all__ = ["PERCEPTUAL_METRICS"]
