"""The training / testing engine: BasicSR's pipeline with device choice, AMP, channels_last, compile,
gradient clipping, a non-finite-loss guard, atomic checkpoints and resumable interrupts."""
