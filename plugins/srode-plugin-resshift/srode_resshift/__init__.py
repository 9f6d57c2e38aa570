"""srode plugin: continuous-time ResShift (schedules, samplers, Swin-UNet, training model).

Kept light on purpose: discovery may import this package, so nothing heavy (torch, basicsr) is imported here.
"""

__version__ = "0.1.0"
