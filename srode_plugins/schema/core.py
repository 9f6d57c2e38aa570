"""The core sections of an option file: what BasicSR 1.4.2 and the srode engine read, with types and ranges.

Keys a model, dataset or other component reads on its own join these at validation time (see components.py).
"""

from __future__ import annotations

from typing import Any

from srode_plugins.schema.spec import Key, Section


def integer(doc: str, minimum: int | None = None, *, nullable: bool = False, example: str = "",
            choices: tuple[Any, ...] = ()) -> Key:
    return Key(doc, "int", minimum=minimum, nullable=nullable, example=example, choices=choices)


def number(doc: str, minimum: float | None = None, *, above: bool = False, maximum: float | None = None,
           below: bool = False, nullable: bool = False, example: str = "") -> Key:
    return Key(doc, "float", minimum=minimum, exclusive_minimum=above, maximum=maximum, exclusive_maximum=below,
               nullable=nullable, example=example)


def boolean(doc: str, *, choices: tuple[Any, ...] = (), nullable: bool = False) -> Key:
    return Key(doc, "bool", choices=choices, nullable=nullable)


def text(doc: str, *, nullable: bool = False, example: str = "", required: bool = False) -> Key:
    return Key(doc, "str", nullable=nullable, example=example, required=required)


def choice(doc: str, *choices: Any, nullable: bool = False) -> Key:
    return Key(doc, "any", choices=choices, nullable=nullable)


def mapping(doc: str, section: Section, *, nullable: bool = False, required: bool = False,
            component: str | None = None, example: str = "") -> Key:
    return Key(doc, "mapping", section=section, nullable=nullable, required=required, component=component,
               example=example)


def listing(doc: str, *, nullable: bool = False, example: str = "") -> Key:
    return Key(doc, "list", nullable=nullable, example=example)


def anything(doc: str) -> Key:
    return Key(doc, "any", nullable=True)


OPEN = Section(open=True)

IO_BACKEND = Section({
    "type": choice("where images are read from", "disk", "lmdb", "memcached"),
    "db_paths": anything("LMDB folders (lmdb backend)"),
    "client_keys": anything("LMDB client keys, e.g. [lq, gt] (lmdb backend)"),
    "server_list_cfg": text("memcached server list (memcached backend)"),
    "client_cfg": text("memcached client config (memcached backend)"),
    "sys_path": text("memcached module path (memcached backend)"),
}, title="datasets.<phase>.io_backend")

# Keys BasicSR's dataloader, the engine or --demo read or write for every dataset, whatever its type.
DATASET = Section({
    "name": text("dataset name shown in logs (default: the phase)", example="DIV2K"),
    "type": text("dataset class (`basicsr plugins list`)", example="PairedImageDataset", required=True),
    "phase": choice("filled by srode from the phase key", "train", "val", "test"),
    "scale": integer("filled by srode from the top-level scale", 1),
    "dataroot_gt": Key("HR folder or LMDB (a path, demo://..., or a list of them)", "any", example="datasets/DIV2K/HR"),
    "dataroot_lq": Key("LR folder or LMDB (a path, demo://..., or a list of them)", "any"),
    "meta_info_file": text("file listing the image names", nullable=True),
    "meta_info": text("file listing the HR images (Real-ESRGAN datasets)", nullable=True),
    "filename_tmpl": text("LR file name from the HR stem, e.g. '{}x4'", example="'{}'"),
    "io_backend": mapping("image storage", IO_BACKEND, example="{type: disk}"),
    "gt_size": integer("HR training crop in pixels", 1, example="128"),
    "use_hflip": boolean("random horizontal flips"),
    "use_rot": boolean("random 90-degree rotations and vertical flips"),
    "use_flip": boolean("older spelling of use_hflip (renamed when read)"),
    "use_shuffle": boolean("shuffle the training set each epoch"),
    "num_worker_per_gpu": integer("data loader worker processes per GPU (0: load in the main process)", 0,
                                  example="4"),
    "batch_size_per_gpu": integer("training batch size per GPU", 1, example="16"),
    "dataset_enlarge_ratio": integer("repeat the training set this many times per epoch", 1, example="1"),
    "prefetch_mode": choice("prefetch batches to the CPU or CUDA", "cpu", "cuda", nullable=True),
    "num_prefetch_queue": integer("batches held by the CPU prefetcher", 1),
    "pin_memory": boolean("pinned host memory for the data loader"),
    "persistent_workers": boolean("keep loader workers across epochs (default with workers)"),
}, title="datasets.<phase>")

OPTIMIZER = Section({
    "type": text("torch.optim class", example="Adam", required=True),
    "lr": number("learning rate", 0, above=True, example="2e-4"),
    "weight_decay": number("L2 weight decay", 0, example="0"),
    "betas": listing("Adam-style betas", example="[0.9, 0.99]"),
}, title="train.optim_<net>")

LOSS = Section({
    "type": text("loss class (`basicsr plugins list`)", example="L1Loss", required=True),
    "loss_weight": number("weight of this loss in the total (a negative weight trains backwards)", 0,
                          example="1.0"),
}, title="train.<name>_opt")

SCHEDULER = Section({
    "type": text("LR scheduler: MultiStepLR, CosineAnnealingRestartLR, a torch.optim.lr_scheduler class or a "
                 "plugin one", example="MultiStepLR", required=True),
}, title="train.scheduler")

TRAIN = Section({
    "total_iter": integer("iterations to train", 1, example="1000"),
    "warmup_iter": integer("linear LR warm-up iterations (-1: none)", -1, example="-1"),
    "scheduler": mapping("learning-rate schedule (absent: constant)", SCHEDULER, nullable=True,
                         component="lr_schedulers"),
    "ema_decay": number("decay of the generator's exponential moving average (0: no EMA)", 0, maximum=1, below=True,
                        example="0.999"),
    "grad_clip": number("clip the gradient norm to this value (absent or null: no clipping)", 0, above=True,
                        nullable=True, example="1.0"),
    "max_nonfinite": integer("stop after this many non-finite losses in a row", 1, example="10"),
    "decode_cache_mb": integer("decoded-image cache size in MiB (an integer >= 0; 0 switches the cache off)", 0,
                               example="1024"),
    "amp": choice("mixed precision: auto (what is fast on this hardware), bf16, fp16, or null/false (fp32)",
                  "auto", "bf16", "fp16", False, nullable=True),
    "amp_init_scale": number("initial fp16 loss scale", 0, above=True, example="65536"),
    "channels_last": boolean("NHWC memory format: auto, true or false", choices=("auto",), nullable=True),
    "compile": Key("torch.compile the generator: true, false, or a mapping of torch.compile arguments", "any",
                   choices=(True, False), nullable=True),
    "accum_iter": integer("accumulate gradients over this many batches per optimizer step", 1, example="1"),
}, patterns=(
    ("optim_*", mapping("optimizer of network_<net>", OPTIMIZER, component="optimizers")),
    ("*_opt", mapping("a loss (a mapping with `type:`), or null to switch it off", LOSS, nullable=True,
                      component="losses")),
), title="train")

METRIC = Section({
    "type": text("metric function (`basicsr plugins list`)", example="calculate_psnr", required=True),
    "crop_border": integer("pixels cropped from each border before measuring (the scale, by SR convention)", 0,
                           example="4"),
    "test_y_channel": boolean("measure on the Y channel of YCbCr"),
    "better": choice("which way is better for the best-result log", "higher", "lower"),
}, title="val.metrics.<name>")

TILE = Section({
    "size": integer("tile size in LR pixels", 1, example="256"),
    "overlap": integer("tile overlap in LR pixels", 0, example="16"),
}, title="val.tile")

VAL = Section({
    "val_freq": integer("validate every this many iterations", 1, example="5000"),
    "save_img": boolean("save the validation outputs"),
    "suffix": text("suffix of saved image names", nullable=True),
    "pbar": boolean("show a progress bar while validating"),
    "metrics": mapping("metrics by name, e.g. psnr: {type: calculate_psnr, crop_border: 4}",
                       Section(patterns=(("*", mapping("one metric", METRIC, component="metrics")),),
                               title="val.metrics"), nullable=True),
    "tile": mapping("test in tiles to bound memory", TILE, nullable=True),
    "self_ensemble": boolean("average the 8 flips/rotations (x8 cost)"),
}, title="val")

WANDB = Section({
    "project": text("wandb project (null: no wandb)", nullable=True),
    "resume_id": text("wandb run to resume", nullable=True),
    "entity": text("wandb entity (user or team)", nullable=True),
}, title="logger.wandb")

LOGGER = Section({
    "print_freq": integer("log every this many iterations", 1, example="100"),
    "save_checkpoint_freq": integer("save weights and state every this many iterations", 1, example="5000"),
    "use_tb_logger": boolean("write TensorBoard logs"),
    "wandb": mapping("Weights & Biases logging", WANDB, nullable=True),
    "save_format": choice("weights file format", "pth", "safetensors"),
    "keep_last": integer("keep only the newest N checkpoints (0: keep all)", 0, example="3"),
}, title="logger")

PATH = Section({
    "resume_state": text("training state to resume (absent: start afresh; --auto_resume finds one)",
                         nullable=True),
    "ignore_resume_networks": listing("networks not loaded from the resumed state", nullable=True),
}, patterns=(
    ("pretrain_network_*", text("weights loaded into network_<net> before the run", nullable=True)),
    ("strict_load_*", boolean("require every weight of network_<net> to match")),
    ("param_key_*", text("key of the weights in the checkpoint (params, params_ema)", nullable=True)),
    ("*root*", text("filled by srode")),
    ("models", text("filled by srode")),
    ("training_states", text("filled by srode")),
    ("log", text("filled by srode")),
    ("visualization", text("filled by srode")),
), title="path")

DIST_PARAMS = Section({
    "backend": choice("torch.distributed backend", "nccl", "gloo"),
    "port": integer("rendezvous port", 1),
}, title="dist_params")

NETWORK = Section({"type": text("arch class (`basicsr plugins list`)", example="EDSR", required=True)},
                  title="network_<net>")

NAME_DOC = "experiment name: the folder under experiments/ or results/ (no path separators, not '.' or '..')"

TOP = Section({
    "name": text(NAME_DOC, example="EDSR_x4", required=True),
    "model_type": text("model class (`basicsr plugins list`)", example="SRModel", required=True),
    "scale": integer("upscaling factor", 1, example="4"),
    "num_gpu": integer("CUDA devices: auto (all visible, CPU when none) or a number (0: CPU)", 0,
                       choices=("auto",), nullable=True),
    "manual_seed": integer("random seed (absent: a random one, logged)", 0, nullable=True, example="0"),
    "find_unused_parameters": boolean("DDP: allow parameters without gradients"),
    "datasets": mapping("datasets by phase: train, val*, test*",
                        Section(patterns=(("*", mapping("one dataset", DATASET, component="datasets")),),
                                title="datasets"), required=True),
    "train": mapping("training settings", TRAIN),
    "val": mapping("validation settings", VAL, nullable=True),
    "logger": mapping("logging and checkpoints", LOGGER),
    "path": mapping("weights to load and resume states", PATH),
    "dist_params": mapping("distributed settings", DIST_PARAMS),
    "network_g": mapping("the generator: `type:` plus its constructor arguments", NETWORK, required=True,
                         component="archs", example="{type: EDSR, ...}"),
}, patterns=(
    ("network_*", mapping("a network: `type:` plus its constructor arguments", NETWORK, component="archs")),
), title="top level")

SECTIONS: dict[str, Section] = {
    "top": TOP, "datasets": DATASET, "io_backend": IO_BACKEND, "train": TRAIN, "optim": OPTIMIZER, "loss": LOSS,
    "scheduler": SCHEDULER, "val": VAL, "metric": METRIC, "tile": TILE, "logger": LOGGER, "wandb": WANDB,
    "path": PATH, "dist_params": DIST_PARAMS,
}
