"""`logger.wandb`: Weights & Biases logging as stock BasicSR does it (wandb mirrors the TensorBoard logs)."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from srode_plugins.errors import OptionError

INSTALL = "pip install 'srode-plugins[wandb]'"


def wandb_requested(opt: dict[str, Any]) -> bool:
    """Whether the run logs to wandb: `logger.wandb.project` is set and the name holds no 'debug' (stock rule)."""
    settings = (opt.get("logger") or {}).get("wandb") or {}
    return bool(settings.get("project")) and "debug" not in str(opt.get("name", ""))


def check_wandb_options(opt: dict[str, Any], file: str) -> None:
    """Refuse a wandb block the run cannot honour (before any folder is made). Raises OptionError."""
    if not wandb_requested(opt):
        return
    project = opt["logger"]["wandb"]["project"]
    if opt["logger"].get("use_tb_logger") is not True:
        raise OptionError(f"value {opt['logger'].get('use_tb_logger')!r} with logger.wandb.project {project!r}: "
                          "wandb only syncs the TensorBoard logs. Set `use_tb_logger: true`, or "
                          "`logger.wandb.project: ~` to log without wandb.", file=file, key="logger.use_tb_logger")
    if importlib.util.find_spec("wandb") is None:
        raise OptionError(f"value {project!r} needs the wandb package, which is not installed: {INSTALL} "
                          "(or set `logger.wandb.project: ~`).", file=file, key="logger.wandb.project")


def start_wandb(opt: dict[str, Any], logger: logging.Logger) -> Any | None:
    """Start the wandb run on rank 0 before the TensorBoard writer is made (its events are synced).

    Returns the run, or None when the options ask for no wandb or on other ranks.
    """
    if not wandb_requested(opt) or opt.get("rank", 0) != 0:
        return None
    import wandb

    settings = opt["logger"]["wandb"]
    resume_id = settings.get("resume_id")
    # stock BasicSR's init_wandb_logger calls wandb.util.generate_id, which newer wandb releases dropped
    run = wandb.init(id=resume_id, resume="allow" if resume_id else None,
                     name=opt["name"], project=settings["project"], entity=settings.get("entity"), config=opt,
                     dir=opt["root_path"], sync_tensorboard=True)
    logger.info(f"wandb run {run.id} (project {settings['project']}, mode {run.settings.mode}) "
                f"syncs the TensorBoard logs.")
    return run


def finish_wandb(run: Any | None) -> None:
    """Close the run so the next training in this process starts a new one."""
    if run is not None:
        run.finish()
