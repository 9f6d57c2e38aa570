"""srode plugin: RK4 dual-attention RDN generator + SRGAN discriminator (light: imports neither torch nor basicsr)."""

__version__ = "0.1.0"
