"""Test-time inference helpers that work with any SR arch: geometric self-ensemble, tiled forward, image folders.

Everything here treats the network as a black box `net(x) -> y` with x of shape (B, C, H, W) and y of shape
(B, C_out, scale * H, scale * W), values in [0, 1]. No basicsr import: `basicsr infer` and `basicsr test` call in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import Tensor

SRForward = Callable[[Tensor], Tensor]


def _dihedral_transforms() -> list[tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]]:
    # The 8 elements of the square's symmetry group as (forward, inverse): k quarter turns, with or without
    # a horizontal flip applied first. Undoing: turn back, then flip again.
    transforms = []
    for flip in (False, True):
        for quarter_turns in range(4):

            def forward(t: Tensor, k: int = quarter_turns, f: bool = flip) -> Tensor:
                t = t.flip(-1) if f else t
                return torch.rot90(t, k, dims=(-2, -1))

            def inverse(t: Tensor, k: int = quarter_turns, f: bool = flip) -> Tensor:
                t = torch.rot90(t, -k, dims=(-2, -1))
                return t.flip(-1) if f else t

            transforms.append((forward, inverse))
    return transforms


def _pairwise_mean(tensors: Iterable[Tensor], count: int) -> Tensor:
    """Mean of `count` tensors summed as a balanced binary tree, holding at most log2(count) + 1 of them.

    For a power-of-two count of identical tensors every partial sum is exact, so the mean returns the input
    bit for bit (a running sum would round at 3x, 5x, ...).
    """
    levels: list[tuple[int, Tensor]] = []
    for tensor in tensors:
        level, partial = 0, tensor
        while levels and levels[-1][0] == level:
            partial = levels.pop()[1] + partial
            level += 1
        levels.append((level, partial))
    total = levels.pop()[1]
    while levels:
        total = levels.pop()[1] + total
    return total / count


def self_ensemble(net: SRForward, x: Tensor) -> Tensor:
    """Geometric self-ensemble (Lim et al. 2017, "x8"): average of net over the 8 flips / quarter turns of x.

    Each transformed input goes through `net` on its own (non-square inputs change shape under a quarter
    turn), its output is transformed back, and the 8 outputs are averaged.

    Args:
        net: any SR forward, (B, C, H, W) -> (B, C_out, s*H, s*W); a module or e.g. a tiled forward.
        x: (B, C, H, W), values in [0, 1].

    Returns:
        (B, C_out, s*H, s*W). Equal to net(x) for a net that commutes with flips and rotations.
    """
    transforms = _dihedral_transforms()
    outputs = (inverse(net(forward(x))) for forward, inverse in transforms)
    return _pairwise_mean(outputs, len(transforms))


# upsample_images takes a boolean named `self_ensemble` (the CLI flag), which hides the function there.
_geometric_self_ensemble = self_ensemble


def _tile_starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _edge_ramp(length: int, margin: int, ramp: int, start_inside: bool, end_inside: bool) -> Tensor:
    """Blend weights along one tile axis, in output pixels: 0 for `margin` pixels at an edge inside the image,
    then a linear rise over `ramp` pixels to 1; edges on the image border keep weight 1."""
    position = torch.arange(length, dtype=torch.float64)
    weight = torch.ones(length, dtype=torch.float64)
    rise = (position - margin + 1) / (ramp + 1)
    if start_inside:
        weight = torch.minimum(weight, rise.clamp(0, 1))
    if end_inside:
        weight = torch.minimum(weight, rise.flip(0).clamp(0, 1))
    return weight


def tiled_forward(net: SRForward, x: Tensor, scale: int, tile: int, overlap: int) -> Tensor:
    """Run `net` on overlapping tiles of x and blend the outputs, so memory is bounded by the tile size.

    Tiles of `tile` x `tile` LR pixels are taken every `tile - overlap` pixels (the last one flush with the
    border). Inside each overlap band the outer quarter next to a tile's inner edge is discarded (it lacks
    context) and the middle half cross-fades linearly between neighbours; weights are normalised per pixel.
    Hence the result equals net(x) up to float rounding when the net's receptive-field radius is at most
    overlap // 4 LR pixels (e.g. a stack of n 3x3 convs has radius n), and has no visible seams otherwise.

    Args:
        net: SR forward, (B, C, h, w) -> (B, C_out, scale*h, scale*w).
        x: (B, C, H, W), values in [0, 1].
        scale: the net's upscaling factor.
        tile: tile side in LR pixels (> overlap); an image no larger than a tile runs in one piece.
        overlap: LR pixels shared by neighbouring tiles (>= 0).

    Returns:
        (B, C_out, scale*H, scale*W).
    """
    if overlap < 0 or tile <= overlap:
        raise ValueError(f"tiled_forward needs 0 <= overlap < tile, got tile={tile}, overlap={overlap}.")
    height, width = x.shape[-2:]
    if height <= tile and width <= tile:
        return net(x)
    stride = tile - overlap
    margin, ramp = (overlap // 4) * scale, (overlap - 2 * (overlap // 4)) * scale
    output: Tensor | None = None
    weight_sum: Tensor | None = None
    row_starts, col_starts = _tile_starts(height, tile, stride), _tile_starts(width, tile, stride)
    for top in row_starts:
        for left in col_starts:
            patch = x[..., top : top + tile, left : left + tile]
            predicted = net(patch)
            expected = (scale * patch.shape[-2], scale * patch.shape[-1])
            if tuple(predicted.shape[-2:]) != expected:
                raise ValueError(
                    f"tiled_forward: the net turned a {tuple(patch.shape[-2:])} tile into "
                    f"{tuple(predicted.shape[-2:])}, expected {expected} for scale={scale}; pass the net's scale."
                )
            if output is None:
                output = predicted.new_zeros((*predicted.shape[:-2], scale * height, scale * width))
                weight_sum = predicted.new_zeros((scale * height, scale * width))
            rows = _edge_ramp(expected[0], margin, ramp, top > 0, top + tile < height)
            cols = _edge_ramp(expected[1], margin, ramp, left > 0, left + tile < width)
            weight = torch.outer(rows, cols).to(predicted)
            out_rows = slice(scale * top, scale * top + expected[0])
            out_cols = slice(scale * left, scale * left + expected[1])
            output[..., out_rows, out_cols] += predicted * weight
            weight_sum[out_rows, out_cols] += weight
    assert output is not None and weight_sum is not None
    return output / weight_sum


def read_image(path: Path) -> Tensor:
    """Read an image file as a (1, 3, H, W) float32 RGB tensor in [0, 1] (8- or 16-bit; grey becomes RGB)."""
    import cv2
    import numpy as np

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FileNotFoundError(f"Cannot read image '{path}': missing or not an image cv2 can decode.")
    peak = 65535.0 if image.dtype == np.uint16 else 255.0
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    rgb = np.ascontiguousarray(image[..., ::-1], dtype=np.float32) / peak
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)


def write_image(image: Tensor, path: Path) -> Path:
    """Write a (1, 3, H, W) or (3, H, W) RGB tensor in [0, 1] as an 8-bit image (format from the suffix)."""
    import cv2

    rgb = image.detach().squeeze(0).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), rgb[..., ::-1]):
        raise OSError(f"Cannot write image '{path}': check that the folder is writable and the suffix is known.")
    return path


def _output_paths(inputs: list[Path], output_dir: Path) -> list[Path]:
    outputs = [output_dir / f"{path.stem}.png" for path in inputs]
    by_output: dict[Path, Path] = {}
    for source, target in zip(inputs, outputs, strict=True):
        if target in by_output:
            raise ValueError(
                f"Inputs '{by_output[target]}' and '{source}' would both be written to '{target}'; "
                "rename one of them or run them into separate output folders."
            )
        if target.resolve() == source.resolve():
            raise ValueError(f"Output '{target}' would overwrite its input; choose another output folder.")
        by_output[target] = source
    return outputs


def upsample_images(
    net: torch.nn.Module,
    inputs: list[Path],
    output_dir: Path,
    scale: int,
    tile: int | None = None,
    overlap: int = 16,
    self_ensemble: bool = False,
    device: torch.device | str = "cpu",
) -> list[Path]:
    """Super-resolve image files with `net` and write `<output_dir>/<input stem>.png`, with a progress bar.

    Args:
        net: SR network taking (1, 3, h, w) RGB in [0, 1] and returning (1, 3, scale*h, scale*w).
        inputs: image files cv2 can read (PNG, JPG, ...); alpha is dropped, grey becomes RGB.
        output_dir: created when missing.
        scale: the net's upscaling factor.
        tile: tile side in LR pixels for `tiled_forward`; None runs each image whole.
        overlap: LR pixels shared by neighbouring tiles (ignored without `tile`).
        self_ensemble: average over the 8 flips / quarter turns (8x the compute).
        device: where the net runs.

    Returns:
        The written paths, in the order of `inputs`.
    """
    from tqdm import tqdm

    outputs = _output_paths(inputs, output_dir)
    net = net.to(device).eval()

    def forward(x: Tensor) -> Tensor:
        return tiled_forward(net, x, scale, tile, overlap) if tile else net(x)

    with torch.inference_mode():
        for source, target in tqdm(list(zip(inputs, outputs, strict=True)), desc="upsampling", unit="image"):
            x = read_image(source).to(device)
            y = _geometric_self_ensemble(forward, x) if self_ensemble else forward(x)
            write_image(y, target)
    return outputs
