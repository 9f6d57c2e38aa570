"""NODESRModel: BasicSR's SRModel plus NFE accounting and the max-NFE policy.

Training: `nfe_forward` / `nfe_backward` of every iteration go into `log_dict` (so the text log and
TensorBoard show them) and into `<experiments_root>/nfe_train.csv` (one row per iteration, read by
`basicsr node plot-nfe`). A solve that exceeds `network_g.max_nfe` raises `MaxNFEExceeded`, one that
torchdiffeq gives up on (dt underflow, non-finite state, step limit; forward or adjoint backward) becomes a
`SolverBreakdown`; for both the option `train.nfe_guard` decides what happens:

    nfe_guard:
      on_exceed: skip            # skip: drop the batch, count it, go on; stop: end training at once
      max_skipped_batches: 10    # with skip: end training once more batches than this were skipped

Validation / `basicsr test`: the forward NFE of every image goes to `nfe_<dataset>.csv` in the results
folder (`path.results_root` when testing, the experiment folder during training).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from srode_plugins.api import LossStage, OptionError, StageLosses, TrainingAborted, optimize_stages, sr_losses

# srode_plugins.api patches basicsr, so it is imported first
# isort: split
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger

from srode_node.errors import ODESolveFailed
from srode_node.nfe_records import append_train_record, write_test_records
from srode_node.odeblock import ODEBlock, as_solver_breakdown

NFE_GUARD_POLICIES = ("skip", "stop")


class NFEGuardPolicy:
    """What to do when a training batch's ODE solve fails: exceeds `network_g.max_nfe` or breaks down in
    torchdiffeq (options under `train.nfe_guard`)."""

    def __init__(self, on_exceed: str = "skip", max_skipped_batches: int | None = 10) -> None:
        if on_exceed not in NFE_GUARD_POLICIES:
            raise OptionError(f"value {on_exceed!r}: use one of {list(NFE_GUARD_POLICIES)}",
                              key="train.nfe_guard.on_exceed")
        if max_skipped_batches is not None and (not isinstance(max_skipped_batches, int) or max_skipped_batches < 0):
            raise OptionError(f"value {max_skipped_batches!r}: use an integer >= 0 or null (never stop)",
                              key="train.nfe_guard.max_skipped_batches")
        self.on_exceed = on_exceed
        self.max_skipped_batches = max_skipped_batches

    @classmethod
    def from_options(cls, guard_opt: dict[str, Any] | None) -> NFEGuardPolicy:
        """Build from the `train.nfe_guard` mapping (None: skip, stop after 10 skipped batches)."""
        guard_opt = dict(guard_opt or {})
        unknown = set(guard_opt) - {"on_exceed", "max_skipped_batches"}
        if unknown:
            raise OptionError(f"unknown keys {sorted(unknown)}; known: on_exceed, max_skipped_batches",
                              key="train.nfe_guard")
        return cls(**guard_opt)


class NODESRModel(SRModel):
    """SRModel for NODESRNet generators: NFE logging, the max-NFE policy and per-image test NFE."""

    option_schema = {"train.nfe_guard": NFEGuardPolicy}  # checked key by key before anything is built

    def __init__(self, opt: dict[str, Any]) -> None:
        self.nfe_guard = NFEGuardPolicy.from_options((opt.get("train") or {}).get("nfe_guard"))
        self.skipped_batches = 0
        self.test_nfe_records: list[tuple[str, int]] = []
        self._batch_names: list[str] = []
        super().__init__(opt)
        self._check_generator_counts_nfe()

    def _check_generator_counts_nfe(self) -> None:
        if not _ode_blocks(self.net_g):
            raise OptionError(f"model_type NODESRModel needs a generator that counts NFE (e.g. NODESRNet), got "
                              f"{type(self.get_bare_model(self.net_g)).__name__}; use model_type: SRModel for it",
                              key="network_g.type")

    def feed_data(self, data: dict[str, Any]) -> None:
        """As SRModel; also remembers the image names (`lq_path`) for the per-image NFE records."""
        super().feed_data(data)
        paths = data.get("lq_path") or []
        self._batch_names = [Path(p).stem for p in ([paths] if isinstance(paths, str) else paths)]

    def training_stages(self, current_iter: int) -> list[LossStage]:
        """SRModel's losses as one generator stage (the engine runs backward and the step)."""
        return [LossStage(self.optimizer_g, self._generator_losses)]

    def _generator_losses(self) -> StageLosses:
        self.output = self.net_g(self.lq)
        return StageLosses(sr_losses(self, self.output, self.gt))

    def optimize_parameters(self, current_iter: int) -> None:
        """One fp32 step of the stages, for BasicSR-style callers (srode's engine calls the stages itself)."""
        optimize_stages(self, current_iter)

    def training_failure(self, error: Exception, current_iter: int) -> bool:
        """`train.nfe_guard` for a failed ODE solve (MaxNFEExceeded, or torchdiffeq's dt underflow / non-finite
        state / step limit, in the forward or the adjoint backward solve): skip the batch (True) or stop."""
        if not isinstance(error, ODESolveFailed):
            # the forward solve already raised SolverBreakdown; what is left comes from the adjoint backward solve
            blocks = _ode_blocks(self.net_g)
            if not isinstance(error, AssertionError | RuntimeError):
                return False
            error = as_solver_breakdown(error, "backward", sum(block.nfe_backward for block in blocks))
            if error is None:
                return False
        self._skip_batch(error, current_iter)
        return True

    def after_training_step(self, current_iter: int) -> None:
        """Log `nfe_forward` / `nfe_backward` of the iteration (text log, TensorBoard, nfe_train.csv)."""
        blocks = _ode_blocks(self.net_g)
        nfe_forward = sum(block.nfe_forward for block in blocks)
        nfe_backward = sum(block.nfe_backward for block in blocks)
        self.log_dict["nfe_forward"] = float(nfe_forward)
        self.log_dict["nfe_backward"] = float(nfe_backward)
        self._append_train_nfe(current_iter, nfe_forward, nfe_backward)

    def _skip_batch(self, error: ODESolveFailed, current_iter: int) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        self.skipped_batches += 1
        self.log_dict = OrderedDict(nfe_skipped_batches=float(self.skipped_batches))
        self._append_train_nfe(current_iter, None, None)
        limit = self.nfe_guard.max_skipped_batches
        if self.nfe_guard.on_exceed == "stop" or (limit is not None and self.skipped_batches > limit):
            raise TrainingAborted(
                f"iteration {current_iter}: {error}. {self.skipped_batches} batch(es) failed their ODE solve "
                f"(train.nfe_guard: on_exceed={self.nfe_guard.on_exceed}, max_skipped_batches={limit}); "
                "training stopped. Set on_exceed: skip with a larger max_skipped_batches to go on."
            ) from error
        stops_after = "never stops for it" if limit is None else f"stops after {limit}"
        get_root_logger().warning(
            f"iteration {current_iter}: {error}. Batch skipped ({self.skipped_batches} so far; training "
            f"{stops_after}: train.nfe_guard.max_skipped_batches)."
        )

    def _append_train_nfe(self, current_iter: int, nfe_forward: int | None, nfe_backward: int | None) -> None:
        root = self.opt.get("path", {}).get("experiments_root")
        if root and self.opt.get("rank", 0) == 0:
            append_train_record(Path(root), current_iter, nfe_forward, nfe_backward)

    def test(self) -> None:
        """As SRModel; records the forward NFE of the batch under each image name.

        Every ODE solve of the test forward is summed, so tiled inference and self-ensemble (which call the
        network several times per image) report the total work per image.
        """
        net = self.net_g_ema if hasattr(self, "net_g_ema") else self.net_g
        solves: list[int] = []
        hooks = [block.register_forward_hook(lambda block, _inputs, _output: solves.append(block.nfe_forward))
                 for block in _ode_blocks(net)]
        try:
            super().test()
        finally:
            for hook in hooks:
                hook.remove()
        names = self._batch_names or [f"image_{len(self.test_nfe_records):05d}"]
        self.test_nfe_records.extend((name, sum(solves)) for name in names)

    def nondist_validation(self, dataloader: Any, current_iter: int, tb_logger: Any, save_img: bool) -> None:
        """As SRModel; then writes `nfe_<dataset>.csv` (image, nfe_forward) and logs the mean NFE."""
        self.test_nfe_records = []
        super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        dataset_name = dataloader.dataset.opt["name"]
        csv_path = self.write_test_nfe_csv(dataset_name, current_iter)
        mean_nfe = sum(nfe for _, nfe in self.test_nfe_records) / max(len(self.test_nfe_records), 1)
        get_root_logger().info(f"Mean forward NFE on {dataset_name}: {mean_nfe:.1f} (per image: {csv_path})")
        if tb_logger:
            tb_logger.add_scalar(f"nfe/val_{dataset_name}", mean_nfe, current_iter)

    def write_test_nfe_csv(self, dataset_name: str, current_iter: int | str) -> Path:
        """Write the per-image NFE records of the last validation; returns the CSV path."""
        paths = self.opt["path"]
        if self.opt.get("is_train"):
            csv_path = Path(paths["experiments_root"]) / f"nfe_{dataset_name}_iter{current_iter}.csv"
        else:
            csv_path = Path(paths.get("results_root") or paths["visualization"]) / f"nfe_{dataset_name}.csv"
        return write_test_records(csv_path, self.test_nfe_records)


def _ode_blocks(net: Any) -> list[ODEBlock]:
    """The ODE blocks inside a generator, through any wrapper (DataParallel, torch.compile, tiling)."""
    return [module for module in net.modules() if isinstance(module, ODEBlock)]
