"""`basicsr plugins check srode-plugin-node`: quick end-to-end checks on CPU (a few seconds, random weights)."""

from __future__ import annotations

import torch


def run() -> str:
    """Raise on failure; return a one-line summary."""
    from srode_node.archs import NODESRNet, count_parameters
    from srode_node.errors import MaxNFEExceeded
    from srode_node.solvers import FIXED_STEP_SOLVERS, integrate_fixed_step

    reference = NODESRNet(num_feat=64, ode_layers=7, time_dependent=True, augment_channels=16)
    params = count_parameters(reference)
    if params != 569_251:
        raise AssertionError(f"the paper's 7-conv augmented time-dependent net has 569,251 parameters, got {params:,}")

    # classic RK4 integrates dz/dt = t^3 exactly: z(1) = 1/4
    cubic_integral = integrate_fixed_step(lambda t, z: torch.ones_like(z) * t**3, torch.zeros(1, dtype=torch.float64),
                                            0.0, 1.0, 0.5, FIXED_STEP_SOLVERS["fixed_rk4"])
    if abs(float(cubic_integral) - 0.25) > 1e-12:
        raise AssertionError(f"fixed_rk4 gave {float(cubic_integral)} for the integral of t^3 over [0, 1]")

    torch.manual_seed(0)
    image = torch.rand(1, 3, 6, 6)
    small = {"num_feat": 8, "ode_layers": 2, "time_dependent": True, "augment_channels": 2}
    discrete = NODESRNet(**small, solver="fixed_rk4", step_size=0.25)
    anode = NODESRNet(**small, solver="fixed_rk4", step_size=0.25, backprop="anode")
    anode.load_state_dict(discrete.state_dict())
    gradients = []
    for net in (discrete, anode):
        net(image).abs().mean().backward()
        gradients.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    mismatch = float((gradients[0] - gradients[1]).norm() / gradients[0].norm())
    if mismatch > 1e-5:
        raise AssertionError(f"ANODE and discrete gradients differ by {mismatch:.2e} (relative)")
    if (anode.nfe_forward, anode.nfe_backward) != (16, 16):
        raise AssertionError(f"expected 16 forward / 16 backward NFE, got {anode.nfe_forward} / {anode.nfe_backward}")

    guarded = NODESRNet(**small, solver="dopri5", max_nfe=3)
    try:
        guarded(image)
    except MaxNFEExceeded:
        pass
    else:
        raise AssertionError("max_nfe=3 did not stop a dopri5 solve (which needs at least 8 evaluations)")

    return (f"NODESRNet ok: 569,251 params at the paper's DIV2K config; classic RK4 exact on t^3; ANODE = discrete "
            f"gradients (rel. diff {mismatch:.1e}); 16/16 NFE; max-NFE guard fires")
