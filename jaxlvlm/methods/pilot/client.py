"""Client work decomposed as init / local steps / final (FedJAX-style), run by a swappable backend.

A ``ClientProgram`` is three pure functions:
  init(payload, client_state, key) -> local_state      what the server sent + what the client kept
  step(local_state, batch, shared) -> (local_state, metrics)   one local optimisation step
  final(local_state) -> (upload, client_state)         what travels back + what stays on the client
Backends run every client's init -> scan(step over its batches) -> final:
  ``run_clients_vmap``: all clients at once, stacked on a leading axis (their shapes must agree);
  ``run_clients_loop``: one client at a time (the same jitted program), then stacked.
Both return identical results (tested), so a real federated engine can call the three functions.
The jitted round is cached per program: build a program once and reuse it across rounds.
``shared`` is what every client uses but nobody trains or sends (the frozen backbone): it is an
argument of the jitted round (never a baked-in constant) and is not vmapped (one copy, not K).
A per-step ``active`` flag lets clients with fewer batches idle: an inactive step leaves the local
state (optimiser moments included) exactly unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


@dataclasses.dataclass(frozen=True)
class ClientProgram:
    """The three pure functions of one client's round (see the module docstring)."""

    init: Callable[[PyTree, PyTree, jax.Array], PyTree]
    step: Callable[[PyTree, PyTree, PyTree], tuple[PyTree, PyTree]]
    final: Callable[[PyTree], tuple[PyTree, PyTree]]


def _run_one(program: ClientProgram, shared, payload, client_state, batches, active, key):
    """One client's round: batches leaves [S, ...], active [S] bool -> (upload, state, metrics [S])."""
    local = program.init(payload, client_state, key)

    def body(state, xs):
        batch, on = xs
        new_state, metrics = program.step(state, batch, shared)
        state = jax.tree_util.tree_map(lambda n, o: jnp.where(on, n, o), new_state, state)
        return state, metrics

    local, metrics = jax.lax.scan(body, local, (batches, active))
    upload, client_state = program.final(local)
    return upload, client_state, metrics


@functools.lru_cache(maxsize=32)
def _jitted(program: ClientProgram, vmapped: bool):
    """One compiled round function per program (programs are frozen dataclasses: hashable)."""
    one = lambda s, p, c, b, a, k: _run_one(program, s, p, c, b, a, k)
    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0, 0, 0)) if vmapped else one)


def run_clients_vmap(
    program: ClientProgram,
    payloads: PyTree,
    client_states: PyTree,
    batches: PyTree,
    active: jax.Array,
    keys: jax.Array,
    shared: PyTree = None,
) -> tuple[PyTree, PyTree, PyTree]:
    """All K clients in one vmapped, jitted call.

    payloads / client_states: leaves [K, ...]; batches: leaves [K, S, ...]; active [K, S] bool;
    keys [K]; shared: one pytree for all clients -> (uploads [K, ...], client_states [K, ...],
    metrics [K, S, ...]).
    """
    return _jitted(program, True)(shared, payloads, client_states, batches, active, keys)


def run_clients_loop(
    program: ClientProgram,
    payloads: PyTree,
    client_states: PyTree,
    batches: PyTree,
    active: jax.Array,
    keys: jax.Array,
    shared: PyTree = None,
) -> tuple[PyTree, PyTree, PyTree]:
    """The same as ``run_clients_vmap``, one client after the other (same arguments and results)."""
    fn = _jitted(program, False)
    num_clients = active.shape[0]
    take = lambda tree, i: jax.tree_util.tree_map(lambda x: x[i], tree)
    outs = [
        fn(shared, take(payloads, i), take(client_states, i), take(batches, i), active[i], keys[i])
        for i in range(num_clients)
    ]
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outs)


BACKENDS = {"vmap": run_clients_vmap, "loop": run_clients_loop}


def run_clients(backend: str, *args) -> tuple[PyTree, PyTree, PyTree]:
    """Dispatches to the backend named 'vmap' or 'loop'."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown client backend '{backend}'; choose from {sorted(BACKENDS)}")
    return BACKENDS[backend](*args)
