"""`train.amp: auto` and `train.channels_last: auto`: what is fast on THIS hardware, decided once per run.

bf16 autocast is a large win where the hardware multiplies bf16 natively (CPUs with AVX512-BF16 or AMX,
Arm CPUs with the BF16 extension, CUDA GPUs of compute capability 8.0 and newer) and a large loss elsewhere:
on an AVX2-only CPU every bf16 convolution is emulated and a training step is 4-8x slower than fp32.
The decision reads capability facts only (no timing), so it is repeatable and testable with injected facts:
`CpuFacts.detect()` / `CudaFacts.detect()` read the machine, `resolve()` is a pure function of them.

Emulate an AVX2-only CPU on an AVX512 machine with `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`:
both variables are read, so the emulation resolves as a real AVX2 machine does.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srode_plugins.errors import OptionError

AMP_CHOICES = ("bf16", "fp16")
AUTO = "auto"
# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA) that include native bf16 dot products (AVX512_CORE_BF16 and up).
_ONEDNN_BF16_ISA_MARKERS = ("BF16", "AMX", "FP16", "AVX10", "ALL", "DEFAULT")
_X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class CpuFacts:
    """What decides bf16 on a CPU.

    capability: ATen's kernel level, `torch.backends.cpu.get_cpu_capability()` ("AVX2", "AVX512", "DEFAULT",
    "SVE256", ...); it honours `ATEN_CPU_CAPABILITY`. flags: the CPU's feature flags (`/proc/cpuinfo`
    "flags" on x86, "Features" on Arm); empty when unknown. onednn_max_isa: `ONEDNN_MAX_CPU_ISA` or "".
    """

    machine: str
    capability: str
    flags: frozenset[str]
    onednn_max_isa: str = ""

    @classmethod
    def detect(cls) -> CpuFacts:
        import torch

        return cls(machine=platform.machine().lower(), capability=torch.backends.cpu.get_cpu_capability(),
                   flags=_cpu_flags(), onednn_max_isa=os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper())

    @property
    def is_x86(self) -> bool:
        return self.machine in ("x86_64", "amd64", "i386", "i686")

    @property
    def bf16_instructions(self) -> list[str]:
        """The bf16 instruction sets the CPU reports (x86: avx512_bf16 / amx_bf16; Arm: bf16)."""
        wanted = _X86_BF16_FLAGS if self.is_x86 else ("bf16",)
        return [flag for flag in wanted if flag in self.flags]

    @property
    def native_bf16(self) -> bool:
        """True when bf16 convolutions run on bf16 hardware (not emulated through fp32)."""
        if not self.bf16_instructions:
            return False
        if self.is_x86:
            isa_allows = not self.onednn_max_isa or any(m in self.onednn_max_isa for m in _ONEDNN_BF16_ISA_MARKERS)
            return self.capability.upper().startswith("AVX512") and isa_allows
        return True

    def describe(self) -> str:
        bf16 = "+".join(self.bf16_instructions) or "no bf16 instructions"
        limits = f", ONEDNN_MAX_CPU_ISA={self.onednn_max_isa}" if self.onednn_max_isa else ""
        return f"CPU {self.machine} {self.capability} ({bf16}{limits})"


@dataclass(frozen=True)
class CudaFacts:
    """What decides the precision on a CUDA device: its name and compute capability (major, minor)."""

    name: str
    capability: tuple[int, int]

    @classmethod
    def detect(cls, index: int = 0) -> CudaFacts:
        import torch

        return cls(name=torch.cuda.get_device_name(index), capability=torch.cuda.get_device_capability(index))

    @property
    def native_bf16(self) -> bool:
        return self.capability >= (8, 0)

    @property
    def tensor_cores(self) -> bool:
        return self.capability >= (7, 0)

    def describe(self) -> str:
        return f"CUDA {self.name} (compute capability {self.capability[0]}.{self.capability[1]})"


@dataclass(frozen=True)
class Precision:
    """The resolved engine choice: `amp` is "bf16", "fp16" or None (fp32); `reason` is the log line's why."""

    amp: str | None
    channels_last: bool
    reason: str

    def log_line(self) -> str:
        return (f"Precision: amp {self.amp or 'fp32'}, channels_last {str(self.channels_last).lower()} "
                f"({self.reason})")


def auto_amp(facts: CpuFacts | CudaFacts) -> str | None:
    """What `amp: auto` means on a device: bf16 where native, fp16 (with loss scaling) on CUDA tensor cores,
    else None (fp32)."""
    if facts.native_bf16:
        return "bf16"
    if isinstance(facts, CudaFacts) and facts.tensor_cores:
        return "fp16"
    return None


def auto_channels_last(facts: CpuFacts | CudaFacts, amp: str | None) -> bool:
    """channels_last where it measured faster: with 16-bit autocast on native hardware (oneDNN's bf16 and
    cuDNN's tensor-core kernels are NHWC kernels; NCHW pays a reorder per convolution). In fp32 it measured
    neutral (0.99x on AVX2, BENCHMARKS.md), so the BasicSR layout stays."""
    if amp is None:
        return False
    if isinstance(facts, CudaFacts):
        return facts.tensor_cores
    return amp == "bf16" and facts.native_bf16


def resolve(amp: Any, channels_last: Any, facts: CpuFacts | CudaFacts, file: str | None = None) -> Precision:
    """Turn the option values (auto / explicit / absent) into the run's precision. Explicit values win.

    Raises OptionError (naming `file` and the key) for a value that is neither auto, an explicit choice nor absent.
    """
    check_values(amp, channels_last, file)
    why = []
    if amp == AUTO:
        amp = auto_amp(facts)
        why.append(f"amp auto: {_amp_reason(facts, amp)}")
    else:
        amp = amp or None
    if channels_last == AUTO:
        channels_last = auto_channels_last(facts, amp)
        why.append("channels_last auto: " + ("NHWC kernels for 16-bit autocast" if channels_last
                                               else "no measured gain in fp32" if amp is None
                                               else "no NHWC gain expected here"))
    else:
        channels_last = bool(channels_last)
    explicit = "explicit values from the option file" if not why else "; ".join(why)
    return Precision(amp=amp, channels_last=channels_last, reason=f"{facts.describe()}: {explicit}")


def check_values(amp: Any, channels_last: Any, file: str | None = None) -> None:
    if amp not in (None, False, AUTO, *AMP_CHOICES):
        raise OptionError(f"value {amp!r}: use auto (what is fast on this hardware), bf16, fp16, or leave it out "
                          "(fp32)", file=file, key="train.amp")
    if channels_last is not None and channels_last is not True and channels_last is not False \
            and channels_last != AUTO:
        raise OptionError(f"value {channels_last!r}: use auto, true or false", file=file, key="train.channels_last")


def _amp_reason(facts: CpuFacts | CudaFacts, amp: str | None) -> str:
    if amp == "bf16":
        return "native bf16"
    if amp == "fp16":
        return "no native bf16, fp16 tensor cores (with loss scaling)"
    if isinstance(facts, CpuFacts) and facts.bf16_instructions:
        return "bf16 instructions present but disabled for this process (capability / ONEDNN_MAX_CPU_ISA), so fp32"
    return "no native bf16 (it would be emulated, 4-8x slower), so fp32"


def detect(device_type: str, index: int = 0) -> CpuFacts | CudaFacts:
    return CudaFacts.detect(index) if device_type == "cuda" else CpuFacts.detect()


def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def environment_report() -> list[tuple[str, str]]:
    """(label, value) rows of `basicsr env`: versions, each device's bf16 support and what `auto` resolves to."""
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    rows = [("python", platform.python_version()), ("torch", torch.__version__),
            ("CUDA (torch build)", torch.version.cuda or "none (CPU build)"),
            ("cuDNN", str(cudnn) if cudnn else "none")]
    devices: list[tuple[str, CpuFacts | CudaFacts]] = [("cpu", CpuFacts.detect())]
    if torch.cuda.is_available():
        devices += [(f"cuda:{i}", CudaFacts.detect(i)) for i in range(torch.cuda.device_count())]
    else:
        rows.append(("CUDA devices", "none visible (training runs on the CPU)"))
    cpu = devices[0][1]
    assert isinstance(cpu, CpuFacts)
    rows += [("CPU capability (ATen)", cpu.capability),
             ("CPU bf16 instructions", ", ".join(cpu.bf16_instructions) or "none"),
             ("CPU AMX", "yes" if any(f.startswith("amx") for f in cpu.flags) else "no")]
    if cpu.onednn_max_isa:
        rows.append(("ONEDNN_MAX_CPU_ISA", cpu.onednn_max_isa))
    for name, facts in devices:
        choice = resolve(AUTO, AUTO, facts)
        rows += [(f"{name}: device", facts.describe()),
                 (f"{name}: native bf16", "yes" if facts.native_bf16 else "no"),
                 (f"{name}: amp auto ->", choice.amp or "fp32"),
                 (f"{name}: channels_last auto ->", str(choice.channels_last).lower())]
    return rows
