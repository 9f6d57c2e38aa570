"""The run's log file, also when BasicSR's root logger was set up earlier in the same process.

basicsr.utils.get_root_logger configures the 'basicsr' logger only on its first call: a later training run
in the same process (tests, the conformance kit, `basicsr demo`) would get no log file and, if the first
call came without a file, no INFO messages at all.
"""

from __future__ import annotations

import logging
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s: %(message)s"


def run_logger(log_file: Path, rank: int) -> logging.Logger:
    """The 'basicsr' logger writing INFO to `log_file` on rank 0 (ERROR only on other ranks)."""
    from basicsr.utils import get_root_logger

    logger = get_root_logger(logger_name="basicsr", log_level=logging.INFO, log_file=str(log_file))
    if rank != 0:
        logger.setLevel(logging.ERROR)
        return logger
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler):  # BasicSR's first file or an earlier run's
            handler.close()
            logger.removeHandler(handler)
    handler = logging.FileHandler(log_file, "a")
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger
