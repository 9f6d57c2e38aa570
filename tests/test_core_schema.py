"""The typed option schema: every shipped and upstream option file validates; wrong keys, types and ranges are
refused naming file, key path, value and fix; component arguments are checked against their constructors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from srode_plugins import options, schema
from srode_plugins.api import OptionKey
from srode_plugins.errors import OptionError, UnknownComponentError
from srode_plugins.schema import core, derive, reference, resolve

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted([*ROOT.glob("options/**/*.yml"), *ROOT.glob("plugins/*/srode_*/options/*.yml")])
UPSTREAM = sorted((ROOT / "tests" / "upstream_options").glob("*.yml"))
# Upstream files that write a key BasicSR itself never reads: the strict schema names it (with the fix) instead
# of ignoring it. EDVR's `network_g.ema_decay` even stops BasicSR's own build_network with a TypeError.
UPSTREAM_UNREAD = {"train_EDVR_L_x4_SR_REDS.yml": "network_g.ema_decay", "test_RCAN.yml": "suffix"}
TINY: dict[str, Any] = yaml.safe_load((ROOT / "tests" / "option_files" / "tiny_train.yml").read_text())


def tiny_file(tmp_path: Path, text: str | None = None, **changes: Any) -> options.OptionFile:
    opt = yaml.safe_load(yaml.safe_dump(TINY))
    for key_path, value in changes.items():
        *parents, last = key_path.split("__")
        node = opt
        for key in parents:
            node = node[key]
        node[last] = value
    file = tmp_path / "tiny.yml"
    file.write_text(text if text is not None else yaml.safe_dump(opt))
    return options.load(file)


def refusal(opts: options.OptionFile, is_train: bool = True) -> OptionError:
    with pytest.raises(OptionError) as error:
        schema.validate(opts, is_train=is_train)
    assert str(opts.file) in str(error.value)
    return error.value


def is_training_file(opts: options.OptionFile) -> bool:
    return "train" in (opts.opt.get("datasets") or {})


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_option_file_validates(path: Path) -> None:
    opts = options.load(path)
    checked = schema.validate(opts, is_train=is_training_file(opts))
    assert any(c.startswith("network_g: ") for c in checked)


@pytest.mark.parametrize("path", UPSTREAM, ids=lambda p: p.name)
def test_upstream_basicsr_option_files_validate_or_name_the_key_basicsr_never_reads(path: Path) -> None:
    opts = options.load(path)
    if path.name not in UPSTREAM_UNREAD:
        schema.validate(opts, is_train=is_training_file(opts))
        return
    assert refusal(opts, is_training_file(opts)).key == UPSTREAM_UNREAD[path.name]


def test_a_typo_inside_network_g_is_refused_with_the_nearest_constructor_argument(tmp_path: Path) -> None:
    error = refusal(tiny_file(tmp_path, network_g__num_blocks=2))
    assert error.key == "network_g.num_blocks"
    assert "unknown key 'num_blocks'" in str(error) and "Did you mean: num_block" in str(error)


def test_a_missing_constructor_argument_is_named_before_anything_is_built(tmp_path: Path) -> None:
    opts = tiny_file(tmp_path)
    del opts.opt["network_g"]["num_in_ch"]
    error = refusal(opts)
    assert error.key == "network_g.num_in_ch" and "no default for 'num_in_ch'" in str(error)


@pytest.mark.parametrize(("key_path", "value", "key"), [
    ("scale", 0, "scale"),
    ("train__optim_g__lr", -1, "train.optim_g.lr"),
    ("train__optim_g__weight_decay", -0.1, "train.optim_g.weight_decay"),
    ("train__ema_decay", 1e12, "train.ema_decay"),
    ("train__ema_decay", 1.0, "train.ema_decay"),
    ("train__grad_clip", -1, "train.grad_clip"),
    ("train__pixel_opt__loss_weight", -1, "train.pixel_opt.loss_weight"),
    ("train__total_iter", -5, "train.total_iter"),
    ("val__metrics__psnr__crop_border", -5, "val.metrics.psnr.crop_border"),
    ("datasets__train__batch_size_per_gpu", 0, "datasets.train.batch_size_per_gpu"),
    ("datasets__train__dataset_enlarge_ratio", 0, "datasets.train.dataset_enlarge_ratio"),
    ("logger__print_freq", 0, "logger.print_freq"),
    ("num_gpu", -1, "num_gpu"),
])
def test_out_of_range_values_name_the_key_the_value_and_the_accepted_range(
        tmp_path: Path, key_path: str, value: Any, key: str) -> None:
    error = refusal(tiny_file(tmp_path, **{key_path: value}))
    assert error.key == key
    assert f"value {value!r} is out of range" in str(error) and ": use " in str(error)


@pytest.mark.parametrize("written", ["yes", "on", "1", "'true'", '"false"', "no"])
def test_only_real_yaml_booleans_are_booleans(tmp_path: Path, written: str) -> None:
    text = yaml.safe_dump(TINY).replace("use_hflip: true", f"use_hflip: {written}")
    error = refusal(tiny_file(tmp_path, text=text))
    assert error.key == "datasets.train.use_hflip"
    assert "must be a real YAML boolean (unquoted true or false)" in str(error)


def test_numbers_written_as_text_become_numbers_of_the_key_s_kind(tmp_path: Path) -> None:
    opts = tiny_file(tmp_path, train__optim_g__lr="2e-4", train__total_iter="1e3", logger__save_checkpoint_freq=5.0)
    schema.validate(opts, is_train=True)
    train = opts.opt["train"]
    assert train["optim_g"]["lr"] == 2e-4 and train["total_iter"] == 1000 and type(train["total_iter"]) is int
    assert opts.opt["logger"]["save_checkpoint_freq"] == 5 and type(opts.opt["logger"]["save_checkpoint_freq"]) is int


@pytest.mark.parametrize("text", ["7", "1e3"])
def test_a_whole_number_written_as_text_becomes_an_int(tmp_path: Path, text: str) -> None:
    opts = tiny_file(tmp_path, train__total_iter=text)
    schema.validate(opts, is_train=True)
    assert opts.opt["train"]["total_iter"] == int(float(text)) and type(opts.opt["train"]["total_iter"]) is int


@pytest.mark.parametrize(("value", "problem"), [
    ("abc", "value 'abc' must be a number"),
    (2.5, "value 2.5 must be a whole number"),
    (True, "value True must be a number"),
    (float("inf"), "value inf must be a finite number"),
])
def test_a_wrong_number_names_file_key_value_and_an_example(tmp_path: Path, value: object, problem: str) -> None:
    error = refusal(tiny_file(tmp_path, train__total_iter=value))
    assert error.key == "train.total_iter"
    assert f"option 'train.total_iter': {problem}" in str(error) and "e.g. `total_iter: " in str(error)


def test_a_missing_or_wrongly_typed_required_key_is_named(tmp_path: Path) -> None:
    nameless = {k: v for k, v in TINY.items() if k != "name"}
    error = refusal(tiny_file(tmp_path, text=yaml.safe_dump(nameless)))
    assert error.key == "name" and "option 'name': missing." in str(error)
    error = refusal(tiny_file(tmp_path, network_g="EDSR"))
    assert error.key == "network_g" and "value 'EDSR' has the wrong type (str)" in str(error)


@pytest.mark.parametrize("name", ["", "  ", ".", "..", "../other", "a/b", "a\\b"])
def test_names_that_are_not_one_plain_folder_are_refused(tmp_path: Path, name: str) -> None:
    error = refusal(tiny_file(tmp_path, name=name))
    assert error.key == "name" and "experiments/<name>/" in str(error)


def test_an_unknown_key_in_a_core_section_lists_the_nearest_and_a_misplaced_key_where_it_belongs(
        tmp_path: Path) -> None:
    error = refusal(tiny_file(tmp_path, logger__print_freqq=1))
    assert error.key == "logger.print_freqq" and "Did you mean: print_freq?" in str(error)
    error = refusal(tiny_file(tmp_path, save_img=True))
    assert error.key == "save_img" and "'save_img' is a key of val: move it there?" in str(error)


def test_unknown_components_and_optimizers_are_named_with_suggestions(tmp_path: Path) -> None:
    with pytest.raises(UnknownComponentError, match=r"option 'network_g\.type': unknown arch 'EDSRR'"):
        schema.validate(tiny_file(tmp_path, network_g__type="EDSRR"), is_train=True)
    with pytest.raises(UnknownComponentError, match=r"option 'train\.optim_g\.type': unknown optimizer 'Adamm'\. "
                                                    r"Did you mean: Adam"):
        schema.validate(tiny_file(tmp_path, train__optim_g__type="Adamm"), is_train=True)


def test_training_needs_a_train_dataset_section_and_batch_size_but_testing_does_not(tmp_path: Path) -> None:
    opts = tiny_file(tmp_path)
    del opts.opt["datasets"]["train"]["batch_size_per_gpu"]
    assert refusal(opts).key == "datasets.train.batch_size_per_gpu"
    schema.validate(opts, is_train=False)


def test_model_keys_come_from_the_model_s_source_and_stay_strict_elsewhere(tmp_path: Path) -> None:
    gan = tiny_file(tmp_path, model_type="SRGANModel", train__net_d_iters=1,
                    network_d={"type": "VGGStyleDiscriminator", "num_in_ch": 3, "num_feat": 4})
    schema.validate(gan, is_train=True)
    assert refusal(tiny_file(tmp_path, train__net_d_iters=1)).key == "train.net_d_iters"  # SRModel never reads it
    reads = derive.read_keys(resolve.load("models", "RealESRNetModel", file=None, key="model_type"))
    assert {("gaussian_noise_prob",), ("queue_size",), ("train", "ema_decay")} <= reads


class GuardPolicy:
    def __init__(self, on_exceed: str = "skip", max_skipped: int | None = 10) -> None:
        del on_exceed, max_skipped


class DeclaringModel:
    """A model that reads `train.guard` and `family:` and declares their schema."""

    option_schema = {"train.guard": GuardPolicy, "family": {"steps": OptionKey("solver steps", "int", minimum=1),
                                                            "mode": ("fast", "exact")}}


def test_a_plugin_declares_its_own_sections_with_option_schema(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from srode_plugins import components

    monkeypatch.setitem(components._LOADED, ("models", "DeclaringModel"), DeclaringModel)
    good = tiny_file(tmp_path, model_type="DeclaringModel", family={"steps": "4", "mode": "fast"},
                     train__guard={"on_exceed": "stop"})
    schema.validate(good, is_train=True)
    assert good.opt["family"]["steps"] == 4
    bad = tiny_file(tmp_path, model_type="DeclaringModel", train__guard={"max_skiped": 3})
    assert "Did you mean: max_skipped?" in str(refusal(bad))
    assert refusal(tiny_file(tmp_path, model_type="DeclaringModel", family={"steps": 0})).key == "family.steps"
    assert refusal(tiny_file(tmp_path, model_type="DeclaringModel", family={"mode": "slow"})).key == "family.mode"


def test_signature_types_come_from_hints_then_defaults() -> None:
    def component(count: int, ratio: float = 0.5, flag: bool = False, label: str | None = None,
                  sizes: tuple[int, int] = (1, 2), width=64, **kwargs: Any) -> None:
        del count, ratio, flag, label, sizes, width, kwargs

    section = derive.signature_section(component)
    assert section is not None and section.open
    kinds = {name: (key.kind, key.required, key.nullable) for name, key in section.keys.items()}
    assert kinds == {"count": ("int", True, False), "ratio": ("float", False, False), "flag": ("bool", False, False),
                     "label": ("str", False, True), "sizes": ("list", False, False), "width": ("float", False, False)}


def test_docs_options_md_is_generated_from_the_schema() -> None:
    written = (ROOT / "docs" / "options.md").read_text()
    assert written == reference.markdown(), "regenerate: basicsr options schema --markdown > docs/options.md"
    for section in core.SECTIONS.values():
        assert f"## `{section.title}`" in written


def test_schema_command_prints_a_component_s_constructor_keys(capsys: pytest.CaptureFixture[str]) -> None:
    from srode_plugins.cli import main

    assert main(["options", "schema", "EDSR"]) == 0
    out = capsys.readouterr().out
    assert "num_block" in out and "num_in_ch (required)" in out
    assert main(["options", "schema", "NoSuchThing"]) == 2


def test_check_command_validates_without_building_or_importing_other_plugins(tmp_path: Path) -> None:
    good = ROOT / "options" / "demo" / "EDSR_x4_demo.yml"
    code = ("import sys; from srode_plugins.cli import main; rc = main(['options', 'check', sys.argv[1]]); "
            "print('loaded:', sorted(m for m in sys.modules if m.startswith(('srode_node', 'srode_resshift', "
            "'srode_rk4gan')))); sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, str(good)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ok for `basicsr train`" in result.stdout and "network_g: EDSR" in result.stdout
    assert "loaded: []" in result.stdout


def test_check_command_exits_2_with_the_error_and_no_traceback(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from srode_plugins.cli import main

    opts = tiny_file(tmp_path, network_g__num_blocks=2)
    assert main(["options", "check", str(opts.file)]) == 2
    err = capsys.readouterr().err
    assert "option 'network_g.num_blocks'" in err and "Traceback" not in err


def test_network_g_read_from_the_weights_is_left_to_detection_but_needs_the_weights(tmp_path: Path) -> None:
    auto = tiny_file(tmp_path, network_g={"type": "auto", "num_feat": 8}, path={"pretrain_network_g": "w.pth"})
    schema.validate(auto, is_train=True)
    assert refusal(tiny_file(tmp_path, network_g={"type": "auto"})).key == "network_g.type"


@pytest.mark.parametrize(("data", "problem"), [(b"name: caf\xe9\n", "not UTF-8 text: byte 0xe9 at line 1"),
                                               (b"name: a\x00b\n", "not a YAML text: unacceptable character #x0000")])
def test_a_file_that_is_not_utf8_yaml_text_is_named_instead_of_a_traceback(
        tmp_path: Path, data: bytes, problem: str) -> None:
    file = tmp_path / "bytes.yml"
    file.write_bytes(data)
    with pytest.raises(OptionError) as error:
        options.load(file)
    assert str(error.value).startswith(f"{file}: {problem}")
