"""Data for srode: the embedded demo dataset and `basicsr data prepare` (light to import: no torch, no basicsr)."""

from srode_plugins.data.demo import DemoPaths, demo_dataset, demo_options, resolve_demo_uri
from srode_plugins.data.prepare import DataError, PreparedPaths, prepare_dataset

__all__ = [
    "DataError",
    "DemoPaths",
    "PreparedPaths",
    "demo_dataset",
    "demo_options",
    "prepare_dataset",
    "resolve_demo_uri",
]
