"""`basicsr resshift sweep`: the seed report's Table 1 protocol (rows, NFE, the seed's samplers, outputs)."""

from __future__ import annotations

import re
from importlib import resources

import numpy as np
import torch

from srode_plugins import api

# srode_plugins.api applies the BasicSR compat patches, so basicsr is imported after it
# isort: split
from basicsr.metrics.psnr_ssim import calculate_psnr
from basicsr.utils import tensor2img
from srode_resshift.cli import main
from srode_resshift.samplers import DiscreteResShiftSampler
from srode_resshift.schedules import ContinuousPowerSchedule, ExponentialSchedule
from srode_resshift.seed_report import REPORT_TABLE_1, evaluation_images, protocol_rows
from srode_resshift.seed_report_run import build_sweep_model, run_seed_report
from srode_resshift.seed_samplers import SeedEulerSampler, SeedHeunSampler

DEMO_OPTION = str(resources.files("srode_resshift.options").joinpath("resshift_x4_demo.yml"))
TINY_UNET = [
    "network_g.model_channels=16",
    "network_g.swin_embed_dim=16",
    "network_g.num_head_channels=8",
    "network_g.norm_groups=4",
]
REPORT_ROWS = [(solver, "-" if rho is None else f"{rho:g}") for solver, rho in REPORT_TABLE_1]


def test_protocol_rows_are_the_reports_rows_with_the_seeds_samplers_at_nfe_15():
    schedule = ContinuousPowerSchedule(num_timesteps=15, kappa=2.0)
    rows = protocol_rows(schedule, {"type": "DPMSolverPP2MSampler"})
    assert [(row.solver, row.rho_label) for row in rows] == REPORT_ROWS
    baseline, seed_rows = rows[0], rows[1:]
    assert isinstance(baseline.sampler, DiscreteResShiftSampler) and baseline.schedule is schedule
    assert baseline.sampler.num_steps == 15 and baseline.sampler.respacing == "space_timesteps"
    for row in seed_rows:
        expected = {"Euler": (SeedEulerSampler, 15), "Heun": (SeedHeunSampler, 8)}[row.solver]
        assert (type(row.sampler), row.sampler.num_steps, row.sampler.rho) == (*expected, row.rho)
        assert isinstance(row.schedule, ExponentialSchedule)
        assert (row.schedule.a, row.schedule.lam) == ExponentialSchedule.PRESETS["authors"]
        assert (row.schedule.num_timesteps, row.schedule.kappa) == (15, 2.0)


def test_every_row_costs_15_counted_network_calls():
    schedule = ContinuousPowerSchedule(num_timesteps=15, kappa=2.0)
    y = torch.zeros(1, 3, 4, 4)
    for row in protocol_rows(schedule):
        calls: list[float] = []

        def network(x, t, eta, calls=calls):
            calls.append(t)
            return torch.zeros_like(x)

        result = row.sampler.sample(network, y, row.schedule)
        assert result.nfe == len(calls) == 15, (row.solver, row.rho)


def test_baseline_keeps_the_option_files_respacing():
    schedule = ContinuousPowerSchedule(num_timesteps=15, kappa=2.0)
    rows = protocol_rows(schedule, {"type": "DiscreteResShiftSampler", "num_steps": 4, "respacing": "linspace"})
    assert (rows[0].sampler.num_steps, rows[0].sampler.respacing) == (15, "linspace")


def test_missing_lpips_weights_name_the_fetch_command_and_no_lpips(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(api.RANDOM_INIT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "alexnet.pth"
    assert main(["sweep", "-opt", DEMO_OPTION, "--lpips-backbone", str(missing)]) == 2
    output = capsys.readouterr().out
    assert len(output.strip().splitlines()) == 1
    assert str(missing) in output and "basicsr weights fetch alexnet" in output and "--no-lpips" in output


def markdown_rows(text: str) -> list[list[str]]:
    """Cells of the first Markdown table in `text` (header and separator dropped)."""
    table = text.split("\n\n")[1]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_sweep_on_the_demo_prints_the_reports_table_and_the_seed_rows_are_the_seed_samplers(tmp_path, monkeypatch):
    # LPIPS with random backbone weights (SRODE_RANDOM_INIT_PRETRAINED=1): the column is filled, its values
    # mean nothing; the tiny UNet is randomly initialised too.
    monkeypatch.setenv(api.RANDOM_INIT_ENV, "1")
    arguments = {"overrides": TINY_UNET, "root": tmp_path}
    (table,) = run_seed_report(DEMO_OPTION, max_images=2, crop=16, seed=0, **arguments)

    assert table.images == 2
    assert [(r.row.solver, r.row.rho_label) for r in table.results] == REPORT_ROWS
    assert all(r.nfe_counts == [15, 15] for r in table.results)
    written = markdown_rows(table.markdown.read_text(encoding="utf-8"))
    assert [cells[:2] for cells in written] == [list(row) for row in REPORT_ROWS]
    assert all(len(cells) == 5 and re.fullmatch(r"\d+\.\d+", cells[2]) for cells in written)
    assert table.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the Euler rho=4 row, redone by hand: SeedEulerSampler on the authors' exponential schedule, same noise
    euler_4 = next(r for r in table.results if (r.row.solver, r.row.rho) == ("Euler", 4.0))
    _, model = build_sweep_model(DEMO_OPTION, TINY_UNET, False, tmp_path / "again")
    image = next(evaluation_images(model_loader(model), model.device, crop=16))
    net = model.inference_network().eval()
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    y = model.autoencoder.encode(model.upsample_lq(image.lq))
    result = SeedEulerSampler(num_steps=15, rho=4.0).sample(
        model.denoiser(net).bind(image.lq * 2 - 1), y, ExponentialSchedule(preset="authors", num_timesteps=15),
        generator=torch.Generator().manual_seed(0),
    )
    output = model.autoencoder.decode(result.x0).clamp(0, 1)
    psnr = calculate_psnr(tensor2img([output]), tensor2img([image.gt]), crop_border=4)
    assert len(calls) == result.nfe == 15
    assert np.isclose(psnr, euler_4.psnrs[0], rtol=0, atol=1e-9)


def model_loader(model):
    from basicsr.data import build_dataloader, build_dataset

    dataset_opt = model.opt["datasets"]["val"]
    return build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=0, dist=False, sampler=None)
