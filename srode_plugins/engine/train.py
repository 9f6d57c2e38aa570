"""`basicsr train`: BasicSR's training pipeline with srode's engine options."""

from __future__ import annotations

import datetime
import logging
import math
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from srode_plugins import experiment
from srode_plugins import options as options_mod
from srode_plugins.checkpoints import load_resume_state
from srode_plugins.data import checks, decode_cache
from srode_plugins.engine import precision as precision_mod
from srode_plugins.engine import setup
from srode_plugins.engine.logs import run_logger
from srode_plugins.engine.step import TrainingStep, batch_to_channels_last, compile_generator, to_channels_last
from srode_plugins.errors import TrainingAborted

DEFAULT_DECODE_CACHE_MB = 1024


class InterruptFlag:
    """SIGINT / SIGTERM set a flag; the loop saves a resumable state at the end of the iteration.

    A second Ctrl-C stops at once (KeyboardInterrupt).
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> InterruptFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _loaders(opt: dict[str, Any], logger: logging.Logger) -> tuple[Any, Any, list[Any], int, int]:
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.data.data_sampler import EnlargedSampler

    train_loader = sampler = None
    val_loaders = []
    total_iters = int(opt["train"]["total_iter"])
    total_epochs = 1
    for phase, dataset_opt in opt["datasets"].items():
        if phase == "train":
            enlarge = dataset_opt.get("dataset_enlarge_ratio", 1)
            train_set = build_dataset(dataset_opt)
            sampler = EnlargedSampler(train_set, opt["world_size"], opt["rank"], enlarge)
            train_loader = build_dataloader(train_set, dataset_opt, num_gpu=opt["num_gpu"], dist=opt["dist"],
                                            sampler=sampler, seed=opt["manual_seed"])
            per_epoch = math.ceil(len(train_set) * enlarge / (dataset_opt["batch_size_per_gpu"] * opt["world_size"]))
            total_epochs = math.ceil(total_iters / max(per_epoch, 1))
            logger.info(f"{len(train_set)} training images, {per_epoch} iterations per epoch, "
                        f"{total_epochs} epochs for {total_iters} iterations.")
        elif phase.split("_")[0] == "val":
            val_set = build_dataset(dataset_opt)
            val_loaders.append(build_dataloader(val_set, dataset_opt, num_gpu=opt["num_gpu"], dist=opt["dist"],
                                                sampler=None, seed=opt["manual_seed"]))
            logger.info(f"{len(val_set)} validation images in {dataset_opt['name']}.")
    return train_loader, sampler, val_loaders, total_epochs, total_iters


def _first_metric(model: Any) -> float | None:
    results = getattr(model, "metric_results", None)
    if not results:
        return None
    return float(next(iter(results.values())))


def _validation_wants_stop(model: Any, logger: logging.Logger) -> bool:
    """Feed the validation score to LR schedulers that decide on it (e.g. ValidationLRDecay)."""
    score = _first_metric(model)
    stop = False
    for scheduler in getattr(model, "schedulers", []):
        if score is not None and hasattr(scheduler, "step_validation"):
            stop |= bool(scheduler.step_validation(score))
    if stop:
        logger.info("The learning rate fell below the scheduler's minimum: stopping training.")
    return stop


def _check_ranks_agree(model: Any, logger: logging.Logger) -> None:
    """After DDP training every rank must hold the same generator weights."""
    import torch.distributed as dist

    net = model.get_bare_model(model.net_g)
    checksum = torch.stack([p.detach().double().sum() for p in net.parameters()]).sum().reshape(1).cpu()
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    values = [float(g) for g in gathered]
    if max(values) - min(values) > 1e-6 * max(1.0, abs(values[0])):
        raise TrainingAborted(f"DDP ranks disagree on the generator weights: checksums {values}")
    logger.info(f"All {len(values)} ranks agree on the generator weights (checksum {values[0]:.6f}).")


def train(opt_path: str, *, overrides: list[str] | None = None, demo: bool = False, launcher: str = "none",
          auto_resume: bool = False, root: Path | None = None) -> dict[str, Any]:
    """Run training for an option file. Returns a summary (final iteration, skipped steps, paths)."""
    from basicsr.utils import get_env_info, get_time_str, init_tb_logger
    from basicsr.utils.options import dict2str

    root = (root or Path.cwd()).resolve()
    opts = options_mod.load(opt_path, overrides)
    dist = setup.init_distributed(launcher)
    opt = setup.prepare(opts, is_train=True, root=root, demo=demo, dist=dist, auto_resume=auto_resume)
    cache_mb = _decode_cache_mb(opt["train"])
    setup.seed_everything(opt)
    device = torch.device("cuda" if opt["num_gpu"] > 0 else "cpu")
    torch.backends.cudnn.benchmark = True
    precision = _resolve_precision(opt["train"], device, str(opts.file))

    lock = experiment.acquire_experiment_lock(opt)
    resume_state = load_resume_state(opt, device)
    checks.check_datasets(opt)
    if resume_state is None and opt["rank"] == 0:
        experiment.make_exp_dirs(opt, lock)
    Path(opt["path"]["experiments_root"]).mkdir(parents=True, exist_ok=True)
    log_file = Path(opt["path"]["log"]) / f"train_{opt['name']}_{get_time_str()}.log"
    logger = run_logger(log_file, opt["rank"])
    logger.info(get_env_info())
    logger.info(f"Option file: {opts.file}\nDevice: {device}" + dict2str(opt))
    logger.info(precision.log_line())
    tb_logger = None
    if opt["logger"].get("use_tb_logger") and opt["rank"] == 0:
        tb_logger = init_tb_logger(log_dir=str(root / "tb_logger" / opt["name"]))

    decode_cache.install(_decode_cache_share(cache_mb, opt))
    try:
        return _train(opts, opt, root, dist, device, resume_state, logger, tb_logger)
    finally:
        cache = decode_cache.active()
        if cache is not None:
            workers = _train_loader_workers(opt)
            elsewhere = (f" The {workers} training loader worker(s) decode the training images and keep caches of "
                         f"their own ({cache.max_bytes / 2**20:.0f} MiB each)." if workers else "")
            logger.info(f"Decoded-image cache (main process): {len(cache)} images, "
                        f"{cache.used_bytes / 2**20:.1f} MiB, {cache.hits} hits, {cache.misses} misses.{elsewhere}")
        decode_cache.uninstall()
        lock.release()


def _resolve_precision(train_opt: dict[str, Any], device: torch.device, file: str) -> precision_mod.Precision:
    """Resolve `amp` / `channels_last` (auto or explicit) once, and write the choice back for the engine and the
    logged option dump."""
    facts = precision_mod.detect(device.type, device.index or 0)
    choice = precision_mod.resolve(train_opt.get("amp"), train_opt.get("channels_last"), facts, file=file)
    train_opt["amp"], train_opt["channels_last"] = choice.amp, choice.channels_last
    return choice


def _decode_cache_mb(train_opt: dict[str, Any]) -> int:
    """The run's decoded-image cache budget in MiB (setup.validate_common has checked the value)."""
    value = train_opt.get("decode_cache_mb")
    return DEFAULT_DECODE_CACHE_MB if value is None else value


def _train_loader_workers(opt: dict[str, Any]) -> int:
    return int(opt["datasets"].get("train", {}).get("num_worker_per_gpu") or 0)


def _decode_cache_share(cache_mb: int, opt: dict[str, Any]) -> int:
    """Bytes of decoded images each process may keep: the run's budget shared out equally between the main
    process and the training loader workers (each worker holds its own cache)."""
    return cache_mb * 2**20 // (_train_loader_workers(opt) + 1)


def _train(opts: Any, opt: dict[str, Any], root: Path, dist: bool, device: torch.device, resume_state: Any,
           logger: logging.Logger, tb_logger: Any) -> dict[str, Any]:
    from basicsr.data.prefetch_dataloader import CPUPrefetcher
    from basicsr.models import build_model
    from basicsr.utils import MessageLogger
    from tqdm import tqdm

    train_loader, sampler, val_loaders, total_epochs, total_iters = _loaders(opt, logger)
    model = build_model(opt)
    train_opt = opt["train"]
    if train_opt.get("channels_last"):
        to_channels_last(model)
    step = TrainingStep(model, train_opt, device)
    model.srode_extra_state = step.state_dict
    start_epoch = current_iter = 0
    resumed_from = None
    if resume_state:
        model.resume_training(resume_state)
        step.load_state_dict(resume_state.get("srode", {}))
        start_epoch, current_iter = resume_state["epoch"], resume_state["iter"]
        resumed_from = current_iter
        logger.info(f"Resuming training from epoch {start_epoch}, iteration {current_iter}.")
    if train_opt.get("compile"):
        compile_generator(model, train_opt["compile"])

    msg_logger = MessageLogger(opt, current_iter, tb_logger)
    prefetcher = CPUPrefetcher(train_loader)
    channels_last = bool(train_opt.get("channels_last"))
    val_opt = opt.get("val")
    start_time = time.time()
    progress = tqdm(total=total_iters, initial=current_iter, unit="it", disable=opt["rank"] != 0,
                    desc=opt["name"], dynamic_ncols=True)
    interrupted = None
    stop = False
    history: list[tuple[int, float]] = []
    epoch = start_epoch
    with InterruptFlag() as interrupt:
        while current_iter < total_iters and not stop:
            sampler.set_epoch(epoch)
            prefetcher.reset()
            data = prefetcher.next()
            while data is not None and current_iter < total_iters:
                current_iter += 1
                model.update_learning_rate(current_iter, warmup_iter=train_opt.get("warmup_iter", -1))
                model.feed_data(batch_to_channels_last(data) if channels_last else data)
                step.run(model, current_iter)
                progress.update(1)
                log = model.get_current_log() if hasattr(model, "log_dict") else {}
                if log:
                    progress.set_postfix({k: f"{v:.4g}" for k, v in list(log.items())[:3]}, refresh=False)
                if current_iter % opt["logger"]["print_freq"] == 0:
                    if log:
                        history.append((current_iter, float(next(iter(log.values())))))
                    msg_logger({"epoch": epoch, "iter": current_iter, "lrs": model.get_current_learning_rate(),
                                "time": (time.time() - start_time) / max(current_iter, 1), "data_time": 0.0,
                                **log, "skipped_steps": step.skipped_total})
                if current_iter % opt["logger"]["save_checkpoint_freq"] == 0:
                    model.save(epoch, current_iter)
                if val_opt is not None and val_loaders and current_iter % val_opt.get("val_freq", 10**12) == 0:
                    for loader in val_loaders:
                        model.validation(loader, current_iter, tb_logger, val_opt["save_img"])
                    stop = _validation_wants_stop(model, logger)
                if interrupt.signal_name or stop:
                    interrupted = interrupt.signal_name
                    break
                data = prefetcher.next()
            if interrupted:
                break
            epoch += 1
    progress.close()
    if interrupted:
        model.save(epoch, current_iter)
        logger.info(f"{interrupted} received: saved a resumable state at iteration {current_iter} in "
                    f"{opt['path']['training_states']}. Resume with: basicsr train -opt {opts.file} --auto_resume")
        raise KeyboardInterrupt(f"interrupted at iteration {current_iter}; resumable state saved")
    logger.info(f"End of training after {datetime.timedelta(seconds=int(time.time() - start_time))}; "
                f"{step.skipped_total} step(s) skipped for non-finite losses.")
    model.save(epoch, current_iter)
    model.save(epoch=-1, current_iter=-1)
    if val_opt is not None and val_loaders:
        for loader in val_loaders:
            model.validation(loader, current_iter, tb_logger, val_opt["save_img"])
    if dist:
        _check_ranks_agree(model, logger)
    if tb_logger:
        tb_logger.close()
    return {"iter": current_iter, "resumed_from": resumed_from, "skipped_steps": step.skipped_total,
            "experiments_root": opt["path"]["experiments_root"],
            "metrics": dict(getattr(model, "metric_results", {}) or {}), "model": model, "history": history}
