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


# ---------------------------------------------------------------- --bicubic


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB imresize 'bicubic')."""
    ax = np.abs(x)
    near = (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
    far = (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


def matlab_upscale_matrix(length: int, scale: int) -> np.ndarray:
    """(length*scale, length) matrix of MATLAB imresize's bicubic upscaling along one axis (symmetric borders)."""
    out = np.arange(1, length * scale + 1, dtype=np.float64)
    centre = out / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate of each output pixel
    taps = np.floor(centre - 2)[:, None] + np.arange(6)[None, :]
    weights = cubic(centre[:, None] - taps)
    weights /= weights.sum(axis=1, keepdims=True)
    mirrored = np.concatenate([np.arange(length), np.arange(length)[::-1]])
    columns = mirrored[np.mod(taps.astype(int) - 1, 2 * length)]
    matrix = np.zeros((length * scale, length))
    np.add.at(matrix, (np.repeat(np.arange(length * scale), 6), columns.ravel()), weights.ravel())
    return matrix


def independent_bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    rows, cols = matlab_upscale_matrix(lr.shape[0], scale), matlab_upscale_matrix(lr.shape[1], scale)
    high = np.stack([rows @ lr[..., c].astype(np.float64) @ cols.T for c in range(lr.shape[2])], axis=-1)
    return np.clip(high, 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory) -> tuple[Path, Path, Path]:
    """HR crops of three scikit-image photos, their x4 LR made by `basicsr data prepare`, and cv2 'SR' outputs."""
    from skimage import data

    from srode_plugins.data.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("photos")
    (root / "raw").mkdir()
    crops = {"astronaut": data.astronaut()[40:138, 180:302], "chelsea": data.chelsea()[60:161, 150:270],
             "coffee": data.coffee()[100:196, 200:330]}
    for name, rgb in crops.items():
        cv2.imwrite(str(root / "raw" / f"{name}.png"), rgb[..., ::-1])
    prepared = prepare_dataset(root / "raw", root / "bench", 4, workers=1)
    (root / "sr").mkdir()
    for lr_path in sorted(prepared.lr.iterdir()):
        lr = cv2.imread(str(lr_path))
        sr = cv2.resize(lr, (lr.shape[1] * 4, lr.shape[0] * 4), interpolation=cv2.INTER_LANCZOS4)
        cv2.imwrite(str(root / "sr" / lr_path.name), sr)
    return prepared.hr, prepared.lr, root / "sr"


def independent_bicubic_scores(hr_dir: Path, lr_dir: Path) -> dict[str, tuple[float, float]]:
    scores = {}
    for hr_path in sorted(hr_dir.iterdir()):
        hr = cv2.imread(str(hr_path))
        upscaled = independent_bicubic(cv2.imread(str(lr_dir / hr_path.name)), 4)
        crop = (slice(4, -4), slice(4, -4))
        y_up, y_hr = bt601_luma(upscaled)[crop], bt601_luma(hr)[crop]
        scores[hr_path.stem] = (reference_psnr(y_up, y_hr), reference_ssim(y_up, y_hr))
    return scores


def test_bicubic_upscaling_equals_an_independent_matlab_imresize_up_to_rounding_ties(photo_set):
    from srode_plugins.evaluation import bicubic_upscale

    _, lr_dir, _ = photo_set
    for lr_path in sorted(lr_dir.iterdir()):
        lr = cv2.imread(str(lr_path))
        difference = np.abs(bicubic_upscale(lr, 4).astype(int) - independent_bicubic(lr, 4))
        # Equal but for a value sitting on x.5 now and then, which float summation order rounds either way.
        assert difference.max() <= 1 and np.count_nonzero(difference) <= 1e-3 * difference.size
        assert not np.array_equal(bicubic_upscale(lr, 4), cv2.resize(lr, None, fx=4, fy=4,
                                                                     interpolation=cv2.INTER_CUBIC))


def test_bicubic_rows_match_an_independent_matlab_bicubic_on_real_photos(photo_set):
    from srode_plugins.evaluation import evaluate_bicubic

    hr_dir, lr_dir, _ = photo_set
    result = evaluate_bicubic(lr_dir, hr_dir, scale=4)
    expected = independent_bicubic_scores(hr_dir, lr_dir)
    assert [row.name for row in result.rows] == sorted(expected)
    for row in result.rows:
        assert (row.psnr, row.ssim) == pytest.approx(expected[row.name], abs=1e-3)
    assert 20 < result.mean.psnr < 35  # a real bicubic number, not identity or noise


def test_evaluate_bicubic_adds_the_bicubic_mean_of_the_same_images_below_the_sr_rows(photo_set, tmp_path):
    from srode_plugins import cli

    hr_dir, lr_dir, sr_dir = photo_set
    table = tmp_path / "table.md"
    assert cli.main(["evaluate", "--sr", str(sr_dir), "--hr", str(hr_dir), "--scale", "4", "--bicubic",
                     "--lr", str(lr_dir), "--markdown", str(table)]) == 0
    last = table.read_text().splitlines()[-1]
    expected = independent_bicubic_scores(hr_dir, lr_dir).values()
    psnr, ssim = (float(cell) for cell in last.strip("|").split("|")[1:])
    assert last.startswith("| bicubic (mean, same images) |")
    assert psnr == pytest.approx(np.mean([p for p, _ in expected]), abs=0.006)
    assert ssim == pytest.approx(np.mean([s for _, s in expected]), abs=6e-5)


def test_bicubic_without_an_lr_folder_or_evaluate_without_sr_is_a_one_line_error(photo_set, capsys):
    from srode_plugins import cli

    hr_dir, _, _ = photo_set
    assert cli.main(["evaluate", "--hr", str(hr_dir), "--scale", "4", "--bicubic"]) == 2
    assert "--bicubic needs --lr DIR" in capsys.readouterr().err
    assert cli.main(["evaluate", "--hr", str(hr_dir), "--scale", "4"]) == 2
    assert "evaluate needs --sr DIR" in capsys.readouterr().err
