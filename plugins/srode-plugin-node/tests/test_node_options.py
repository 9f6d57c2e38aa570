"""The shipped option files: Table-1 set, Table-2 pair and the demo variant read as their constructors."""

from __future__ import annotations

from pathlib import Path

import pytest
import srode_node
from srode_node.archs import NODESRNet, count_parameters
from srode_node.sweep import describe_network

from srode_plugins import api
from srode_plugins import options as options_mod

OPTIONS_DIR = Path(srode_node.__file__).parent / "options"
TABLE1 = sorted(OPTIONS_DIR.glob("NODE_T1_*.yml"))


def _network(path: Path) -> dict:
    return dict(options_mod.load(path).opt["network_g"])


def test_table1_has_nine_distinct_configurations() -> None:
    labels = {describe_network(_network(path)) for path in TABLE1}
    assert len(TABLE1) == 9
    assert labels == {
        ("RRDB (5 blocks)", "-"),
        ("ANODE", "checkpointed"),
        ("NODE (aut.)", "discrete"), ("NODE (aut.)", "adjoint"),
        ("NODE (time-dep.)", "discrete"), ("NODE (time-dep.)", "adjoint"),
        ("Augmented NODE (aut.)", "discrete"),
        ("Augmented NODE (time-dep.)", "discrete"), ("Augmented NODE (time-dep.)", "adjoint"),
    }


@pytest.mark.parametrize("path", sorted(OPTIONS_DIR.glob("*.yml")), ids=lambda p: p.stem)
def test_every_option_file_builds_its_network(path: Path) -> None:
    network = _network(path)
    arch = api.get_component("archs", network.pop("type"))
    assert count_parameters(arch(**network)) > 0


def test_table2_pair_has_the_papers_parameter_counts() -> None:
    counts = {}
    for path in sorted(OPTIONS_DIR.glob("NODE_T2_*.yml")):
        network = _network(path)
        counts[path.stem] = count_parameters(api.get_component("archs", network.pop("type"))(**network))
    assert counts == {"NODE_T2_AugNODE_time_7L_x4_DIV2K": 569_251, "NODE_T2_RRDB20_x4_DIV2K": 14_539_715}


def test_reference_tolerances_are_1e4_standard_and_1e3_augmented() -> None:
    for path in TABLE1:
        network = _network(path)
        if network["type"] == NODESRNet.__name__ and network["solver"] == "dopri5":
            expected = 1e-3 if network["augment_channels"] else 1e-4
            assert (network["rtol"], network["atol"]) == (expected, expected), path.name


def test_demo_option_resolves_demo_roots(tmp_path: Path) -> None:
    from srode_plugins.engine import setup

    opts = options_mod.load(OPTIONS_DIR / "NODE_demo_x4.yml")
    opt = setup.prepare(opts, is_train=True, root=tmp_path)
    demo = api.demo_dataset(4)
    assert Path(opt["datasets"]["train"]["dataroot_lq"]) == demo.train_lr
    assert Path(opt["datasets"]["val"]["dataroot_gt"]) == demo.val_hr


def test_a_typo_inside_train_nfe_guard_is_refused_before_anything_is_built() -> None:
    from srode_plugins.api import OptionError, load_options
    from srode_plugins.schema import validate

    option = Path(__file__).parents[1] / "srode_node" / "options" / "NODE_T1_NODE_aut_discrete_x4_BSD.yml"
    with pytest.raises(OptionError, match=r"option 'train.nfe_guard.on_exced'.*Did you mean: on_exceed"):
        validate(load_options(option, ["train.nfe_guard.on_exced=skip"]), is_train=True)
