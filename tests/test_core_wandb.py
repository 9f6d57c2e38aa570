"""`logger.wandb` starts a Weights & Biases run that mirrors the TensorBoard logs, as stock BasicSR does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from srode_plugins.engine.train import train
from srode_plugins.errors import OptionError

TINY_TRAIN = Path(__file__).parent / "option_files" / "tiny_train.yml"


def wandb_option(folder: Path, name: str, **logger: object) -> Path:
    opt = yaml.safe_load(TINY_TRAIN.read_text())
    opt["name"] = name
    opt["logger"].update({"use_tb_logger": True, "wandb": {"project": "srode-conformance", "resume_id": None},
                          **logger})
    path = folder / f"{name}.yml"
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


@pytest.mark.slow  # a fresh interpreter plus wandb's own service process: ~15 s
def test_a_two_iteration_run_writes_an_offline_wandb_run_holding_the_run_name_and_the_synced_loss(
        tmp_path: Path) -> None:
    option = wandb_option(tmp_path, "wandb_offline_probe")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "srode_plugins", "train", "-opt", str(option)], cwd=tmp_path,
                            env=env, text=True, capture_output=True, timeout=600)

    assert result.returncode == 0, result.stderr[-3000:]
    [run_folder] = (tmp_path / "wandb").glob("offline-run-*")
    [records] = run_folder.glob("run-*.wandb")
    data = records.read_bytes()
    assert b"wandb_offline_probe" in data  # the run is named after the experiment
    assert b"losses/l_pix" in data  # MessageLogger's TensorBoard scalar, synced into the run
    assert b"srode-conformance" in data


def test_wandb_without_tensorboard_is_refused_naming_use_tb_logger_before_any_folder_is_made(tmp_path: Path) -> None:
    option = wandb_option(tmp_path, "wandb_without_tb", use_tb_logger=False)

    with pytest.raises(OptionError, match=r"option 'logger.use_tb_logger': value False .*use_tb_logger: true") as err:
        train(str(option), root=tmp_path)

    assert str(option) in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "experiments").exists()


def test_wandb_without_the_package_is_one_line_naming_the_pip_command(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # what `import wandb` sees when it is not installed
    option = wandb_option(tmp_path, "wandb_not_installed")

    with pytest.raises(OptionError, match=r"option 'logger.wandb.project': .*pip install 'srode-plugins\[wandb\]'"
                       ) as err:
        train(str(option), root=tmp_path)

    assert "\n" not in str(err.value)
    assert not (tmp_path / "experiments").exists()


def test_a_debug_run_skips_wandb_as_stock_basicsr_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    option = wandb_option(tmp_path, "debug_wandb_skipped", use_tb_logger=False)

    result = train(str(option), root=tmp_path)

    assert result.iter == 2 and not (tmp_path / "wandb").exists()
