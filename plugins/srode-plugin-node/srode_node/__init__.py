"""srode-plugin-node: Neural-ODE single-image super-resolution (Le Scao 2020) for srode.

Light on purpose (no torch / basicsr import): discovery may locate this package. The components are
`srode_node.archs:NODESRNet` and `srode_node.models:NODESRModel`.
"""

__version__ = "0.1.0"
