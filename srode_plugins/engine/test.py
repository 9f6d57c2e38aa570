"""`basicsr test`: BasicSR's test pipeline with self-ensemble / tiling options and a metrics table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from srode_plugins import compat
from srode_plugins.engine import setup
from srode_plugins.engine.logs import run_logger


class SelfEnsembleNet(torch.nn.Module):
    """Runs the wrapped SR network on the 8 flips/rotations of its input and averages (EDSR's '+')."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from srode_plugins.inference import self_ensemble

        return self_ensemble(self.net, x)


class TiledNet(torch.nn.Module):
    """Runs the wrapped SR network tile by tile (overlapping tiles, blended) so memory stays bounded."""

    def __init__(self, net: torch.nn.Module, scale: int, tile: int, overlap: int) -> None:
        super().__init__()
        self.net, self.scale, self.tile, self.overlap = net, scale, tile, overlap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from srode_plugins.inference import tiled_forward

        return tiled_forward(self.net, x, self.scale, self.tile, self.overlap)


def wrap_for_inference(model: Any, opt: dict[str, Any], self_ensemble: bool) -> None:
    """Apply `val.tile: {size, overlap}` and self-ensemble to the network the model tests with."""
    attr = "net_g_ema" if hasattr(model, "net_g_ema") else "net_g"
    net = getattr(model, attr)
    tile = (opt.get("val") or {}).get("tile")
    if tile:
        net = TiledNet(net, int(opt.get("scale", 4)), int(tile.get("size", 256)), int(tile.get("overlap", 16)))
    if self_ensemble:
        net = SelfEnsembleNet(net)
    setattr(model, attr, net)


def format_metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per test set, one column per metric."""
    metrics = sorted({m for r in rows.values() for m in r})
    lines = ["| dataset | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{values.get(m, float('nan')):.4f}" for m in metrics) + " |")
    return "\n".join(lines)


def test(opt_path: str, *, overrides: list[str] | None = None, demo: bool = False, self_ensemble: bool = False,
         root: Path | None = None) -> dict[str, dict[str, float]]:
    """Evaluate an option file's model on its test/val datasets; returns {dataset: {metric: value}}."""
    compat.apply()
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.models import build_model
    from basicsr.utils import get_env_info, get_time_str, make_exp_dirs

    root = (root or Path.cwd()).resolve()
    opt = setup.prepare_run(opt_path, overrides, is_train=False, root=root, demo=demo).opt
    make_exp_dirs(opt)
    log_file = Path(opt["path"]["log"]) / f"test_{opt['name']}_{get_time_str()}.log"
    logger = run_logger(log_file, opt["rank"])
    logger.info(get_env_info())
    self_ensemble = self_ensemble or bool((opt.get("val") or {}).get("self_ensemble"))
    model = build_model(opt)
    wrap_for_inference(model, opt, self_ensemble)
    results: dict[str, dict[str, float]] = {}
    for phase, dataset_opt in sorted(opt["datasets"].items()):
        if phase.split("_")[0] == "train":  # a train/test option file: test on its val/test sets only
            continue
        loader = build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=opt["num_gpu"], dist=False,
                                  sampler=None, seed=opt["manual_seed"])
        logger.info(f"Testing {dataset_opt['name']} ({len(loader.dataset)} images)...")
        model.validation(loader, current_iter=opt["name"], tb_logger=None, save_img=opt["val"].get("save_img", True))
        results[dataset_opt["name"]] = {k: float(v) for k, v in (getattr(model, "metric_results", {}) or {}).items()}
    if any(results.values()):
        title = "Results (self-ensemble x8)" if self_ensemble else "Results"
        logger.info(f"{title}:\n{format_metrics_table(results)}")
    logger.info(f"Outputs in {opt['path']['results_root']}")
    return results
