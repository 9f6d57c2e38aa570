"""Stock BasicSR models on the engine's training step: their `optimize_parameters` as loss stages.

BasicSR 1.4.2's SRModel, SRGANModel, ESRGANModel and RealESRGANModel each call backward and step inside
`optimize_parameters`. The engine owns those calls (engine/step.py), so this adapter computes the same losses
from the same model attributes (`cri_pix`, `cri_perceptual`, `cri_gan`, `cri_ldl`, `net_d_iters`, ...) in the
same forward order and hands them over as stages. A subclass that overrides `optimize_parameters` is not
adapted (its own code runs, see `TrainingStep`): the adapter is chosen by the function the class really uses.
tests/test_core_stock_stages.py checks each against the stock `optimize_parameters` (same weights after a step).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from srode_plugins.engine.step import LossStage, StageLosses, StageSource


def perceptual_losses(model: Any, output: torch.Tensor, target: torch.Tensor,
                      prefix: str = "l_") -> OrderedDict[str, torch.Tensor]:
    """`cri_perceptual`'s perceptual and style terms, named as BasicSR logs them (`l_percep`, `l_style`)."""
    losses: OrderedDict[str, torch.Tensor] = OrderedDict()
    if getattr(model, "cri_perceptual", None):
        percep, style = model.cri_perceptual(output, target)
        if percep is not None:
            losses[f"{prefix}percep"] = percep
        if style is not None:
            losses[f"{prefix}style"] = style
    return losses


def sr_losses(model: Any, output: torch.Tensor, target: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
    """SRModel's losses of `output` (B, C, H, W) against `target`: `l_pix` (`cri_pix`), `l_percep` / `l_style`."""
    losses: OrderedDict[str, torch.Tensor] = OrderedDict()
    if getattr(model, "cri_pix", None):
        losses["l_pix"] = model.cri_pix(output, target)
    losses.update(perceptual_losses(model, output, target))
    return losses


def sr_stages(model: Any, current_iter: int) -> list[LossStage]:
    def compute() -> StageLosses:
        model.output = model.net_g(model.lq)
        return StageLosses(sr_losses(model, model.output, model.gt))

    return [LossStage(model.optimizer_g, compute)]


def _set_requires_grad(net: torch.nn.Module, flag: bool) -> None:
    for param in net.parameters():
        param.requires_grad = flag


def _standard_gan_g(model: Any, gan_target: torch.Tensor) -> torch.Tensor:
    return model.cri_gan(model.net_d(model.output), True, is_disc=False)


def _relativistic_gan_g(model: Any, gan_target: torch.Tensor) -> torch.Tensor:
    real_pred = model.net_d(gan_target).detach()
    fake_pred = model.net_d(model.output)
    l_real = model.cri_gan(real_pred - torch.mean(fake_pred), False, is_disc=False)
    l_fake = model.cri_gan(fake_pred - torch.mean(real_pred), True, is_disc=False)
    return (l_real + l_fake) / 2


def _discriminator_losses(l_real: torch.Tensor, l_fake: torch.Tensor, real_pred: torch.Tensor,
                          fake_pred: torch.Tensor) -> StageLosses:
    monitors = OrderedDict(out_d_real=torch.mean(real_pred.detach()), out_d_fake=torch.mean(fake_pred.detach()))
    return StageLosses(OrderedDict(l_d_real=l_real, l_d_fake=l_fake), monitors)


def _standard_gan_d(model: Any, gan_target: torch.Tensor, clone_fake: bool) -> StageLosses:
    real_pred = model.net_d(gan_target)
    l_real = model.cri_gan(real_pred, True, is_disc=True)
    fake = model.output.detach()
    fake_pred = model.net_d(fake.clone() if clone_fake else fake)
    l_fake = model.cri_gan(fake_pred, False, is_disc=True)
    return _discriminator_losses(l_real, l_fake, real_pred, fake_pred)


def _relativistic_gan_d(model: Any, gan_target: torch.Tensor, clone_fake: bool) -> StageLosses:
    fake_pred_for_real = model.net_d(model.output).detach()
    real_pred = model.net_d(gan_target)
    l_real = model.cri_gan(real_pred - torch.mean(fake_pred_for_real), True, is_disc=True) * 0.5
    fake_pred = model.net_d(model.output.detach())
    l_fake = model.cri_gan(fake_pred - torch.mean(real_pred.detach()), False, is_disc=True) * 0.5
    return _discriminator_losses(l_real, l_fake, real_pred, fake_pred)


def gan_stages(model: Any, current_iter: int, *, relativistic: bool = False,
               real_esrgan: bool = False) -> list[LossStage]:
    """SRGANModel (standard GAN), ESRGANModel (relativistic) and RealESRGANModel (USM-sharpened targets as
    `l1_gt_usm` / `percep_gt_usm` / `gan_gt_usm` say, LDL) as a generator stage and a discriminator stage."""
    pix_target = percep_target = gan_target = model.gt
    if real_esrgan:
        pick = {True: model.gt_usm, False: model.gt}
        pix_target = pick[model.opt["l1_gt_usm"] is not False]
        percep_target = pick[model.opt["percep_gt_usm"] is not False]
        gan_target = pick[model.opt["gan_gt_usm"] is not False]
    generator_turn = current_iter % model.net_d_iters == 0 and current_iter > model.net_d_init_iters
    gan_g = _relativistic_gan_g if relativistic else _standard_gan_g
    gan_d = _relativistic_gan_d if relativistic else _standard_gan_d

    def generator() -> StageLosses:
        _set_requires_grad(model.net_d, False)
        model.output = model.net_g(model.lq)
        cri_ldl = getattr(model, "cri_ldl", None) if real_esrgan else None
        if cri_ldl:
            model.output_ema = model.net_g_ema(model.lq)
        if not generator_turn:
            return StageLosses(OrderedDict())
        losses = OrderedDict()
        if getattr(model, "cri_pix", None):
            losses["l_g_pix"] = model.cri_pix(model.output, pix_target)
        if cri_ldl:
            from basicsr.losses.loss_util import get_refined_artifact_map

            weight = get_refined_artifact_map(model.gt, model.output, model.output_ema, 7)
            losses["l_g_ldl"] = cri_ldl(torch.mul(weight, model.output), torch.mul(weight, model.gt))
        losses.update(perceptual_losses(model, model.output, percep_target, prefix="l_g_"))
        losses["l_g_gan"] = gan_g(model, gan_target)
        return StageLosses(losses)

    def discriminator() -> StageLosses:
        _set_requires_grad(model.net_d, True)
        return gan_d(model, gan_target, real_esrgan)

    return [LossStage(model.optimizer_g, generator), LossStage(model.optimizer_d, discriminator)]


def stock_stages(model: Any) -> StageSource | None:
    """The stages of a stock BasicSR model, chosen by the `optimize_parameters` its class uses; None for any
    other model (it keeps its own optimize_parameters)."""
    from srode_plugins import compat

    compat.apply()  # import basicsr on current torchvision

    # isort: split
    from basicsr.models.esrgan_model import ESRGANModel
    from basicsr.models.realesrgan_model import RealESRGANModel
    from basicsr.models.sr_model import SRModel
    from basicsr.models.srgan_model import SRGANModel

    table: dict[Any, Callable[..., list[LossStage]]] = {
        SRModel.optimize_parameters: sr_stages,
        SRGANModel.optimize_parameters: gan_stages,
        ESRGANModel.optimize_parameters: partial(gan_stages, relativistic=True),
        RealESRGANModel.optimize_parameters: partial(gan_stages, real_esrgan=True),
    }
    build = table.get(getattr(type(model), "optimize_parameters", None))
    return None if build is None else partial(build, model)
