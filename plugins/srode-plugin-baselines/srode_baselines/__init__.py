"""srode-plugin-baselines: EDSR and RRDB (BasicSR's own archs) as first-class srode baselines.

Ships option files (EDSR-baseline / EDSR at x2, x3, x4; RRDB with 1 to 23 blocks; demo variants), the
x2 -> x3/x4 weight initialisation (`basicsr baselines init-from`) and a self-check. Light on purpose:
no torch or basicsr import here (plugin discovery may import this package).
"""

__version__ = "0.1.0"
