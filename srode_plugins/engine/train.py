"""`basicsr train`: BasicSR's training pipeline with srode's engine options."""

from __future__ import annotations

import datetime
import logging
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from srode_plugins import compat, experiment
from srode_plugins.checkpoints import load_resume_state, prune_checkpoints
from srode_plugins.data import checks, decode_cache
from srode_plugins.engine import setup
from srode_plugins.engine.logs import run_logger
from srode_plugins.engine.step import TrainingStep, batch_to_channels_last, compile_generator, to_channels_last
from srode_plugins.engine.wandb_logging import finish_wandb, start_wandb
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
          auto_resume: bool = False, root: Path | None = None) -> RunResult:
    """Run training for an option file. Returns where it ended (RunResult)."""
    compat.apply()
    from basicsr.utils import get_env_info, get_time_str, init_tb_logger
    from basicsr.utils.options import dict2str

    root = (root or Path.cwd()).resolve()
    run_opts = setup.prepare_run(opt_path, overrides, is_train=True, root=root, demo=demo, launcher=launcher,
                                 auto_resume=auto_resume)
    opt, device, precision = run_opts.opt, run_opts.device, run_opts.precision
    assert precision is not None
    cache_mb = _decode_cache_mb(opt["train"])
    torch.backends.cudnn.benchmark = True

    lock = experiment.acquire_experiment_lock(opt)
    resume_state = load_resume_state(opt, device)
    checks.check_datasets(opt)
    if resume_state is None and opt["rank"] == 0:
        experiment.make_exp_dirs(opt, lock)
    Path(opt["path"]["experiments_root"]).mkdir(parents=True, exist_ok=True)
    log_file = Path(opt["path"]["log"]) / f"train_{opt['name']}_{get_time_str()}.log"
    logger = run_logger(log_file, opt["rank"])
    logger.info(get_env_info())
    logger.info(f"Option file: {run_opts.file}\nDevice: {device}" + dict2str(opt))
    logger.info(precision.log_line())
    wandb_run = start_wandb(opt, logger)  # before the TensorBoard writer, whose events wandb syncs
    tb_logger = None
    if opt["logger"].get("use_tb_logger") and opt["rank"] == 0:
        tb_logger = init_tb_logger(log_dir=str(root / "tb_logger" / opt["name"]))

    decode_cache.install(_decode_cache_share(cache_mb, opt))
    try:
        return _train(run_opts, resume_state, logger, tb_logger)
    finally:
        cache = decode_cache.active()
        if cache is not None:
            workers = _train_loader_workers(opt)
            elsewhere = (f" The {workers} training loader worker(s) decode the training images and keep caches of "
                         f"their own ({cache.max_bytes / 2**20:.0f} MiB each)." if workers else "")
            logger.info(f"Decoded-image cache (main process): {len(cache)} images, "
                        f"{cache.used_bytes / 2**20:.1f} MiB, {cache.hits} hits, {cache.misses} misses.{elsewhere}")
        decode_cache.uninstall()
        finish_wandb(wandb_run)
        lock.release()


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


@dataclass(frozen=True)
class RunResult:
    """What `train()` returns: where the run ended and what it produced."""

    iter: int  # the last iteration trained
    resumed_from: int | None  # the iteration the run resumed at (--auto_resume), or None
    skipped_steps: int  # iterations skipped for non-finite losses
    experiments_root: str
    metrics: dict[str, float]  # the final validation's scores (first metric first)
    model: Any  # the trained BasicSR model (net_g, net_g_ema, ...)
    history: list[tuple[int, float]] = field(default_factory=list)  # (iteration, first logged loss)


class TrainingRun:
    """The training loop in named steps: build the model and its step, resume, iterate, finish."""

    def __init__(self, run_opts: setup.RunOptions, logger: logging.Logger, tb_logger: Any) -> None:
        self.file, self.opt, self.dist, self.device = run_opts.file, run_opts.opt, run_opts.dist, run_opts.device
        self.logger, self.tb_logger = logger, tb_logger
        self.train_opt: dict[str, Any] = self.opt["train"]
        self.val_opt: dict[str, Any] | None = self.opt.get("val")
        self.epoch = self.current_iter = 0
        self.saved_at = self.validated_at = -1  # the iteration last saved / validated (finish() does neither twice)
        self.resumed_from: int | None = None
        self.history: list[tuple[int, float]] = []

    def build(self, resume_state: dict[str, Any] | None) -> None:
        from basicsr.models import build_model

        self.train_loader, self.sampler, self.val_loaders, _, self.total_iters = _loaders(self.opt, self.logger)
        self.model = build_model(self.opt)
        if self.train_opt.get("channels_last"):
            to_channels_last(self.model)
        self.step = TrainingStep(self.model, self.train_opt, self.device)
        self.model.srode_extra_state = self.step.state_dict  # saved into each .state by compat's save patch
        if resume_state:
            self.model.resume_training(resume_state)
            self.step.load_state_dict(resume_state.get("srode", {}))
            self.epoch, self.current_iter = resume_state["epoch"], resume_state["iter"]
            self.resumed_from = self.current_iter
            self.logger.info(f"Resuming training from epoch {self.epoch}, iteration {self.current_iter}.")
        if self.train_opt.get("compile"):
            compile_generator(self.model, self.train_opt["compile"])

    def iterate(self) -> str | None:
        """Train until total_iter, a stop asked by validation, or SIGINT/SIGTERM (its name is returned)."""
        from basicsr.data.prefetch_dataloader import CPUPrefetcher
        from basicsr.utils import MessageLogger
        from tqdm import tqdm

        self.msg_logger = MessageLogger(self.opt, self.current_iter, self.tb_logger)
        self.start_time = time.time()
        prefetcher = CPUPrefetcher(self.train_loader)
        progress = tqdm(total=self.total_iters, initial=self.current_iter, unit="it", disable=self.opt["rank"] != 0,
                        desc=self.opt["name"], dynamic_ncols=True)
        stop = False
        with InterruptFlag() as interrupt, progress:
            while self.current_iter < self.total_iters and not stop:
                self.sampler.set_epoch(self.epoch)
                prefetcher.reset()
                data = prefetcher.next()
                while data is not None and self.current_iter < self.total_iters:
                    stop = self.one_iteration(data, progress)
                    if interrupt.signal_name or stop:
                        return interrupt.signal_name
                    data = prefetcher.next()
                self.epoch += 1
        return None

    def one_iteration(self, data: dict[str, Any], progress: Any) -> bool:
        """Feed, step, log, save and validate as the options say. Returns True when validation asks to stop."""
        self.current_iter += 1
        it, model = self.current_iter, self.model
        model.update_learning_rate(it, warmup_iter=self.train_opt.get("warmup_iter", -1))
        model.feed_data(batch_to_channels_last(data) if self.train_opt.get("channels_last") else data)
        self.step.run(model, it)
        progress.update(1)
        log = model.get_current_log() if hasattr(model, "log_dict") else {}
        if log:
            progress.set_postfix({k: f"{v:.4g}" for k, v in list(log.items())[:3]}, refresh=False)
        if it % self.opt["logger"]["print_freq"] == 0:
            self._log(log)
        if it % self.opt["logger"]["save_checkpoint_freq"] == 0:
            self.save(it)
        if self.val_opt is not None and self.val_loaders and it % self.val_opt.get("val_freq", 10**12) == 0:
            self.validate()
            return _validation_wants_stop(model, self.logger)
        return False

    def save(self, current_iter: int) -> None:
        """Weights and a resumable state of this iteration; `logger.keep_last: N` then drops older ones."""
        self.model.save(self.epoch, current_iter)
        self.saved_at = current_iter
        keep_last = int(self.opt["logger"].get("keep_last") or 0)
        if keep_last and self.opt["rank"] == 0:
            paths = self.opt["path"]
            removed = prune_checkpoints(paths["models"], paths["training_states"], keep_last)
            if removed:
                self.logger.info(f"logger.keep_last: {keep_last}: removed {len(removed)} older checkpoint file(s).")

    def _log(self, log: dict[str, float]) -> None:
        if log:
            self.history.append((self.current_iter, float(next(iter(log.values())))))
        self.msg_logger({"epoch": self.epoch, "iter": self.current_iter,
                         "lrs": self.model.get_current_learning_rate(),
                         "time": (time.time() - self.start_time) / max(self.current_iter, 1), "data_time": 0.0,
                         **log, "skipped_steps": self.step.skipped_total})

    def validate(self) -> None:
        for loader in self.val_loaders:
            self.model.validation(loader, self.current_iter, self.tb_logger, self.val_opt["save_img"])
        self.validated_at = self.current_iter

    def save_interrupted(self, signal_name: str) -> None:
        self.save(self.current_iter)
        self.logger.info(f"{signal_name} received: saved a resumable state at iteration {self.current_iter} in "
                         f"{self.opt['path']['training_states']}. Resume with: basicsr train -opt {self.file} "
                         "--auto_resume")

    def finish(self) -> RunResult:
        """Save the last and the final weights and validate them (unless the loop just did, at this iteration),
        check DDP ranks agree."""
        seconds = time.time() - self.start_time
        self.logger.info(f"End of training after {datetime.timedelta(seconds=int(seconds))} ({seconds:.2f} s); "
                         f"{self.step.skipped_total} step(s) skipped for non-finite losses.")
        if self.saved_at != self.current_iter:
            self.save(self.current_iter)
        self.model.save(epoch=-1, current_iter=-1)
        if self.val_opt is not None and self.val_loaders and self.validated_at != self.current_iter:
            self.validate()
        if self.dist:
            _check_ranks_agree(self.model, self.logger)
        if self.tb_logger:
            self.tb_logger.close()
        return RunResult(iter=self.current_iter, resumed_from=self.resumed_from, skipped_steps=self.step.skipped_total,
                         experiments_root=self.opt["path"]["experiments_root"],
                         metrics=dict(getattr(self.model, "metric_results", {}) or {}), model=self.model,
                         history=self.history)


def _train(run_opts: setup.RunOptions, resume_state: Any, logger: logging.Logger, tb_logger: Any) -> RunResult:
    run = TrainingRun(run_opts, logger, tb_logger)
    run.build(resume_state)
    interrupted = run.iterate()
    if interrupted:
        run.save_interrupted(interrupted)
        raise KeyboardInterrupt(f"interrupted at iteration {run.current_iter}; resumable state saved")
    return run.finish()
