"""Non-local attention: the memory-efficient path against an explicit softmax written out here."""

from __future__ import annotations

import pytest
import torch
from srode_rk4gan.attention import NonLocalAttention, build_attention

from srode_plugins.errors import OptionError


def explicit_nonlocal(block: NonLocalAttention, x: torch.Tensor) -> torch.Tensor:
    """z = x + W_z(sum_j exp(f_ij) g(x_j) / sum_j exp(f_ij)) over the whole map, written with exp and sums."""
    b, c, h, w = x.shape
    if block.kind == "embedded":
        theta, phi = block.theta(x).flatten(2), block.phi(x).flatten(2)
    else:
        theta, phi = x.flatten(2), x.flatten(2)
    g = block.g(x).flatten(2)  # (B, C/2, HW)
    logits = torch.einsum("bci,bcj->bij", theta, phi)
    weights = torch.exp(logits - logits.amax(dim=-1, keepdim=True))
    weights = weights / weights.sum(dim=-1, keepdim=True)
    y = torch.einsum("bij,bcj->bci", weights, g).reshape(b, -1, h, w)
    return x + block.w_z(y)


def explicit_region_nonlocal(block: NonLocalAttention, x: torch.Tensor, window: int) -> torch.Tensor:
    """Region-level non-local (SAN): the explicit formula on each window-sized crop, border crops smaller."""
    out = torch.empty_like(x)
    for top in range(0, x.shape[-2], window):
        for left in range(0, x.shape[-1], window):
            crop = (..., slice(top, top + window), slice(left, left + window))
            out[crop] = explicit_nonlocal(block, x[crop].contiguous())
    return out


def make_block(kind: str, window: int | None, implementation: str) -> NonLocalAttention:
    torch.manual_seed(0)
    return NonLocalAttention(16, kind, window, implementation).double()


@pytest.mark.parametrize("implementation", ["sdpa", "naive"])
@pytest.mark.parametrize("kind", ["gaussian", "embedded"])
def test_global_nonlocal_equals_explicit_softmax(kind: str, implementation: str) -> None:
    block = make_block(kind, None, implementation)
    x = 0.3 * torch.randn(2, 16, 9, 7, dtype=torch.float64)

    torch.testing.assert_close(block(x), explicit_nonlocal(block, x))


@pytest.mark.parametrize("implementation", ["sdpa", "naive"])
@pytest.mark.parametrize("kind", ["gaussian", "embedded"])
def test_windowed_nonlocal_with_padding_equals_explicit_softmax_per_region(kind: str, implementation: str) -> None:
    block = make_block(kind, 4, implementation)
    x = 0.3 * torch.randn(2, 16, 10, 13, dtype=torch.float64)  # neither side a multiple of 4: padded, masked keys

    torch.testing.assert_close(block(x), explicit_region_nonlocal(block, x, 4))


def test_window_larger_than_the_map_is_global_attention() -> None:
    block = make_block("embedded", 64, "sdpa")
    x = torch.randn(1, 16, 6, 5, dtype=torch.float64)

    torch.testing.assert_close(block(x), explicit_nonlocal(block, x))


def test_sdpa_and_naive_gradients_agree_in_float32() -> None:
    sdpa, naive = make_block("embedded", 5, "sdpa").float(), make_block("embedded", 5, "naive").float()
    x = torch.randn(2, 16, 8, 11)
    sdpa(x).square().sum().backward()
    naive(x).square().sum().backward()

    for (name, p_sdpa), p_naive in zip(sdpa.named_parameters(), naive.parameters(), strict=True):
        torch.testing.assert_close(p_sdpa.grad, p_naive.grad, rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("none", []),
        ("channel", ["ChannelAttention"]),
        ("spatial", ["NonLocalAttention"]),
        ("dual", ["NonLocalAttention", "ChannelAttention"]),
    ],
)
def test_attention_modes_put_spatial_before_channel(mode: str, expected: list[str]) -> None:
    tail = build_attention(mode, 16, 8, "gaussian", None, "sdpa")

    assert [type(m).__name__ for m in tail.children()] == expected
    x = torch.randn(1, 16, 4, 4)
    assert tail(x).shape == x.shape


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"kind": "dot"}, "nonlocal_kind"), ({"implementation": "flash"}, "nonlocal_impl"), ({"window": 0}, "window")],
)
def test_bad_nonlocal_options_name_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        NonLocalAttention(16, **kwargs)


def test_channels_last_input_gives_the_same_result() -> None:
    # the engine's `train.channels_last` hands the blocks NHWC-strided tensors
    block = make_block("gaussian", 4, "sdpa")
    x = torch.randn(2, 16, 9, 10, dtype=torch.float64)

    torch.testing.assert_close(block(x.contiguous(memory_format=torch.channels_last)), block(x))
