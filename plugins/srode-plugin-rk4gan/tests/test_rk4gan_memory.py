"""Peak memory of 512x512 LR inference, measured in a fresh process.

The peak is VmHWM from /proc/self/status: the high-water mark of the process's own memory map, which starts
afresh at exec. (ru_maxrss would not do: Linux carries the parent's peak RSS into an exec'd child, so under a
large pytest process it reports the parent's memory.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

GIB = 1024**3
MIB = 1024**2
# Both child scripts start with this: the process's memory high-water mark (VmHWM) in bytes.
HIGH_WATER_MARK = textwrap.dedent(
    """
    def high_water_mark():
        return [int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
    """
)
# A small generator (memory, not quality, is under test); every block carries dual attention, so every block
# runs the windowed non-local attention over the full 512x512 map.
CHILD = HIGH_WATER_MARK + textwrap.dedent(
    """
    import json, sys, torch
    from srode_rk4gan.generator_arch import RK4DualAttnRDN
    torch.set_num_threads(2)
    net = RK4DualAttnRDN(upscale=4, num_feat=16, num_block=2, num_layer=2, growth_rate=8, integrator="rk4",
                         attention="dual", nonlocal_window=32, nonlocal_impl="sdpa").eval()
    with torch.inference_mode():
        out = net(torch.rand(1, 3, 512, 512))
    print(json.dumps({"shape": list(out.shape), "finite": bool(torch.isfinite(out).all()),
                      "peak_bytes": high_water_mark()}))
    """
)

# One global non-local call over a 128x128 map (16384 tokens, so the naive (L, L) float32 matrix alone is 1 GiB),
# each kind / implementation in a fresh process: the high-water mark only ever rises, so cases must not share one.
GLOBAL_CHILD = HIGH_WATER_MARK + textwrap.dedent(
    """
    import json, sys, torch
    from srode_rk4gan.attention import NonLocalAttention
    torch.set_num_threads(2)
    kind, implementation = sys.argv[1], sys.argv[2]
    x = torch.randn(1, 16, 128, 128)
    block = NonLocalAttention(16, kind, None, implementation).eval()
    before = high_water_mark()
    with torch.inference_mode():
        block(x)
    print(json.dumps(high_water_mark() - before))
    """
)


def global_attention_growth(kind: str, implementation: str) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", GLOBAL_CHILD, kind, implementation], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(json.loads(done.stdout.strip().splitlines()[-1]))


def test_sdpa_global_attention_never_holds_the_token_by_token_matrix() -> None:
    assert global_attention_growth("embedded", "naive") > GIB  # the measurement sees the matrix when it exists
    assert global_attention_growth("gaussian", "sdpa") < 256 * MIB
    assert global_attention_growth("embedded", "sdpa") < 256 * MIB


@pytest.mark.slow
def test_512x512_lr_inference_with_windowed_sdpa_stays_under_8_gib() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["shape"] == [1, 3, 2048, 2048] and report["finite"]
    # a global (HW x HW) float32 attention matrix at this size would take 2^36 * 4 bytes = 256 GiB
    assert report["peak_bytes"] < 8 * GIB, f"peak RSS {report['peak_bytes'] / GIB:.2f} GiB"
