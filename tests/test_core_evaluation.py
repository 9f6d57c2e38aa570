"""SR evaluation protocol checked against independent numpy / scikit-image computations."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from rich.console import Console
from skimage.metrics import structural_similarity

from srode_plugins.evaluation import evaluate_folder, psnr_ssim, to_markdown, to_rich_table


def bt601_luma(bgr: np.ndarray) -> np.ndarray:
    """Y in [16, 235] from 8-bit BGR, ITU-R BT.601: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255."""
    blue, green, red = (bgr[..., i].astype(np.float64) for i in range(3))
    return 16.0 + (65.481 * red + 128.553 * green + 24.966 * blue) / 255.0


def reference_psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    # Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, population covariance, valid region only.
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    hr = cv2.GaussianBlur(rng.integers(0, 256, size=(40, 36, 3), dtype=np.uint8), (5, 5), 1.5)
    noise = rng.normal(0, 6, size=hr.shape)
    sr = np.clip(hr + noise, 0, 255).round().astype(np.uint8)
    return sr, hr


def test_y_channel_scores_match_an_independent_bt601_computation_with_the_border_cropped(pair):
    sr, hr = pair
    scale = 3
    psnr, ssim = psnr_ssim(sr, hr, scale=scale, channel="y")
    crop = (slice(scale, -scale), slice(scale, -scale))
    y_sr, y_hr = bt601_luma(sr)[crop], bt601_luma(hr)[crop]
    assert psnr == pytest.approx(reference_psnr(y_sr, y_hr), abs=1e-4)
    assert ssim == pytest.approx(reference_ssim(y_sr, y_hr), abs=1e-5)


def test_rgb_scores_average_over_the_three_channels(pair):
    sr, hr = pair
    psnr, ssim = psnr_ssim(sr, hr, scale=2, channel="rgb")
    sr_c, hr_c = sr[2:-2, 2:-2], hr[2:-2, 2:-2]
    assert psnr == pytest.approx(reference_psnr(sr_c, hr_c), abs=1e-6)
    per_channel = [reference_ssim(sr_c[..., i].astype(np.float64), hr_c[..., i].astype(np.float64)) for i in range(3)]
    assert ssim == pytest.approx(np.mean(per_channel), abs=1e-5)


def test_a_uniform_rgb_offset_gives_the_closed_form_y_psnr():
    hr = np.full((20, 20, 3), 100, dtype=np.uint8)
    sr = hr + 5
    psnr, _ = psnr_ssim(sr, hr, scale=4)
    luma_step = 5 * (65.481 + 128.553 + 24.966) / 255.0  # each channel +5 raises Y by 5 * 219 / 255
    assert psnr == pytest.approx(20 * math.log10(255.0 / luma_step), abs=1e-4)


def test_only_the_inner_region_counts():
    hr = np.full((24, 24, 3), 128, dtype=np.uint8)
    sr = hr.copy()
    sr[:4] = 0  # damage confined to the 4-pixel border
    assert psnr_ssim(sr, hr, scale=4) == (math.inf, pytest.approx(1.0))


def test_a_larger_hr_is_mod_cropped_and_a_wrong_size_is_refused(pair):
    sr, hr = pair
    padded = np.pad(hr, ((0, 2), (0, 1), (0, 0)))
    assert psnr_ssim(sr, padded, scale=3) == psnr_ssim(sr, hr, scale=3)
    with pytest.raises(ValueError, match="does not match HR size"):
        psnr_ssim(sr, padded, scale=2)


def test_unknown_channel_is_named():
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="channel='ycbcr'"):
        psnr_ssim(image, image, scale=2, channel="ycbcr")


def test_evaluate_folder_pairs_outputs_by_name_and_reports_the_mean(tmp_path: Path, pair):
    sr, hr = pair
    (tmp_path / "sr").mkdir()
    (tmp_path / "hr").mkdir()
    cv2.imwrite(str(tmp_path / "hr" / "0801.png"), hr)
    cv2.imwrite(str(tmp_path / "hr" / "0802.png"), hr)
    cv2.imwrite(str(tmp_path / "sr" / "0801x3_EDSR.png"), sr)  # DIV2K LR name plus a model suffix
    cv2.imwrite(str(tmp_path / "sr" / "0802_EDSR.png"), hr)
    result = evaluate_folder(tmp_path / "sr", tmp_path / "hr", scale=3, sr_suffix="_EDSR")
    assert [row.name for row in result.rows] == ["0801x3_EDSR", "0802_EDSR"]
    expected_psnr, expected_ssim = psnr_ssim(sr, hr, scale=3)
    assert result.rows[0].psnr == pytest.approx(expected_psnr)
    assert math.isinf(result.rows[1].psnr) and result.rows[1].ssim == pytest.approx(1.0)
    assert result.mean.ssim == pytest.approx((expected_ssim + 1.0) / 2)

    markdown = to_markdown(result)
    assert "| 0801x3_EDSR | " + f"{expected_psnr:.2f}" in markdown
    assert "| **mean** | **inf** |" in markdown
    console = Console(record=True, width=100)
    console.print(to_rich_table(result))
    assert "0802_EDSR" in console.export_text()


def test_evaluate_folder_names_an_sr_output_without_hr(tmp_path: Path):
    (tmp_path / "sr").mkdir()
    (tmp_path / "hr").mkdir()
    cv2.imwrite(str(tmp_path / "sr" / "lonely.png"), np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(FileNotFoundError, match="lonely.png"):
        evaluate_folder(tmp_path / "sr", tmp_path / "hr", scale=2)
