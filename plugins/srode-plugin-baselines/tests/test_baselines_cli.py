"""`basicsr baselines init-from` on the shipped option files (randomly initialised networks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import srode_plugins.api  # noqa: F401  (applies the BasicSR compat patches; before basicsr)

# isort: split
from basicsr.archs.edsr_arch import EDSR
from srode_baselines.cli import main

from srode_plugins.cli import main as basicsr_main
from srode_plugins.errors import OptionError

OPTIONS = Path(__file__).resolve().parents[1] / "srode_baselines" / "options"


def init_from_argv(src: Path, opt: Path, out: Path) -> list[str]:
    return ["init-from", "--src", str(src), "--opt", str(opt), "--out", str(out)]


@pytest.fixture
def x2_checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(3)
    net = EDSR(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16, upscale=2)
    path = tmp_path / "EDSR_baseline_x2.pth"
    torch.save({"params": net.state_dict(), "params_ema": net.state_dict()}, path)
    return path


def test_init_from_writes_an_x4_checkpoint_with_the_x2_body_that_loads_strictly(x2_checkpoint, tmp_path, capsys):
    out = tmp_path / "x4_init.pth"
    status = main(init_from_argv(x2_checkpoint, OPTIONS / "EDSR_baseline_x4_DIV2K.yml", out))
    assert status == 0
    printed = capsys.readouterr().out
    assert "4 left new" in printed and "new:    upsample.2.weight" in printed

    x4 = EDSR(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16, upscale=4)
    x4.load_state_dict(torch.load(out, weights_only=True)["params"], strict=True)
    x2_state = torch.load(x2_checkpoint, weights_only=True)["params"]
    for name, tensor in x4.state_dict().items():
        if not name.startswith("upsample."):
            assert torch.equal(tensor, x2_state[name]), name


def test_init_from_refuses_a_checkpoint_of_another_arch(tmp_path):
    src = tmp_path / "other.pth"
    torch.save({"params": {"encoder.weight": torch.zeros(3)}}, src)
    with pytest.raises(OptionError, match="no tensor of"):
        main(init_from_argv(src, OPTIONS / "EDSR_baseline_x4_DIV2K.yml", tmp_path / "out.pth"))
    assert not (tmp_path / "out.pth").exists()


def test_the_basicsr_cli_dispatches_to_the_plugin_command_and_reports_errors_without_traceback(
    x2_checkpoint, tmp_path, capsys
):
    opt = OPTIONS / "EDSR_baseline_x3_DIV2K.yml"
    assert basicsr_main(["baselines", *init_from_argv(x2_checkpoint, opt, tmp_path / "x3.pth")]) == 0
    assert (tmp_path / "x3.pth").is_file()
    missing = tmp_path / "missing.yml"
    assert basicsr_main(["baselines", *init_from_argv(x2_checkpoint, missing, tmp_path / "x.pth")]) == 2
    assert "option file not found" in capsys.readouterr().err
