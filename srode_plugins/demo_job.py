"""`basicsr demo`: train a small stock-BasicSR MSRResNet on the embedded demo data, compare with bicubic.

Writes, under the output folder: the option file it trained with, `results.md` (PSNR/SSIM on the Y channel
of the held-out photos, bicubic vs model), `compare_<photo>.png` (LR-bicubic | model | HR crops) and
`loss_curve.png`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

DEFAULT_SCALE = 2
DEMO_ITERS = {2: 300, 3: 400, 4: 500}
CROP = 160  # side of the HR crop shown in the comparison PNGs


def demo_option(scale: int, iters: int) -> dict[str, Any]:
    """The option file `basicsr demo` trains: a 4-block, 32-channel MSRResNet (stock BasicSR) on demo:// data."""
    return {
        "name": f"srode_demo_MSRResNet_x{scale}",
        "model_type": "SRModel",
        "scale": scale,
        "num_gpu": "auto",
        "manual_seed": 10,
        "datasets": {
            "train": {"name": "demo_train", "type": "PairedImageDataset", "dataroot_gt": "demo://train/HR",
                      "dataroot_lq": f"demo://train/LR_bicubic/X{scale}", "filename_tmpl": "{}",
                      "io_backend": {"type": "disk"}, "gt_size": 32 * scale, "use_hflip": True, "use_rot": True,
                      "num_worker_per_gpu": 1, "batch_size_per_gpu": 16, "dataset_enlarge_ratio": 100},
            "val": {"name": "demo_val", "type": "PairedImageDataset", "dataroot_gt": "demo://val/HR",
                    "dataroot_lq": f"demo://val/LR_bicubic/X{scale}", "filename_tmpl": "{}",
                    "io_backend": {"type": "disk"}},
        },
        # MSRResNet adds the bilinear-upsampled input to its output, so it starts near bilinear quality.
        "network_g": {"type": "MSRResNet", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 32, "num_block": 4,
                      "upscale": scale},
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
        "train": {"ema_decay": 0.99, "optim_g": {"type": "Adam", "lr": 1e-3, "betas": [0.9, 0.99]},
                  "scheduler": {"type": "CosineAnnealingRestartLR", "periods": [iters], "restart_weights": [1],
                                "eta_min": 1e-5},
                  "total_iter": iters, "warmup_iter": -1, "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0},
                  "amp": "auto", "channels_last": "auto"},
        "logger": {"print_freq": 10, "save_checkpoint_freq": 10**9, "use_tb_logger": False},
    }


def _bicubic_up(lr_bgr: np.ndarray, scale: int) -> np.ndarray:
    from basicsr.utils.matlab_functions import imresize

    up = imresize(lr_bgr.astype(np.float64) / 255.0, scale)
    return np.clip(np.round(up * 255.0), 0, 255).astype(np.uint8)


def _run_net(net: Any, lr_bgr: np.ndarray, device: Any) -> np.ndarray:
    import torch

    x = torch.from_numpy(lr_bgr[:, :, ::-1].copy()).permute(2, 0, 1).float().div(255).unsqueeze(0).to(device)
    with torch.inference_mode():
        y = net(x).clamp(0, 1)
    rgb = (y[0].permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
    return rgb[:, :, ::-1].copy()


def _centre_crop(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = max((h - side) // 2, 0), max((w - side) // 2, 0)
    return img[top:top + side, left:left + side]


def _write_comparison(path: Path, panels: list[np.ndarray]) -> None:
    import cv2

    gap = np.full((panels[0].shape[0], 4, 3), 255, dtype=np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [gap, panel]
    cv2.imwrite(str(path), np.concatenate(row, axis=1))


def _write_loss_curve(path: Path, history: list[tuple[int, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    fig, ax = plt.subplots(figsize=(5, 3), dpi=120)
    ax.plot([h[0] for h in history], [h[1] for h in history])
    ax.set_xlabel("iteration")
    ax.set_ylabel("L1 loss")
    ax.set_title("basicsr demo: training loss")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_demo(scale: int = DEFAULT_SCALE, iters: int | None = None,
             out_dir: str | os.PathLike[str] = "demo_results") -> dict:
    """Train, evaluate on the held-out demo photos and write the comparison files. Returns the mean scores."""
    import cv2
    from rich.console import Console
    from rich.table import Table

    from srode_plugins.data.demo import demo_dataset
    from srode_plugins.engine.train import train
    from srode_plugins.evaluation import psnr_ssim

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    iters = iters or DEMO_ITERS[scale]
    option_file = out / f"demo_MSRResNet_x{scale}.yml"
    option_file.write_text(yaml.safe_dump(demo_option(scale, iters), sort_keys=False))
    paths = demo_dataset(scale)
    summary = train(str(option_file), root=out)
    model = summary.model
    net = model.net_g_ema if hasattr(model, "net_g_ema") else model.net_g
    net.eval()

    rows = []
    for hr_path in sorted(paths.val_hr.glob("*.png")):
        hr = cv2.imread(str(hr_path), cv2.IMREAD_COLOR)
        lr = cv2.imread(str(paths.val_lr / hr_path.name), cv2.IMREAD_COLOR)
        bicubic, sr = _bicubic_up(lr, scale), _run_net(net, lr, model.device)
        rows.append((hr_path.stem, *psnr_ssim(bicubic, hr, scale), *psnr_ssim(sr, hr, scale)))
        _write_comparison(out / f"compare_{hr_path.stem}.png",
                          [_centre_crop(img, CROP) for img in (bicubic, sr, hr[:sr.shape[0], :sr.shape[1]])])
    means = np.mean([r[1:] for r in rows], axis=0)
    rows.append(("mean", *means))
    _write_loss_curve(out / "loss_curve.png", summary.history)

    table = Table(title=f"basicsr demo: x{scale}, {iters} iterations, held-out photos (Y channel, border {scale})")
    for column in ("image", "bicubic PSNR", "bicubic SSIM", "model PSNR", "model SSIM", "gain (dB)"):
        table.add_column(column, justify="right" if column != "image" else "left")
    markdown = ["| image | bicubic PSNR | bicubic SSIM | model PSNR | model SSIM | gain (dB) |",
                "|---|---|---|---|---|---|"]
    for name, bp, bs, mp, ms in rows:
        cells = (name, f"{bp:.2f}", f"{bs:.4f}", f"{mp:.2f}", f"{ms:.4f}", f"{mp - bp:+.2f}")
        table.add_row(*cells)
        markdown.append("| " + " | ".join(cells) + " |")
    Console().print(table)
    (out / "results.md").write_text("\n".join(markdown) + "\n")
    verdict = "beats" if means[2] > means[0] else "does NOT beat"
    print(f"The model {verdict} bicubic by {means[2] - means[0]:+.2f} dB PSNR. Pictures: {out}/compare_*.png, "
          f"loss curve: {out}/loss_curve.png")
    return {"bicubic_psnr": float(means[0]), "bicubic_ssim": float(means[1]), "model_psnr": float(means[2]),
            "model_ssim": float(means[3]), "out_dir": str(out)}
