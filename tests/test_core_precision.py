"""`train.amp: auto` / `train.channels_last: auto`: resolved from injected hardware facts, and on this machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from srode_plugins.engine.precision import CpuFacts, CudaFacts, resolve
from srode_plugins.errors import OptionError

AVX2_EPYC = CpuFacts("x86_64", "AVX2", frozenset({"sse4_2", "avx", "avx2", "fma"}))
AVX512_NO_BF16 = CpuFacts("x86_64", "AVX512", frozenset({"avx2", "avx512f", "avx512bw", "avx512_vnni"}))
SAPPHIRE_RAPIDS = CpuFacts("x86_64", "AVX512", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}))
ZEN4 = CpuFacts("x86_64", "AVX512", frozenset({"avx2", "avx512f", "avx512_bf16"}))
GRAVITON3 = CpuFacts("aarch64", "SVE256", frozenset({"fp", "asimd", "sve", "bf16", "i8mm"}))
GRAVITON2 = CpuFacts("aarch64", "DEFAULT", frozenset({"fp", "asimd", "dotprod"}))
UNKNOWN_CPU = CpuFacts("arm64", "DEFAULT", frozenset())
A100, V100, P100 = CudaFacts("A100", (8, 0)), CudaFacts("V100", (7, 0)), CudaFacts("P100", (6, 0))


@pytest.mark.parametrize(
    ("facts", "amp", "channels_last"),
    [
        (AVX2_EPYC, None, False),
        (AVX512_NO_BF16, None, False),
        (SAPPHIRE_RAPIDS, "bf16", True),
        (ZEN4, "bf16", True),
        (GRAVITON3, "bf16", True),
        (GRAVITON2, None, False),
        (UNKNOWN_CPU, None, False),
        (A100, "bf16", True),
        (V100, "fp16", True),
        (P100, None, False),
    ],
)
def test_auto_picks_bf16_only_where_the_hardware_multiplies_bf16_natively(facts, amp, channels_last) -> None:
    choice = resolve("auto", "auto", facts)
    assert (choice.amp, choice.channels_last) == (amp, channels_last)
    assert facts.describe() in choice.log_line()


def test_the_avx2_emulation_variables_turn_a_bf16_cpu_into_an_fp32_one() -> None:
    # ATEN_CPU_CAPABILITY=avx2 lowers the capability; ONEDNN_MAX_CPU_ISA=AVX2 alone must also be enough
    emulated_aten = CpuFacts("x86_64", "AVX2", ZEN4.flags)
    emulated_onednn = CpuFacts("x86_64", "AVX512", ZEN4.flags, onednn_max_isa="AVX2")
    capped_at_bf16 = CpuFacts("x86_64", "AVX512", ZEN4.flags, onednn_max_isa="AVX512_CORE_BF16")
    assert resolve("auto", "auto", emulated_aten).amp is None
    assert resolve("auto", "auto", emulated_onednn).amp is None
    assert "disabled for this process" in resolve("auto", "auto", emulated_onednn).reason
    assert resolve("auto", "auto", capped_at_bf16).amp == "bf16"


@pytest.mark.parametrize("facts", [AVX2_EPYC, ZEN4, V100])
def test_explicit_values_always_win_over_auto(facts) -> None:
    assert resolve("bf16", False, facts).amp == "bf16"
    assert resolve("fp16", True, facts).channels_last is True
    assert resolve(None, None, facts).amp is None
    assert resolve(False, "auto", facts).channels_last is False  # fp32: NCHW
    assert "explicit" in resolve("bf16", True, facts).reason


def test_auto_channels_last_follows_an_explicit_amp() -> None:
    assert resolve("bf16", "auto", ZEN4).channels_last is True
    assert resolve("bf16", "auto", AVX2_EPYC).channels_last is False  # emulated bf16: no NHWC kernel to win with


@pytest.mark.parametrize(("amp", "channels_last", "key"), [("bf17", "auto", "train.amp"), ("yes", "auto", "train.amp"),
                                                            ("auto", "yes", "train.channels_last"),
                                                            ("auto", 1, "train.channels_last")])
def test_a_wrong_value_names_the_file_and_key(amp, channels_last, key) -> None:
    with pytest.raises(OptionError, match=rf"x\.yml: option '{key}': value"):
        resolve(amp, channels_last, AVX2_EPYC, file="x.yml")


def _env_report(extra_env: dict[str, str]) -> dict[str, str]:
    """`basicsr env` run in a fresh process, as {label: value}."""
    env = {**os.environ, **extra_env}
    result = subprocess.run([sys.executable, "-m", "srode_plugins", "env"], env=env, capture_output=True, text=True,
                            timeout=300, check=True)
    return dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in result.stdout.splitlines() if line.strip())


def test_basicsr_env_under_the_avx2_emulation_resolves_auto_to_fp32() -> None:
    lines = _env_report({"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"})
    assert lines["CPU capability (ATen)"] == "AVX2"
    assert lines["cpu: native bf16"] == "no"
    assert lines["cpu: amp auto ->"] == "fp32"
    assert lines["cpu: channels_last auto ->"] == "false"
    assert lines["torch"] == torch.__version__


def test_basicsr_env_reports_what_the_engine_resolves_on_this_machine() -> None:
    lines = _env_report({})
    expected = resolve("auto", "auto", CpuFacts.detect())
    assert lines["cpu: amp auto ->"] == (expected.amp or "fp32")
    assert lines["CPU capability (ATen)"] == torch.backends.cpu.get_cpu_capability()
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if not re.search(r"\b(avx512_bf16|amx_bf16|bf16)\b", cpuinfo):
        assert expected.amp is None  # a CPU without bf16 instructions never resolves to bf16
