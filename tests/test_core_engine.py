"""End-to-end `basicsr train` / `basicsr test` on the embedded demo data, resume, AMP guard and DDP (CPU)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from srode_plugins.engine.precision import CpuFacts

TINY_EDSR = {"type": "EDSR", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 1, "upscale": 2,
             "img_range": 255.0, "rgb_mean": [0.4488, 0.4371, 0.4040]}


def tiny_option(name: str, network: dict, total_iter: int = 3, **train_extra: object) -> dict:
    return {
        "name": name,
        "model_type": "SRModel",
        "scale": 2,
        "num_gpu": "auto",
        "manual_seed": 0,
        "datasets": {
            "train": {"name": "demo_train", "type": "PairedImageDataset", "dataroot_gt": "demo://train/HR",
                      "dataroot_lq": "demo://train/LR_bicubic/X2", "filename_tmpl": "{}", "gt_size": 32,
                      "use_hflip": True, "use_rot": True, "num_worker_per_gpu": 0, "batch_size_per_gpu": 2},
            "val": {"name": "demo_val", "type": "PairedImageDataset", "dataroot_gt": "demo://val/HR",
                    "dataroot_lq": "demo://val/LR_bicubic/X2", "filename_tmpl": "{}"},
        },
        "network_g": network,
        "path": {"pretrain_network_g": None, "resume_state": None},
        "train": {"optim_g": {"type": "Adam", "lr": 1e-3}, "scheduler": {"type": "MultiStepLR", "milestones": [10**6],
                                                                          "gamma": 0.5},
                  "total_iter": total_iter, "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0}, **train_extra},
        "val": {"val_freq": 10**6, "save_img": False,
                "metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 2, "test_y_channel": True}}},
        "logger": {"print_freq": 1, "save_checkpoint_freq": 10**6, "use_tb_logger": False},
    }


def write_option(folder: Path, opt: dict) -> Path:
    path = folder / f"{opt['name']}.yml"
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "srode_plugins", *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def test_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway plugin distribution (dist-info + package) providing the arch `TinyUpsampler`."""
    root = tmp_path_factory.mktemp("plugin_site")
    package = root / "srode_tinyplugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "archs.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class TinyUpsampler(nn.Module):
            def __init__(self, upscale=2, num_feat=8):
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(3, num_feat, 3, 1, 1), nn.ReLU(),
                                          nn.Conv2d(num_feat, 3 * upscale * upscale, 3, 1, 1), nn.PixelShuffle(upscale))
                self.upscale = upscale

            def forward(self, x):
                base = torch.nn.functional.interpolate(x, scale_factor=self.upscale, mode="bilinear")
                return base + self.body(x)
    """))
    info = root / "srode_tinyplugin-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: srode-tinyplugin\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(
        "[srode.archs]\nTinyUpsampler = srode_tinyplugin.archs:TinyUpsampler\n\n[srode.api]\n1.0 = srode_tinyplugin\n"
    )
    return root


def test_train_then_test_with_a_stock_basicsr_arch(tmp_path: Path) -> None:
    option = write_option(tmp_path, tiny_option("stock_edsr", TINY_EDSR, total_iter=3))
    trained = run_cli(["train", "-opt", str(option)], cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    models = tmp_path / "experiments" / "stock_edsr" / "models"
    assert (models / "net_g_latest.pth").is_file() and (models / "net_g_3.pth").is_file()
    assert (tmp_path / "experiments" / "stock_edsr" / "training_states" / "3.state").is_file()

    test_opt = tiny_option("stock_edsr_test", TINY_EDSR)
    test_opt["datasets"] = {"test_1": test_opt["datasets"]["val"]}
    test_opt["path"]["pretrain_network_g"] = str(models / "net_g_latest.pth")
    tested = run_cli(["test", "-opt", str(write_option(tmp_path, test_opt))], cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr[-3000:]
    logs = list((tmp_path / "results" / "stock_edsr_test").glob("test_*.log"))
    assert logs and "| demo_val |" in logs[0].read_text()


def test_train_with_a_plugin_arch_found_through_entry_points(tmp_path: Path, test_plugin: Path) -> None:
    option = write_option(tmp_path, tiny_option("plugin_arch", {"type": "TinyUpsampler", "upscale": 2}, total_iter=2))
    env = {"PYTHONPATH": os.pathsep.join([str(test_plugin), os.environ.get("PYTHONPATH", "")])}
    listed = run_cli(["plugins", "list"], cwd=tmp_path, env=env)
    assert "srode-tinyplugin 0.0.1" in listed.stdout and "TinyUpsampler" in listed.stdout
    trained = run_cli(["train", "-opt", str(option)], cwd=tmp_path, env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    state = torch.load(tmp_path / "experiments" / "plugin_arch" / "models" / "net_g_latest.pth", weights_only=True)
    assert set(state["params"]) == {"body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"}


def test_unknown_arch_names_the_key_and_the_known_archs(tmp_path: Path) -> None:
    option = write_option(tmp_path, tiny_option("typo", {**TINY_EDSR, "type": "EDSRR"}))
    result = run_cli(["train", "-opt", str(option)], cwd=tmp_path)
    assert result.returncode == 2
    assert "network_g.type" in result.stderr and "unknown arch 'EDSRR'" in result.stderr
    assert "Did you mean: EDSR" in result.stderr and "RRDBNet" in result.stderr


def test_missing_dataset_folder_names_key_value_and_fix(tmp_path: Path) -> None:
    opt = tiny_option("missing", TINY_EDSR)
    opt["datasets"]["train"]["dataroot_gt"] = "datasets/DIV2K/HR"
    result = run_cli(["train", "-opt", str(write_option(tmp_path, opt))], cwd=tmp_path)
    assert result.returncode == 2
    assert "datasets.train.dataroot_gt" in result.stderr and "datasets/DIV2K/HR" in result.stderr
    assert "--demo" in result.stderr


def _wait_for_iterations(log_dir: Path, count: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "training exited early"
        logs = list(log_dir.glob("train_*.log"))
        if logs and len(re.findall(r"iter:\s*\d+", logs[0].read_text())) >= count:
            return
        time.sleep(0.5)
    raise AssertionError("training did not reach the wanted iteration in time")


@pytest.mark.slow
def test_sigint_saves_a_resumable_state_and_auto_resume_continues_from_it(tmp_path: Path) -> None:
    option = write_option(tmp_path, tiny_option("interrupted", TINY_EDSR, total_iter=100000))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "srode_plugins", "train", "-opt", str(option)], cwd=tmp_path,
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_iterations(tmp_path / "experiments" / "interrupted", 3, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    states = sorted((tmp_path / "experiments" / "interrupted" / "training_states").glob("*.state"))
    assert len(states) == 1
    saved_iter = int(states[0].stem)
    assert saved_iter >= 3
    assert (tmp_path / "experiments" / "interrupted" / "models" / f"net_g_{saved_iter}.pth").is_file()

    resumed = run_cli(["train", "-opt", str(option), "--auto_resume", "--set", f"train.total_iter={saved_iter + 2}"],
                      cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = max((tmp_path / "experiments" / "interrupted").glob("train_*.log"), key=os.path.getmtime).read_text()
    assert re.search(rf"Resuming training from epoch \d+, iteration {saved_iter}\.", log)
    assert (tmp_path / "experiments" / "interrupted" / "training_states" / f"{saved_iter + 2}.state").is_file()


def test_bf16_channels_last_and_grad_clip_train_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from srode_plugins.engine.train import train

    monkeypatch.chdir(tmp_path)
    option = write_option(tmp_path, tiny_option("amp", TINY_EDSR, total_iter=2, amp="bf16", channels_last=True,
                                                 grad_clip=0.5))
    summary = train(str(option), root=tmp_path)
    assert summary.iter == 2 and summary.skipped_steps == 0
    weight = summary.model.net_g.conv_first.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    # the decoded-image cache (on by default) reported its use and was removed when training ended
    from srode_plugins.data import decode_cache

    assert decode_cache.active() is None
    log = next((tmp_path / "experiments" / "amp").glob("train_*.log")).read_text()
    assert re.search(r"Decoded-image cache \(main process\): [1-9]\d* images", log)


@pytest.mark.parametrize(
    ("facts", "amp", "channels_last"),
    [(CpuFacts("x86_64", "AVX2", frozenset({"avx2"})), None, False),
     (CpuFacts("x86_64", "AVX512", frozenset({"avx2", "avx512f", "avx512_bf16"})), "bf16", True)],
    ids=["avx2", "avx512_bf16"],
)
def test_amp_auto_trains_with_what_the_injected_cpu_resolves_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                facts: CpuFacts, amp: str | None,
                                                                channels_last: bool) -> None:
    from srode_plugins.engine import precision
    from srode_plugins.engine.train import train

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(precision.CpuFacts, "detect", classmethod(lambda cls: facts))
    option = write_option(tmp_path, tiny_option("auto", TINY_EDSR, total_iter=1, amp="auto", channels_last="auto"))
    summary = train(str(option), root=tmp_path)
    model = summary.model
    assert model.opt["train"]["amp"] == amp and model.opt["train"]["channels_last"] is channels_last
    assert model.net_g.conv_first.weight.is_contiguous(memory_format=torch.channels_last) is channels_last
    log = next((tmp_path / "experiments" / "auto").glob("train_*.log")).read_text()
    line = f"Precision: amp {amp or 'fp32'}, channels_last {str(channels_last).lower()} ({facts.describe()}: amp auto"
    assert line in log


def test_with_loader_workers_the_cache_log_says_the_workers_hold_the_images(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from srode_plugins.engine.train import train

    monkeypatch.chdir(tmp_path)
    opt = tiny_option("workers", TINY_EDSR, total_iter=2, decode_cache_mb=300)
    opt["datasets"]["train"]["num_worker_per_gpu"] = 2
    train(str(write_option(tmp_path, opt)), root=tmp_path)
    log = next((tmp_path / "experiments" / "workers").glob("train_*.log")).read_text()
    # the workers decode the training images; the 300 MiB budget is shared by the main process and the 2 workers
    assert re.search(r"Decoded-image cache \(main process\): \d+ images, [\d.]+ MiB, \d+ hits, \d+ misses\. The 2 "
                     r"training loader worker\(s\) decode the training images and keep caches of their own "
                     r"\(100 MiB each\)", log)


@pytest.mark.slow
@pytest.mark.ddp
def test_two_process_gloo_ddp_training_completes_and_ranks_agree(tmp_path: Path) -> None:
    option = write_option(tmp_path, tiny_option("ddp", TINY_EDSR, total_iter=3))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "srode_plugins", "train", "-opt", str(option), "--launcher", "pytorch"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, text=True, capture_output=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    log = next((tmp_path / "experiments" / "ddp").glob("train_*.log")).read_text()
    assert "world_size: 2" in log
    assert "All 2 ranks agree on the generator weights" in log


@pytest.mark.slow
def test_compile_option_trains_and_saves_plain_state_dict_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from srode_plugins.engine.train import train

    monkeypatch.chdir(tmp_path)
    option = write_option(tmp_path, tiny_option("compiled", TINY_EDSR, total_iter=2, compile=True))
    summary = train(str(option), root=tmp_path)
    assert hasattr(summary.model.net_g, "_orig_mod")  # really compiled
    state = torch.load(tmp_path / "experiments" / "compiled" / "models" / "net_g_latest.pth", weights_only=True)
    assert "conv_first.weight" in state["params"] and not any("_orig_mod" in k for k in state["params"])


def test_keep_last_keeps_only_the_newest_checkpoints_and_states(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from srode_plugins.engine.train import train

    monkeypatch.chdir(tmp_path)
    opt = tiny_option("keep", TINY_EDSR, total_iter=5)
    opt["logger"] |= {"save_checkpoint_freq": 1, "keep_last": 2}
    train(str(write_option(tmp_path, opt)), root=tmp_path)
    experiment = tmp_path / "experiments" / "keep"
    assert sorted(p.name for p in (experiment / "models").iterdir()) == ["net_g_4.pth", "net_g_5.pth",
                                                                         "net_g_latest.pth"]
    assert sorted(p.name for p in (experiment / "training_states").iterdir()) == ["4.state", "5.state"]
