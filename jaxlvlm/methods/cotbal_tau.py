"""CoTBal's temperature by the paper's guidance: the lowest tau that keeps every weight in
[0.5, 2.0] (VisATB v3, implementation guidance; docs/methods.md section 1(c)).

Every weight tends to 1 as tau grows, so the feasible set contains all large tau. The search scans
a log grid downwards from 1e3 to the first infeasible tau and bisects between it and the last
feasible grid point, so it returns the lower end of the feasible interval that reaches infinity
(a weight curve that is not monotone in tau cannot make it skip a violation between grid points
by more than one grid step).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlvlm.methods.cotbal_mix import mixed_weights

WEIGHT_BOUNDS = (0.5, 2.0)
TAU_RANGE = (1e-3, 1e3)


def _feasible(c_out, c_in, D, taus, alphas, bounds) -> np.ndarray:
    w = jax.vmap(lambda t: mixed_weights(c_out, c_in, D, t, alphas))(jnp.asarray(taus))
    return np.asarray(jnp.all((w >= bounds[0]) & (w <= bounds[1]), axis=1))


def auto_temperature(
    c_out: jax.Array,
    c_in: jax.Array,
    D: jax.Array,
    alphas: Sequence[float],
    bounds: tuple[float, float] = WEIGHT_BOUNDS,
    grid: int = 241,
    bisections: int = 40,
) -> float:
    """The lowest tau with every weight of eqs. (4)-(5) in ``bounds``.

    c_out, c_in, D: [T] of the balanced tasks only. Returns tau in [1e-3, 1e3]; 1e-3 when even
    that keeps the weights in bounds (near-equal inputs).
    """
    c_out, c_in, D = (jnp.asarray(x, jnp.float32) for x in (c_out, c_in, D))
    alphas = tuple(float(a) for a in alphas)
    taus = np.geomspace(TAU_RANGE[1], TAU_RANGE[0], grid)
    ok = _feasible(c_out, c_in, D, taus, alphas, bounds)
    if not ok[0]:
        raise ValueError(f"no temperature up to {TAU_RANGE[1]} keeps the weights in {bounds}")
    bad = np.flatnonzero(~ok)
    if len(bad) == 0:
        return float(taus[-1])
    lo, hi = float(taus[bad[0]]), float(taus[bad[0] - 1])  # infeasible, feasible
    for _ in range(bisections):
        mid = float(np.sqrt(lo * hi))
        if _feasible(c_out, c_in, D, [mid], alphas, bounds)[0]:
            hi = mid
        else:
            lo = mid
    return hi


def resolve_temperature(
    tau: float | str, c_out: jax.Array, c_in: jax.Array, D: jax.Array, alphas: Sequence[float]
) -> float:
    """``tau`` itself, or auto_temperature(...) when tau == 'auto'."""
    if isinstance(tau, str):
        if tau != "auto":
            raise ValueError(f"CoTBal tau={tau!r}: give a number > 0 or 'auto'")
        return auto_temperature(c_out, c_in, D, alphas)
    return float(tau)
