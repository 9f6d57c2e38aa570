"""LPIPS, DISTS and NIQE (srode_plugins/metrics): real properties on a real photo, the offline weight lookup,
BasicSR's own validation loop calling them, and NIQE against BasicSR's independent implementation.

No test touches the internet. Where a pretrained backbone would be needed, SRODE_RANDOM_INIT_PRETRAINED=1 gives a
randomly initialised one (LPIPS keeps its real linear heads, which ship in the lpips wheel; DISTS gets random
positive alpha/beta), or a random network saved in torchvision's layout stands in for the file.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import skimage.data
import torch

from srode_plugins.api import RANDOM_INIT_ENV, MissingWeightsError, dists_distance, lpips_distance, niqe_score
from srode_plugins.components import load_component
from srode_plugins.metrics import networks, scores, val_metrics

NOISE_SIGMAS = (0, 4, 12, 32)  # in 8-bit levels


@pytest.fixture
def random_backbones(monkeypatch):
    monkeypatch.setenv(RANDOM_INIT_ENV, "1")
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 96x96 RGB uint8 crop of skimage's astronaut (face and background): small, as VGG16 on two CPU cores
    is slow, and still one whole NIQE block."""
    return skimage.data.astronaut()[70:166, 180:276]


def with_noise(rgb: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, rgb.shape)
    return np.clip(rgb + noise, 0, 255).round().astype(np.uint8)


def as_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


DISTANCES = {"lpips": lpips_distance, "dists": dists_distance}


# ---------------------------------------------------------------- reference metrics: real properties


@pytest.mark.parametrize("metric", sorted(DISTANCES))
def test_distance_is_zero_for_identical_images_and_grows_with_gaussian_noise(metric, random_backbones, photo):
    distance = DISTANCES[metric]
    clean = as_tensor(photo)
    values = [float(distance(as_tensor(with_noise(photo, sigma)), clean)) for sigma in NOISE_SIGMAS]
    assert values[0] == pytest.approx(0.0, abs=1e-6)
    assert all(later > earlier for earlier, later in zip(values, values[1:])), values


@pytest.mark.parametrize("metric", sorted(DISTANCES))
def test_distance_is_symmetric_and_batched_per_image(metric, random_backbones, photo):
    distance = DISTANCES[metric]
    clean, noisy = as_tensor(photo), as_tensor(with_noise(photo, 12))
    forward, backward = distance(noisy, clean), distance(clean, noisy)
    torch.testing.assert_close(forward, backward, rtol=1e-5, atol=1e-6)
    batch = distance(torch.cat([noisy, clean]), torch.cat([clean, clean]))
    assert batch.shape == (2,)
    torch.testing.assert_close(batch, torch.cat([forward, torch.zeros(1)]), rtol=1e-4, atol=1e-6)


def test_distances_refuse_mismatched_shapes(random_backbones):
    with pytest.raises(ValueError, match=r"\(1, 3, 32, 32\) and \(1, 3, 32, 40\)"):
        lpips_distance(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 40))


# ---------------------------------------------------------------- weights: from disk only


def test_lpips_backbone_file_lands_in_the_lpips_slices(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.delenv(RANDOM_INIT_ENV, raising=False)
    torch.manual_seed(0)
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    model = networks.build_lpips("alex", str(path))
    source = torch.load(path, weights_only=True)
    torch.testing.assert_close(getattr(model.net.slice1, "0").weight, source["features.0.weight"])
    torch.testing.assert_close(getattr(model.net.slice5, "10").bias, source["features.10.bias"])
    assert not any(p.requires_grad for p in model.parameters())


def test_dists_reads_its_alpha_beta_file_and_the_vgg16_backbone_from_the_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(RANDOM_INIT_ENV, "1")
    template = networks.build_dists()
    stage_keys = [k for k in template.state_dict() if k.startswith("stage") and k.endswith((".weight", ".bias"))]
    # a VGG16 checkpoint in torchvision's layout (features.N.*) and a DISTS file, both random, in the torch cache
    backbone = {"features." + k.split(".", 1)[1]: torch.randn_like(template.state_dict()[k]) for k in stage_keys}
    alpha_beta = {"alpha": torch.rand_like(template.alpha), "beta": torch.rand_like(template.beta)}
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(backbone, cache / networks.VGG16_BACKBONE)
    torch.save(alpha_beta, cache / networks.DISTS_WEIGHTS)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(RANDOM_INIT_ENV)

    model = networks.build_dists()
    torch.testing.assert_close(model.alpha, alpha_beta["alpha"])
    torch.testing.assert_close(model.beta, alpha_beta["beta"])
    torch.testing.assert_close(getattr(model.stage1, "0").weight, backbone["features.0.weight"])
    torch.testing.assert_close(getattr(model.stage5, "28").bias, backbone["features.28.bias"])


def test_a_missing_dists_file_names_the_file_the_option_and_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.delenv(RANDOM_INIT_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError) as error:
        networks.build_dists()
    message = str(error.value)
    assert "DISTS_weights-f5e65c96.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "'val.metrics.dists.weights_path'" in message and "basicsr weights fetch dists" in message


def test_a_missing_lpips_backbone_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.delenv(RANDOM_INIT_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=r"vgg16-397923af\.pth.*basicsr weights fetch vgg16"):
        networks.build_lpips("vgg")


# ---------------------------------------------------------------- NIQE


@pytest.mark.parametrize("sigma", [0, 12])
def test_niqe_matches_basicsrs_own_implementation(sigma):
    """BasicSR's calculate_niqe (numpy, float64) is an independent implementation of the same MATLAB model."""
    from basicsr.metrics import calculate_niqe

    rgb = with_noise(skimage.data.coffee()[:200, :250], sigma)
    expected = calculate_niqe(np.ascontiguousarray(rgb[..., ::-1]), crop_border=0)
    assert float(niqe_score(as_tensor(rgb))) == pytest.approx(expected, rel=1e-2)


def test_niqe_rises_with_noise_and_refuses_images_without_one_block(photo):
    values = [float(niqe_score(as_tensor(with_noise(photo, sigma)))) for sigma in (0, 12, 32)]
    assert values[0] < values[1] < values[2]
    with pytest.raises(ValueError, match="at least 96x96 pixels after cropping 1 border"):
        niqe_score(as_tensor(photo), crop_border=1)


# ---------------------------------------------------------------- BasicSR's validation calls them


@pytest.mark.parametrize("metric", ["lpips", "dists", "niqe"])
def test_entry_points_register_the_metrics_in_basicsrs_registry(metric):
    from basicsr.utils.registry import METRIC_REGISTRY

    assert load_component("metrics", metric) is getattr(val_metrics, metric)
    assert METRIC_REGISTRY.get(metric) is getattr(val_metrics, metric)


def test_calculate_metric_takes_basicsrs_bgr_numpy_images(random_backbones, photo):
    from basicsr.metrics import calculate_metric

    load_component("metrics", "lpips")
    noisy = with_noise(photo, 12)
    data = {"img": np.ascontiguousarray(noisy[..., ::-1]), "img2": np.ascontiguousarray(photo[..., ::-1])}
    value = calculate_metric(data, {"type": "lpips", "better": "lower", "crop_border": 4})
    inner_noisy, inner_clean = noisy[4:-4, 4:-4], photo[4:-4, 4:-4]
    expected = float(lpips_distance(as_tensor(inner_noisy), as_tensor(inner_clean)))
    swapped = float(lpips_distance(as_tensor(inner_noisy[..., ::-1].copy()), as_tensor(inner_clean[..., ::-1].copy())))
    assert value == pytest.approx(expected, rel=1e-5)
    assert value != pytest.approx(swapped, rel=1e-5)  # the channel order matters, so the BGR->RGB flip is pinned


def tiny_sr_model(num_gpu: int, metrics: dict) -> object:
    from basicsr.models.sr_model import SRModel

    net = {"type": "SRVGGNetCompact", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 1, "upscale": 1}
    opt = {"num_gpu": num_gpu, "is_train": False, "dist": False, "network_g": net, "path": {},
           "val": {"metrics": metrics, "save_img": False}}
    return SRModel(opt)



class OneImageLoader:
    def __init__(self, lq: np.ndarray, gt: np.ndarray) -> None:
        self.dataset = SimpleNamespace(opt={"name": "one"})
        self.batch = {"lq": as_tensor(lq), "gt": as_tensor(gt), "lq_path": ["photo.png"]}

    def __iter__(self):
        return iter([self.batch])

    def __len__(self) -> int:
        return 1


def test_srmodel_validation_reports_the_metrics_scored_on_the_models_device(random_backbones, photo, monkeypatch):
    for name in ("lpips", "niqe"):
        load_component("metrics", name)
    seen = []
    monkeypatch.setattr(val_metrics, "lpips_distance", lambda sr, hr, **kw: seen.append(sr.device) or
                        lpips_distance(sr, hr, **kw))
    metrics = {"lpips": {"type": "lpips", "better": "lower"}, "niqe": {"type": "niqe", "better": "lower"}}
    model = tiny_sr_model(0, metrics)
    model.validation(OneImageLoader(photo, with_noise(photo, 12)), current_iter=1, tb_logger=None)

    from basicsr.utils import tensor2img

    with torch.no_grad():
        output = tensor2img([model.net_g(as_tensor(photo))])
    expected_lpips = float(lpips_distance(as_tensor(np.ascontiguousarray(output[..., ::-1])),
                                          as_tensor(with_noise(photo, 12))))
    assert seen == [torch.device("cpu")]
    assert model.metric_results["lpips"] == pytest.approx(expected_lpips, rel=1e-4)
    assert model.metric_results["niqe"] == pytest.approx(float(niqe_score(
        as_tensor(np.ascontiguousarray(output[..., ::-1])))), rel=1e-6)
    assert model.best_metric_results["one"]["lpips"]["better"] == "lower"


def test_auto_device_is_the_validating_models_device_else_cuda_when_present():
    from basicsr.models.sr_model import SRModel

    class Probe(SRModel):
        def __init__(self) -> None:
            self.device = torch.device("meta")  # a device no fallback would choose

        def metric_device(self) -> torch.device:
            return val_metrics.metric_device("auto")

    assert Probe().metric_device() == torch.device("meta")
    assert val_metrics.metric_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert val_metrics.metric_device("cpu") == torch.device("cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_a_cuda_model_the_metrics_run_on_cuda_and_agree_with_the_cpu(random_backbones, photo, monkeypatch):
    load_component("metrics", "lpips")
    seen = []
    monkeypatch.setattr(val_metrics, "lpips_distance", lambda sr, hr, **kw: seen.append(sr.device) or
                        lpips_distance(sr, hr, **kw))
    model = tiny_sr_model(1, {"lpips": {"type": "lpips", "better": "lower"}})
    model.validation(OneImageLoader(photo, with_noise(photo, 12)), current_iter=1, tb_logger=None)
    assert [device.type for device in seen] == ["cuda"]
    clean, noisy = as_tensor(photo), as_tensor(with_noise(photo, 12))
    for distance in (lpips_distance, dists_distance):
        torch.testing.assert_close(distance(noisy.cuda(), clean.cuda()).cpu(), distance(noisy, clean),
                                   rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(niqe_score(noisy.cuda()).cpu(), niqe_score(noisy), rtol=1e-6, atol=1e-9)


def test_a_metric_without_better_lower_warns_once(random_backbones, photo, caplog):
    val_metrics._WARNED_BETTER.discard("NIQE")
    with caplog.at_level(logging.WARNING, logger="basicsr"):
        val_metrics.niqe(np.ascontiguousarray(photo[..., ::-1]))
        val_metrics.niqe(np.ascontiguousarray(photo[..., ::-1]))
    warnings = [r.message for r in caplog.records if "better: lower" in r.message]
    assert len(warnings) == 1 and "NIQE is lower-is-better" in warnings[0]


def test_a_reference_metric_on_a_set_without_ground_truth_says_so(random_backbones, photo):
    from srode_plugins.api import OptionError

    with pytest.raises(OptionError, match="no dataroot_gt"):
        val_metrics.lpips(np.ascontiguousarray(photo[..., ::-1]), None, better="lower")


def test_networks_are_built_once_per_device(random_backbones, photo):
    scores._lpips_on.cache_clear()
    clean = as_tensor(photo)
    lpips_distance(clean, clean)
    lpips_distance(clean, clean)
    assert scores._lpips_on.cache_info().misses == 1 and scores._lpips_on.cache_info().hits == 1


# ---------------------------------------------------------------- basicsr evaluate --metrics


def test_evaluate_metrics_adds_lpips_and_niqe_columns_scored_with_the_scale_border_cropped(
        random_backbones, tmp_path):
    import cv2
    from basicsr.metrics import calculate_niqe

    from srode_plugins import cli

    scale = 2
    (tmp_path / "hr").mkdir()
    (tmp_path / "sr").mkdir()
    # 200x200: several NIQE blocks, which BasicSR's NIQE needs for its covariance
    pictures = {"coffee": skimage.data.coffee()[:200, 100:300], "cat": skimage.data.chelsea()[:200, 100:300]}
    for seed, (stem, rgb) in enumerate(pictures.items()):
        cv2.imwrite(str(tmp_path / "hr" / f"{stem}.png"), rgb[..., ::-1])
        cv2.imwrite(str(tmp_path / "sr" / f"{stem}.png"), with_noise(rgb, 10, seed)[..., ::-1])
    markdown = tmp_path / "table.md"
    assert cli.main(["evaluate", "--sr", str(tmp_path / "sr"), "--hr", str(tmp_path / "hr"), "--scale", str(scale),
                     "--metrics", "psnr,ssim,lpips,niqe", "--markdown", str(markdown)]) == 0

    lines = markdown.read_text().splitlines()
    assert lines[2] == "| image | PSNR Y (dB) | SSIM Y | LPIPS | NIQE |"
    rows = {cells[0]: [float(c) for c in cells[1:]] for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in lines[4:6])}
    for seed, (stem, rgb) in enumerate(pictures.items()):
        sr = with_noise(rgb, 10, seed)
        inner = slice(scale, -scale)
        lpips_value = float(lpips_distance(as_tensor(sr[inner, inner]), as_tensor(rgb[inner, inner])))
        niqe_value = calculate_niqe(np.ascontiguousarray(sr[..., ::-1]), crop_border=scale)
        assert rows[stem][2] == pytest.approx(lpips_value, abs=1e-4)
        assert rows[stem][3] == pytest.approx(niqe_value, rel=1e-2)
    mean = [float(c.strip().strip("*")) for c in lines[6].strip("|").split("|")[1:]]
    assert mean[2] == pytest.approx((rows["coffee"][2] + rows["cat"][2]) / 2, abs=1e-4)


def test_evaluate_refuses_an_unknown_metric_naming_the_choices(tmp_path, capsys):
    from srode_plugins import cli

    assert cli.main(["evaluate", "--sr", str(tmp_path), "--hr", str(tmp_path), "--scale", "4",
                     "--metrics", "psnr,fid"]) != 0
    assert "unknown metric(s) fid; choose from psnr, ssim, lpips, dists, niqe" in capsys.readouterr().err


def test_without_pyiqa_dists_and_niqe_say_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from srode_plugins.errors import OptionError
    from srode_plugins.metrics.networks import pyiqa_module

    for name in ("pyiqa", "pyiqa.archs", "pyiqa.archs.niqe_arch", "pyiqa.archs.dists_arch"):
        monkeypatch.setitem(sys.modules, name, None)  # an entry of None makes `import` fail as if absent
    with pytest.raises(OptionError, match=r"option 'val.metrics.niqe': NIQE needs the pyiqa package.*"
                                          r"pip install 'srode-plugins\[metrics\]'"):
        pyiqa_module("pyiqa.archs.niqe_arch", "NIQE", "val.metrics.niqe")
    with pytest.raises(OptionError, match="DISTS needs the pyiqa package"):
        pyiqa_module("pyiqa.archs.dists_arch", "DISTS", "val.metrics.dists")
