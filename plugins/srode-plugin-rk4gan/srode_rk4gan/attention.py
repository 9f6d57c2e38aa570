"""Non-local spatial attention (Wang et al. 2018) without the O((HW)^2) matrix, and the spatial/channel pairs.

z_i = x_i + W_z( sum_j softmax_j(theta(x_i) . phi(x_j)) g(x_j) ), with g, W_z 1x1 convs (C -> C/2 -> C).
"gaussian": theta = phi = identity (f = exp(x_i . x_j), as in the report's code); "embedded": 1x1 convs C -> C/2.
The softmax is unscaled, exactly as written above.
"""

from __future__ import annotations

from srode_plugins.api import OptionError  # applies the BasicSR compat patches: import before basicsr

# isort: split
import torch
import torch.nn.functional as F
from basicsr.archs.rcan_arch import ChannelAttention
from torch import nn

NONLOCAL_KINDS: tuple[str, ...] = ("gaussian", "embedded")
NONLOCAL_IMPLEMENTATIONS: tuple[str, ...] = ("sdpa", "naive")
ATTENTION_MODES: tuple[str, ...] = ("none", "channel", "spatial", "dual")


def check_choice(value: str, choices: tuple[str, ...], option_key: str) -> None:
    """Raise OptionError naming `option_key` when `value` is not one of `choices`."""
    if value not in choices:
        raise OptionError(f"got '{value}'; choose one of {', '.join(choices)}.", key=option_key)


def attend(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_mask: torch.Tensor | None, implementation: str
) -> torch.Tensor:
    """softmax(query key^T) value, unscaled.

    Args:
        query, key: (N, 1, L, d); value: (N, 1, L, d) (same d, which keeps the CPU flash kernel usable).
        key_mask: None, or bool (N, 1, 1, L), False for keys to ignore (window padding).
        implementation: "sdpa" (torch's fused kernels: never stores the (L, L) matrix) or "naive".

    Returns:
        (N, 1, L, d).
    """
    if implementation == "sdpa":
        return F.scaled_dot_product_attention(query, key, value, attn_mask=key_mask, scale=1.0)
    logits = query @ key.transpose(-1, -2)
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask, float("-inf"))
    return torch.softmax(logits, dim=-1) @ value


def _to_windows(x: torch.Tensor, window_h: int, window_w: int) -> torch.Tensor:
    """(B, d, H, W) with H, W multiples of the window -> (B * windows, 1, window_h * window_w, d)."""
    b, d, h, w = x.shape
    x = x.reshape(b, d, h // window_h, window_h, w // window_w, window_w).permute(0, 2, 4, 3, 5, 1)
    # contiguous: the fused (flash) kernels need a unit stride on d, else SDPA falls back to the (L, L) matrix
    return x.reshape(-1, 1, window_h * window_w, d).contiguous()


def _from_windows(tokens: torch.Tensor, batch: int, h: int, w: int, window_h: int, window_w: int) -> torch.Tensor:
    """Inverse of _to_windows: (B * windows, 1, window_h * window_w, d) -> (B, d, H, W)."""
    d = tokens.shape[-1]
    x = tokens.reshape(batch, h // window_h, w // window_w, window_h, window_w, d).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(batch, d, h, w)


class NonLocalAttention(nn.Module):
    """Non-local spatial attention block with its residual: (B, C, H, W) -> (B, C, H, W).

    Args:
        num_feat: C (even).
        kind: "gaussian" (theta = phi = x) or "embedded" (theta, phi 1x1 convs C -> C/2).
        window: None attends over the whole feature map; an int attends within non-overlapping
            window x window regions (SAN's region-level non-local), clamped to the map size. Maps that are
            not multiples are zero-padded and the padded keys masked out, so no real pixel is reweighted.
        implementation: "sdpa" (memory-efficient, default) or "naive" (materialises the (L, L) matrix;
            a reference for tests and benchmarks).
    """

    def __init__(
        self, num_feat: int, kind: str = "gaussian", window: int | None = None, implementation: str = "sdpa"
    ) -> None:
        super().__init__()
        check_choice(kind, NONLOCAL_KINDS, "nonlocal_kind")
        check_choice(implementation, NONLOCAL_IMPLEMENTATIONS, "nonlocal_impl")
        if window is not None and window < 1:
            raise OptionError(
                f"got {window}; use a positive window size in pixels, or null for global.", key="nonlocal_window"
            )
        inter_feat = num_feat // 2
        self.kind = kind
        self.window = window
        self.implementation = implementation
        self.g = nn.Conv2d(num_feat, inter_feat, 1)
        self.theta = nn.Conv2d(num_feat, inter_feat, 1) if kind == "embedded" else None
        self.phi = nn.Conv2d(num_feat, inter_feat, 1) if kind == "embedded" else None
        self.w_z = nn.Conv2d(inter_feat, num_feat, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, _, h, w = x.shape
        window_h, window_w = (h, w) if self.window is None else (min(self.window, h), min(self.window, w))
        pad_h, pad_w = (-h) % window_h, (-w) % window_w
        padded, key_mask = x, None
        if pad_h or pad_w:
            # padded positions are masked as keys and cropped as queries, so their values never matter
            padded = F.pad(x, (0, pad_w, 0, pad_h))
            valid = F.pad(x.new_ones(b, 1, h, w, dtype=torch.bool), (0, pad_w, 0, pad_h), value=False)
            key_mask = _to_windows(valid, window_h, window_w).transpose(-1, -2)
        if self.theta is None:
            # Attention weights sum to 1 over j and g is affine, so sum_j a_ij g(x_j) = g(sum_j a_ij x_j):
            # attending over x itself keeps query/key/value dims equal, which the CPU flash kernel needs.
            tokens = _to_windows(padded, window_h, window_w)
            attended = attend(tokens, tokens, tokens, key_mask, self.implementation)
        else:
            query, key, value = (
                _to_windows(projection(padded), window_h, window_w) for projection in (self.theta, self.phi, self.g)
            )
            attended = attend(query, key, value, key_mask, self.implementation)
        attended = _from_windows(attended, b, h + pad_h, w + pad_w, window_h, window_w)[..., :h, :w]
        if self.theta is None:
            attended = self.g(attended)
        return x + self.w_z(attended)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, window={self.window}, implementation={self.implementation}"


def build_attention(
    mode: str, num_feat: int, se_reduction: int, nonlocal_kind: str, nonlocal_window: int | None, nonlocal_impl: str
) -> nn.Module:
    """The block's attention tail: none | channel (SE) | spatial (non-local) | dual (spatial, then channel).

    Spatial before channel is the order the report found better. (B, C, H, W) -> (B, C, H, W).
    """
    check_choice(mode, ATTENTION_MODES, "attention")
    layers: list[nn.Module] = []
    if mode in ("spatial", "dual"):
        layers.append(NonLocalAttention(num_feat, nonlocal_kind, nonlocal_window, nonlocal_impl))
    if mode in ("channel", "dual"):
        if num_feat // se_reduction < 1:
            raise OptionError(
                f"got {se_reduction} for {num_feat} channels; use at most {num_feat}.", key="se_reduction"
            )
        layers.append(ChannelAttention(num_feat, squeeze_factor=se_reduction))
    return nn.Sequential(*layers) if layers else nn.Identity()
