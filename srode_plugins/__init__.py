"""srode: a BasicSR training/testing core with entry-point plugins.

Importing this package is light (no torch, no basicsr): the CLI's discovery commands rely on it.
The public API for plugins is `srode_plugins.api`.
"""

__version__ = "0.1.0"
API_VERSION = "1.0"
