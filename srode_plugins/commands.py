"""The small CLI commands: plugins list/check, options list/copy, infer."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import shutil
from pathlib import Path
from typing import Any

from srode_plugins.discovery import Catalog, PluginInfo, catalog
from srode_plugins.errors import SrodeError

# ---------------------------------------------------------------- plugins


def _print_plugin(info: PluginInfo) -> None:
    api = f", core API {info.api_required}" if info.api_required else ""
    print(f"{info.distribution} {info.version}{api}  [{info.status}]")
    for kind in sorted(info.components):
        names = ", ".join(sorted(c.name for c in info.components[kind]))
        print(f"    {kind:<14} {names}")
    if info.options:
        print(f"    {'options':<14} {', '.join(sorted(info.options))}")
    if info.commands:
        print(f"    {'commands':<14} {', '.join(f'basicsr {c}' for c in sorted(info.commands))}")


def _deep_check(info: PluginInfo) -> None:
    from srode_plugins.components import load_component

    for kind, comps in sorted(info.components.items()):
        for comp in comps:
            try:
                load_component(kind, comp.name)
            except SrodeError as exc:
                info.problems.append(str(exc).split(": ", 1)[-1])
                return


def plugins_list(deep: bool = False) -> int:
    cat: Catalog = catalog()
    if not cat.plugins:
        print("No srode plugins installed. First-party ones: pip install srode-plugin-baselines "
              "srode-plugin-node srode-plugin-rk4gan srode-plugin-resshift")
        return 0
    for info in sorted(cat.plugins.values(), key=lambda i: (i.distribution != "srode-plugins", i.distribution)):
        if deep and info.ok:
            _deep_check(info)
        _print_plugin(info)
    return 0 if all(i.ok for i in cat.plugins.values()) else 1


def _find_plugin(name: str) -> PluginInfo:
    wanted = name.lower().replace("_", "-")
    plugins = catalog().plugins
    for key in (wanted, f"srode-plugin-{wanted}"):
        if key in plugins:
            return plugins[key]
    raise SrodeError(f"no installed plugin named '{name}'. Installed: {', '.join(sorted(plugins)) or '(none)'}")


def plugins_check(name: str) -> int:
    info = _find_plugin(name)
    _deep_check(info)
    if not info.ok:
        print(f"{info.distribution}: {info.status}")
        return 1
    loaded = sum(len(c) for c in info.components.values())
    summary = f"{loaded} component(s) import"
    if info.selfcheck:
        module_name, _, attr = info.selfcheck.partition(":")
        try:
            result = getattr(importlib.import_module(module_name), attr or "run")()
        except Exception as exc:  # the self-check's failure is the answer, not a crash
            print(f"{info.distribution}: broken: self-check failed: {type(exc).__name__}: {exc}")
            return 1
        summary += f"; self-check: {result}"
    print(f"{info.distribution} {info.version}: ok ({summary})")
    return 0


# ---------------------------------------------------------------- options


def _options_folder(value: str) -> Path | None:
    """`pkg.options` -> the folder, located without importing the package."""
    parts = value.split(":")[0].strip().split(".")
    spec = importlib.util.find_spec(parts[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts[1:])
    return folder if folder.is_dir() else None


def shipped_options() -> dict[str, Path]:
    """{'<short>/<stem>': path} for every option file shipped by installed plugins."""
    found: dict[str, Path] = {}
    for info in catalog().plugins.values():
        for short, value in info.options.items():
            folder = _options_folder(value)
            if folder is None:
                continue
            for path in sorted(folder.rglob("*.yml")):
                found[f"{short}/{path.relative_to(folder).with_suffix('').as_posix()}"] = path
    return found


def options_list() -> int:
    found = shipped_options()
    if not found:
        print("No option files shipped by installed plugins.")
        return 0
    width = max(len(k) for k in found)
    for name, path in sorted(found.items()):
        print(f"{name:<{width}}  {path}")
    return 0


def options_copy(name: str, dest: str) -> int:
    found = shipped_options()
    matches = [k for k in found if k == name or k.split("/", 1)[1] == name or Path(k).name == name.removesuffix(".yml")]
    if len(matches) != 1:
        hint = f"several match: {', '.join(matches)}" if matches else "see `basicsr options list`"
        raise SrodeError(f"option file '{name}': {hint}")
    source = found[matches[0]]
    target = Path(dest)
    if target.suffix not in (".yml", ".yaml"):
        target = target / source.name
    if target.exists():
        raise SrodeError(f"'{target}' exists; give another destination or delete it first")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    print(f"{matches[0]} -> {target}")
    return 0


def options_check(file: str, *, is_train: bool, overrides: list[str]) -> int:
    """`basicsr options check FILE`: the schema check alone; nothing is built, no data or weights are read."""
    from srode_plugins import options, schema

    opts = options.load(file, overrides)
    checked = schema.validate(opts, is_train=is_train)
    print(f"{opts.file}: ok for `basicsr {'train' if is_train else 'test'}` ({len(checked)} component(s) checked: "
          f"{'; '.join(checked)})")
    return 0


def options_schema(name: str | None, *, markdown: bool) -> int:
    from srode_plugins.schema import reference

    print(reference.markdown() if markdown else reference.reference(name), end="\n" if not markdown else "")
    return 0


# ---------------------------------------------------------------- infer


def _input_images(path: Path) -> list[Path]:
    from srode_plugins.data.prepare import IMAGE_SUFFIXES as suffixes

    if path.is_file():
        return [path]
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
        if images:
            return images
        raise SrodeError(f"--input '{path}' holds no images ({', '.join(sorted(suffixes))})")
    raise SrodeError(f"--input '{path}' does not exist")


def _parse_kwargs(entries: list[str]) -> dict[str, Any]:
    import yaml

    kwargs = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep:
            raise SrodeError(f"--arch-opt '{entry}' must look like key=value")
        kwargs[key.strip()] = yaml.safe_load(value)
    return kwargs


def _network_from_option_file(args: argparse.Namespace) -> tuple[Any, int]:
    from srode_plugins.checkpoints import load_network_weights
    from srode_plugins.components import build_component
    from srode_plugins.detection import resolve_auto_network
    from srode_plugins.options import load

    opts = load(args.opt)
    if args.weights:
        opts.opt.setdefault("path", {})["pretrain_network_g"] = args.weights
    if args.scale:
        opts.opt["scale"] = args.scale
    detected = resolve_auto_network(opts)
    if detected is not None:
        return detected.network, detected.scale
    network_opt = opts.opt.get("network_g")
    if not isinstance(network_opt, dict):
        raise opts.error("must be a mapping such as {type: EDSR, ...}, or `type: auto` to read the arch from "
                         "path.pretrain_network_g", "network_g")
    net = build_component("archs", network_opt, file=str(opts.file), key="network_g")
    weights = (opts.opt.get("path") or {}).get("pretrain_network_g")
    if not weights:
        raise opts.error("no weights: set path.pretrain_network_g or pass --weights", "path.pretrain_network_g")
    load_network_weights(net, weights, option_key="--weights / path.pretrain_network_g")
    return net, int(opts.opt.get("scale", 4))


def network_from_args(args: argparse.Namespace) -> tuple[Any, int]:
    """The network (weights loaded) and its scale from -opt, --arch + --weights, or --weights alone (detected)."""
    from srode_plugins.checkpoints import load_network_weights
    from srode_plugins.components import build_component
    from srode_plugins.detection import detect_file

    if args.opt:
        return _network_from_option_file(args)
    if args.arch:
        if not args.weights:
            raise SrodeError("--arch needs --weights FILE (.pth or .safetensors)")
        net = build_component("archs", {"type": args.arch, **_parse_kwargs(args.arch_opt)}, key="--arch")
        load_network_weights(net, args.weights, option_key="--weights")
        return net, args.scale or 4
    if args.weights:
        detected = detect_file(args.weights, scale=args.scale, overrides=_parse_kwargs(args.arch_opt))
        print(f"{args.weights}: x{detected.scale} {detected.arch} (recognised by {detected.detected_by})")
        return detected.network, detected.scale
    raise SrodeError("give -opt FILE.yml, or --weights FILE (arch recognised from the weights), "
                     "or --arch NAME --weights FILE")


def infer(args: argparse.Namespace) -> int:
    from srode_plugins import compat

    compat.apply()
    from srode_plugins.api import select_device
    from srode_plugins.inference import upsample_images

    images = _input_images(Path(args.input))
    net, scale = network_from_args(args)
    device = select_device(args.device)
    outputs = upsample_images(net, images, Path(args.output), scale, tile=args.tile or None, overlap=args.overlap,
                              self_ensemble=args.self_ensemble, device=device)
    print(f"{len(outputs)} image(s) written to {args.output} (x{scale}, device {device})")
    return 0


def export(args: argparse.Namespace) -> int:
    """`basicsr export`: the network of -opt / --weights as a verified safetensors, ONNX or TorchScript file."""
    from srode_plugins import compat

    compat.apply()
    from srode_plugins.export import export_network

    net, scale = network_from_args(args)
    report = export_network(net, args.output, args.format, args.dtype, scale=scale, arch=type(net).__name__)
    if report.sizes:
        sizes = " and ".join(f"{h}x{w}" for h, w in report.sizes)
        print(f"verified on random {sizes} inputs: max abs difference {report.max_abs_diff:.3e} vs PyTorch fp32 "
              f"(tolerance {report.tolerance:.0e} for {report.dtype})")
    print(f"wrote {report.path} ({report.format}, {report.dtype}, x{scale})")
    return 0


# ---------------------------------------------------------------- env


def env() -> int:
    """`basicsr env`: versions, CPU/GPU capabilities and what `amp: auto` / `channels_last: auto` resolve to."""
    from srode_plugins.engine.precision import environment_report

    rows = environment_report()
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return 0


# ---------------------------------------------------------------- evaluate


def _perceptual_metrics(names: str) -> tuple[str, ...]:
    """`--metrics psnr,ssim,lpips` -> the names scored beside PSNR/SSIM, in the order given."""
    from srode_plugins.metrics import PERCEPTUAL_METRICS

    asked = [name.strip().lower() for name in names.split(",") if name.strip()]
    known = ("psnr", "ssim", *PERCEPTUAL_METRICS)
    unknown = [name for name in asked if name not in known]
    if unknown:
        raise SrodeError(f"evaluate --metrics: unknown metric(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return tuple(dict.fromkeys(name for name in asked if name in PERCEPTUAL_METRICS))


def evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from srode_plugins.evaluation import evaluate_bicubic, evaluate_folder, to_markdown, to_rich_table

    if args.bicubic and not args.lr:
        raise SrodeError("evaluate --bicubic needs --lr DIR: the LR folder `basicsr data prepare` wrote "
                         f"(OUT/LR_bicubic/X{args.scale})")
    if not args.sr and not args.bicubic:
        raise SrodeError("evaluate needs --sr DIR (the super-resolved images), or --bicubic --lr DIR for the "
                         "bicubic baseline alone")
    channel = "rgb" if args.rgb else "y"
    lr = Path(args.lr) if args.bicubic else None
    metrics = _perceptual_metrics(args.metrics)
    try:
        if args.sr:
            result = evaluate_folder(Path(args.sr), Path(args.hr), args.scale, channel, args.suffix, lr, metrics)
        else:
            result = evaluate_bicubic(lr, Path(args.hr), args.scale, channel, metrics)
    except (FileNotFoundError, ValueError) as exc:
        raise SrodeError(str(exc)) from exc
    Console().print(to_rich_table(result))
    if args.markdown:
        Path(args.markdown).write_text(to_markdown(result))
    return 0
