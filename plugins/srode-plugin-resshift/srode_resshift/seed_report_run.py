"""`basicsr resshift sweep`: the seed report's Table 1 on an option file's model and test sets.

The model and its datasets come from `basicsr test`'s option pipeline (`api.prepare_test_options`: --set, --demo,
validation, paths); each test set gets a rich table on the terminal, `seed_table1_<dataset>.md` and
`seed_table1_<dataset>.png` in the run's results folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from srode_plugins import api

# srode_plugins.api applies the BasicSR compat patches, so basicsr is imported after it
# isort: split
from basicsr.data import build_dataloader, build_dataset
from basicsr.models import build_model
from basicsr.utils import make_exp_dirs

from .models import ContinuousResShiftModel, check_sampler
from .seed_report import (
    REPORT_RHOS,
    ProtocolRow,
    RowResult,
    evaluation_images,
    lpips_distance,
    protocol_rows,
    score_rows,
    seed_schedule,
)
from .seed_report_render import markdown_table, quality_vs_rho_png, report_markdown, rich_table

__all__ = ["SeedReportTable", "run_seed_report"]


@dataclass(frozen=True)
class SeedReportTable:
    """One test set's table: the scored rows and the files written."""

    dataset: str
    images: int
    results: list[RowResult]
    markdown: Path
    png: Path


def build_sweep_model(opt_path: str, overrides: list[str], demo: bool, root: Path) -> tuple[dict[str, Any], Any]:
    """The prepared test options and the model they build; refuses a model that is not ContinuousResShiftModel."""
    opt = api.prepare_test_options(opt_path, overrides=overrides, demo=demo, root=root)
    if opt.get("model_type") != "ContinuousResShiftModel":
        raise api.OptionError(f"is {opt.get('model_type')!r}; the sweep samples a ContinuousResShiftModel: "
                              "give a ResShift option file (e.g. resshift_x4_demo.yml)",
                              file=str(opt_path), key="model_type")
    make_exp_dirs(opt)
    model = build_model(opt)
    if not isinstance(model, ContinuousResShiftModel):
        raise api.OptionError(f"built {type(model).__name__}, not a ContinuousResShiftModel", file=str(opt_path),
                              key="model_type")
    return opt, model


def checked_rows(model: ContinuousResShiftModel, opt_path: str, nfe: int) -> list[ProtocolRow]:
    """The protocol's rows, each checked against its schedule (the baseline needs nfe <= T)."""
    rows = protocol_rows(model.schedule, model.resshift.sampler, nfe, REPORT_RHOS)
    for row in rows:
        try:
            check_sampler(row.sampler, row.schedule, "resshift.schedule")
        except api.OptionError as error:
            raise api.OptionError(f"{error} (--nfe {nfe})", file=str(opt_path)) from error
    return rows


def header(opt: dict[str, Any], model: ContinuousResShiftModel, dataset: str, images: int, nfe: int,
           lpips: str) -> str:
    """What the table measured: data, weights, LPIPS, and which sampler ran on which schedule."""
    weights = opt["path"].get("pretrain_network_g") or "none: randomly initialised network, numbers mean nothing"
    return (
        f"Seed report Table 1 protocol on {dataset} ({images} images), NFE {nfe} per row (counted)\n"
        f"weights: {weights}; LPIPS: {lpips}\n"
        f"Baseline: DiscreteResShiftSampler on the option's {model.schedule!r}\n"
        f"Euler / Heun: SeedEulerSampler / SeedHeunSampler (the seed's samplers and grid) on "
        f"{seed_schedule(model.schedule)!r} (preset authors; the seed's samplers need a bounded alpha(t))"
    )


def lpips_note(enabled: bool, net: str) -> str:
    if not enabled:
        return "off (--no-lpips)"
    if os.environ.get(api.RANDOM_INIT_ENV) == "1":
        return f"{net}, randomly initialised ({api.RANDOM_INIT_ENV}=1): not comparable with published numbers"
    return f"{net} (v0.1)"


def write_outputs(results: list[RowResult], title: str, results_root: Path, dataset: str) -> tuple[Path, Path]:
    """`seed_table1_<dataset>.md` (measured table, then the report's) and `.png` in `results_root`."""
    markdown = results_root / f"seed_table1_{dataset}.md"
    text = "\n".join(f"    {line}" for line in title.splitlines())
    markdown.write_text(
        f"{text}\n\n{markdown_table(results)}\nThe report's Table 1 (1000 ImageNet-256 test images, its trained "
        f"model):\n\n{report_markdown()}",
        encoding="utf-8",
    )
    png = quality_vs_rho_png(results, results_root / f"seed_table1_{dataset}.png", title.splitlines()[0])
    return markdown, png


def run_seed_report(
    opt_path: str,
    *,
    overrides: list[str] | None = None,
    demo: bool = False,
    nfe: int = 15,
    lpips: bool = True,
    lpips_net: str = "alex",
    lpips_backbone: str | None = None,
    max_images: int | None = None,
    crop: int | None = None,
    seed: int = 0,
    root: Path | None = None,
    console: Console | None = None,
) -> list[SeedReportTable]:
    """Score every row of the protocol on every test set of `opt_path`; print and write each table."""
    console = console or Console()
    distance = lpips_distance(lpips_net, lpips_backbone) if lpips else None
    opt, model = build_sweep_model(opt_path, list(overrides or []), demo, Path(root or Path.cwd()))
    rows = checked_rows(model, opt_path, nfe)
    val_opt = opt.get("val") or {}
    results_root = Path(opt["path"]["results_root"])
    tables = []
    for phase, dataset_opt in sorted(opt["datasets"].items()):
        if phase.split("_")[0] == "train":
            continue
        loader = build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=opt["num_gpu"], dist=False,
                                  sampler=None, seed=opt["manual_seed"])
        images = list(evaluation_images(loader, model.device, max_images, crop))
        results = score_rows(model, rows, images, seed=seed, crop_border=int(val_opt.get("crop_border", model.scale)),
                             test_y_channel=bool(val_opt.get("test_y_channel", False)), lpips=distance)
        title = header(opt, model, dataset_opt["name"], len(images), nfe, lpips_note(lpips, lpips_net))
        markdown, png = write_outputs(results, title, results_root, dataset_opt["name"])
        console.print(Text(title))
        console.print(rich_table(results, f"Table 1 layout; the report's own numbers are in {markdown.name}"))
        console.print(f"wrote {markdown} and {png}", markup=False, highlight=False)
        tables.append(SeedReportTable(dataset_opt["name"], len(images), results, markdown, png))
    return tables
