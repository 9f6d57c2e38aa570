"""ContinuousResShiftModel: ResShift trained in continuous (or discrete) time, sampled with any sampler.

Training draws t ~ U(1/T, 1) (``resshift.time_sampling: continuous``) or a chain step k ~ U{0..T-1} at
t = (k + 1) / T (``discrete``), forms x_t ~ N(x0 + eta(t) (y - x0), kappa^2 eta(t)) in the autoencoder's
space and regresses x0 with MSE (``train.pixel_opt``), optionally plus LPIPS on the decoded prediction
(``train.lpips_opt``). Training and every sampler feed the network the same time T t - 1 (see denoiser.py).

Option keys (besides BasicSR's)::

    resshift:
      schedule: {type: ContinuousPowerSchedule, num_timesteps: 15, kappa: 2.0, ...}
      time_sampling: continuous      # or discrete
      input_scaling: std             # std | max | none
      autoencoder: {type: PixelSpaceAutoencoder}   # or {type: VQAutoencoderF4, checkpoint: ...}
      sampler: {type: HeunSampler, num_steps: 8, grid: sigma, rho: 7}   # validation / test sampler
      clip_denoised: auto            # clamp x0_hat to [-1, 1] while sampling; auto: in pixel space only (official)
      val_seed: 0                    # fixed noise for validation (null: fresh noise)
    val:
      sampler_sweep: {...}           # optional: `basicsr test` table per sampler x rho x NFE (evaluation.py)
"""

from __future__ import annotations

import math
import os
import os.path as osp
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from srode_plugins import api

# srode_plugins.api applies the BasicSR compat patches, so basicsr is imported after it
# isort: split
from basicsr.metrics.psnr_ssim import calculate_psnr, calculate_ssim
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, imwrite, tensor2img

from .autoencoder import PixelSpaceAutoencoder
from .denoiser import INPUT_SCALINGS, ResShiftDenoiser
from .evaluation import SweepRow, SweepSpec, expand_sweep, format_sweep_markdown, format_sweep_table, side_by_side
from .perceptual import LPIPSLoss
from .samplers import ResShiftSampler, SamplingResult
from .schedules import ContinuousSchedule, ResShiftSchedule
from .training import TIME_SAMPLINGS, predict_x0_on_forward_samples

__all__ = ["ContinuousResShiftModel", "ResShiftOptions"]

RESSHIFT_KEYS = ("schedule", "time_sampling", "input_scaling", "autoencoder", "sampler", "clip_denoised", "val_seed")


@dataclass
class ResShiftOptions:
    """The validated ``resshift:`` block of an option file."""

    schedule: dict[str, Any] = field(default_factory=lambda: {"type": "ContinuousPowerSchedule"})
    time_sampling: str = "continuous"
    input_scaling: str = "std"
    autoencoder: dict[str, Any] = field(default_factory=lambda: {"type": "PixelSpaceAutoencoder"})
    sampler: dict[str, Any] = field(
        default_factory=lambda: {"type": "HeunSampler", "num_steps": 8, "grid": "sigma", "rho": 7.0}
    )
    clip_denoised: str | bool = "auto"
    val_seed: int | None = 0

    @classmethod
    def from_options(cls, block: Mapping[str, Any] | None) -> ResShiftOptions:
        block = dict(block or {})
        unknown = set(block) - set(RESSHIFT_KEYS)
        if unknown:
            raise api.OptionError(
                f"unknown key(s) {sorted(unknown)}; allowed: {', '.join(RESSHIFT_KEYS)}",
                key="resshift",
            )
        options = cls(**{key: block[key] for key in RESSHIFT_KEYS if key in block})
        if options.time_sampling not in TIME_SAMPLINGS:
            raise api.OptionError(
                f"got {options.time_sampling!r}; choose one of {list(TIME_SAMPLINGS)}",
                key="resshift.time_sampling",
            )
        if options.input_scaling not in INPUT_SCALINGS:
            raise api.OptionError(
                f"got {options.input_scaling!r}; choose one of {list(INPUT_SCALINGS)}",
                key="resshift.input_scaling",
            )
        if not isinstance(options.clip_denoised, bool) and options.clip_denoised != "auto":
            raise api.OptionError(
                f"got {options.clip_denoised!r}; choose auto (clamp in pixel space only, as the official "
                "p_sample_loop), true or false",
                key="resshift.clip_denoised",
            )
        for key in ("schedule", "autoencoder", "sampler"):
            if not isinstance(getattr(options, key), Mapping) or "type" not in getattr(options, key):
                raise api.OptionError("needs a mapping with a 'type:' entry", key=f"resshift.{key}")
        return options


def check_sampler(sampler: ResShiftSampler, schedule: ResShiftSchedule, key: str) -> None:
    """Refuse, when the model is built, a sampler that cannot run on the schedule (not at the first validation)."""
    try:
        sampler.check(schedule)
    except (TypeError, ValueError) as error:
        raise api.OptionError(f"{sampler!r}: {error}", key=key) from error


class ContinuousResShiftModel(SRModel):
    """BasicSR model for ResShift with continuous-time training and pluggable samplers.

    Images are (B, 3, H, W) in [0, 1]; the LR batch `lq` is (B, 3, H/scale, W/scale).
    """

    option_schema = {"resshift": ResShiftOptions}  # the block's keys and types, checked before anything is built

    def __init__(self, opt: dict[str, Any]) -> None:
        self.resshift = ResShiftOptions.from_options(opt.get("resshift"))
        self.schedule: ResShiftSchedule = api.build_component(
            "schedules", self.resshift.schedule, key="resshift.schedule"
        )
        if self.resshift.time_sampling == "continuous" and not isinstance(self.schedule, ContinuousSchedule):
            raise api.OptionError(
                f"{type(self.schedule).__name__} is discrete but 'resshift.time_sampling' is continuous; use "
                "ContinuousPowerSchedule (exact extension of the same chain) or set time_sampling: discrete",
                key="resshift.schedule.type",
            )
        self.sampler: ResShiftSampler = api.build_component("samplers", self.resshift.sampler, key="resshift.sampler")
        check_sampler(self.sampler, self.schedule, "resshift.sampler")
        sweep = (opt.get("val") or {}).get("sampler_sweep")
        if sweep:
            self.sweep_samplers(SweepSpec.from_options(sweep))  # refuse a bad sweep now, not at validation
        super().__init__(opt)
        self.autoencoder = api.build_component("autoencoders", self.resshift.autoencoder, key="resshift.autoencoder")
        self.autoencoder = self.autoencoder.to(self.device).eval().requires_grad_(False)
        self.scale = int(opt["scale"])
        self.clip_denoised = self.resolve_clip_denoised()

    def resolve_clip_denoised(self) -> bool:
        """``resshift.clip_denoised``; ``auto`` clamps in pixel space only, as the official sampler
        (``clip_denoised = autoencoder is None``): a latent has no [-1, 1] range to clamp to."""
        if self.resshift.clip_denoised == "auto":
            return isinstance(self.autoencoder, PixelSpaceAutoencoder)
        return bool(self.resshift.clip_denoised)

    def load_network(self, net, load_path, strict=True, param_key="params"):
        """BasicSR checkpoints ({'params': ..., 'params_ema': ...}) as usual; a bare state dict (the official
        ResShift release, possibly 'module.'-prefixed or under 'state_dict') loads as it is."""
        checkpoint = torch.load(load_path, map_location="cpu", weights_only=True)
        if isinstance(checkpoint, Mapping) and (param_key in checkpoint or "params" in checkpoint):
            super().load_network(net, load_path, strict, param_key)
            return
        get_root_logger().info(f"Loading {type(net).__name__} from the bare state dict {load_path}.")
        self.get_bare_model(net).load_state_dict(api.unwrap_state_dict(checkpoint, None), strict=strict)

    def init_training_settings(self) -> None:
        """SRModel's (EMA, pixel loss, optimizers, schedulers) with the x0 loss defaulting to MSE, plus
        `train.lpips_opt` on the decoded x0 prediction."""
        train_opt = self.opt["train"]
        if not train_opt.get("pixel_opt"):
            train_opt["pixel_opt"] = {"type": "MSELoss", "loss_weight": 1.0}
        super().init_training_settings()
        lpips_opt = dict(train_opt.get("lpips_opt") or {})
        self.cri_lpips = LPIPSLoss(**lpips_opt).to(self.device) if lpips_opt else None

    def upsample_lq(self, lq: Tensor) -> Tensor:
        """LR images (B, 3, h, w) bicubically upsampled by `scale` to the HR grid."""
        return F.interpolate(lq, scale_factor=self.scale, mode="bicubic", align_corners=False)

    def denoiser(self, net: torch.nn.Module) -> ResShiftDenoiser:
        """`net` wrapped as the x0 predictor with this model's kappa, T, input scaling and x0 clamping."""
        return ResShiftDenoiser(
            net, self.schedule.kappa, self.schedule.num_timesteps, self.resshift.input_scaling, self.clip_denoised
        )

    def training_stages(self, current_iter: int) -> list[api.LossStage]:
        """The x0-prediction loss (and LPIPS on the decoded prediction) as one generator stage."""
        return [api.LossStage(self.optimizer_g, self._denoiser_losses)]

    def _denoiser_losses(self) -> api.StageLosses:
        with torch.no_grad():
            x0 = self.autoencoder.encode(self.gt)
            y = self.autoencoder.encode(self.upsample_lq(self.lq))
        prediction = predict_x0_on_forward_samples(
            self.denoiser(self.net_g), self.schedule, x0, y, self.lq * 2 - 1, self.resshift.time_sampling
        )
        loss_dict = {"l_x0": self.cri_pix(prediction, x0)}
        if self.cri_lpips is not None:
            loss_dict["l_lpips"] = self.cri_lpips(self.autoencoder.decode(prediction), self.gt)
        return api.StageLosses(loss_dict)

    def optimize_parameters(self, current_iter: int) -> None:
        """One fp32 step of the stages, for BasicSR-style callers (srode's engine calls the stages itself)."""
        api.optimize_stages(self, current_iter)

    def inference_network(self) -> torch.nn.Module:
        """The EMA network when training keeps one, else net_g."""
        return self.net_g_ema if hasattr(self, "net_g_ema") else self.net_g

    def lq_size_multiple(self, net: torch.nn.Module) -> int:
        """LR side multiple that makes the diffusion-space side a multiple of the network's `size_multiple`."""
        space_multiple = int(getattr(net, "size_multiple", 1)) * int(self.autoencoder.downsample_factor)
        return space_multiple // math.gcd(space_multiple, self.scale)

    @torch.no_grad()
    def super_resolve(
        self, lq: Tensor, sampler: ResShiftSampler, seed: int | None = None, schedule: ResShiftSchedule | None = None
    ) -> tuple[Tensor, int]:
        """SR images (B, 3, H, W) in [0, 1] for LR images `lq` (B, 3, H/scale, W/scale) with `sampler` on
        `schedule` (default: the model's); also the NFE it took. LR sides that the network cannot take are
        reflect-padded and the result cropped."""
        net = self.inference_network()
        was_training = net.training
        net.eval()
        height, width = lq.shape[-2:]
        multiple = self.lq_size_multiple(net)
        pad_bottom, pad_right = (-height) % multiple, (-width) % multiple
        padded = F.pad(lq, (0, pad_right, 0, pad_bottom), mode="replicate") if pad_bottom or pad_right else lq
        generator = None if seed is None else torch.Generator(device=lq.device).manual_seed(seed)
        y = self.autoencoder.encode(self.upsample_lq(padded))
        result: SamplingResult = sampler.sample(
            self.denoiser(net).bind(padded * 2 - 1), y, schedule or self.schedule, generator=generator
        )
        net.train(was_training)
        output = self.autoencoder.decode(result.x0).clamp(0, 1)
        return output[..., : height * self.scale, : width * self.scale], result.nfe

    def test(self) -> None:
        self.output, self.last_nfe = self.super_resolve(self.lq, self.sampler, self.resshift.val_seed)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        sweep = self.opt.get("val", {}).get("sampler_sweep")
        if sweep:
            self.sweep_rows = self.sweep_validation(dataloader, SweepSpec.from_options(sweep))
            return
        super().nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def sweep_samplers(self, spec: SweepSpec) -> list[ResShiftSampler]:
        """Every sampler of the sweep, each checked against the schedule."""
        samplers = [
            api.build_component("samplers", option, key="val.sampler_sweep.samplers")
            for option in expand_sweep(spec, lambda name: api.get_component("samplers", name))
        ]
        for sampler in samplers:
            check_sampler(sampler, self.schedule, "val.sampler_sweep.samplers")
        return samplers

    def sweep_validation(self, dataloader, spec: SweepSpec) -> list[SweepRow]:
        """Evaluate every sampler of the sweep on the loader; log the table, write it and the sample grids."""
        dataset_name = dataloader.dataset.opt["name"]
        samplers = self.sweep_samplers(spec)
        rows = [SweepRow(sampler.describe()) for sampler in samplers]
        lpips_model = None
        if spec.lpips is not None:
            lpips_key = "val.sampler_sweep.lpips.backbone_path"
            lpips_model = api.build_lpips(option_key=lpips_key, **spec.lpips).to(self.device)
            for row in rows:
                row.lpips = 0.0
        crop_border = self.opt["val"].get("crop_border", self.scale)
        test_y_channel = self.opt["val"].get("test_y_channel", False)
        count = 0
        for index, data in enumerate(dataloader):
            self.feed_data(data)
            image_name = osp.splitext(osp.basename(data["lq_path"][0]))[0]
            gt_image = tensor2img([self.gt.detach().cpu()])
            panels = [self.upsample_lq(self.lq).clamp(0, 1).cpu()]
            for sampler, row in zip(samplers, rows):
                output, _ = self.super_resolve(self.lq, sampler, spec.seed)
                sr_image = tensor2img([output.detach().cpu()])
                row.psnr += calculate_psnr(sr_image, gt_image, crop_border, test_y_channel=test_y_channel)
                row.ssim += calculate_ssim(sr_image, gt_image, crop_border, test_y_channel=test_y_channel)
                if lpips_model is not None:
                    row.lpips += float(lpips_model(output * 2 - 1, self.gt * 2 - 1).mean())
                panels.append(output.cpu())
            if index < spec.grid_images:
                panels.append(self.gt.cpu())
                grid_path = osp.join(self.opt["path"]["visualization"], dataset_name, f"{image_name}_sweep.png")
                imwrite(tensor2img([side_by_side(panels)]), grid_path)
            count += 1
        for row in rows:
            row.psnr /= max(count, 1)
            row.ssim /= max(count, 1)
            if row.lpips is not None:
                row.lpips /= max(count, 1)
        title = f"Sampler sweep on {dataset_name} ({count} images; grids: bicubic | one panel per row below | HR)"
        table = format_sweep_table(rows, title)
        get_root_logger().info("\n" + table)
        results_root = self.opt["path"].get("results_root", self.opt["path"]["visualization"])
        os.makedirs(results_root, exist_ok=True)
        with open(osp.join(results_root, f"sampler_sweep_{dataset_name}.md"), "w", encoding="utf-8") as handle:
            handle.write(f"{title}\n\n{format_sweep_markdown(rows)}")
        return rows
