"""methods.pilot.rounds.server_step: the one server step both engines run after a round."""

import jax.numpy as jnp
import numpy as np

from jaxlvlm.methods.pilot.aggregation import fedavg_with_weights
from jaxlvlm.methods.pilot.clients import stack, take
from jaxlvlm.methods.pilot.rounds import server_step


class _Averaging:
    """The smallest approach: every client holds {'w': [2]}; the server averages valid uploads."""

    K = 3

    def previous(self, state, payload, stage):
        return [take(payload, k) for k in range(self.K)]

    def aggregate(self, state, got, client_states, stage):
        avg, w = fedavg_with_weights(got.stacked, jnp.ones(self.K), jnp.asarray(got.valid))
        return {"payload": stack([avg] * self.K), "seen": got.valid}, 8 * self.K, w[None, :]


def test_absent_bad_and_good_updates_each_get_their_place():
    payload = stack([{"w": jnp.zeros(2)}] * 3)
    uploads = [{"w": jnp.full(2, 3.0)}, None, {"w": jnp.asarray([jnp.nan, 1.0])}]
    absent = {"b": "site 'b' did not answer within 5 s"}
    state, got, down, weights = server_step(
        _Averaging(), {}, "baseline", ["a", "b", "c"], payload, uploads, {}, absent
    )
    assert got.valid.tolist() == [True, False, False]
    assert [w for w, _ in got.rejected] == ["b", "c"]  # client order, absent ones included
    assert got.rejected[0][1] == absent["b"] and "non-finite" in got.rejected[1][1]
    np.testing.assert_array_equal(state["payload"]["w"][1], [3.0, 3.0])  # only 'a' counted
    assert down == 24
    assert weights == [[1.0, 0.0, 0.0]]  # the weights the aggregation applied, as JSON


def test_a_missing_upload_without_a_reason_is_still_named():
    payload = stack([{"w": jnp.zeros(2)}] * 3)
    uploads = [{"w": jnp.ones(2)}, {"w": jnp.ones(2)}, None]
    _, got, _, _ = server_step(_Averaging(), {}, "baseline", ["a", "b", "c"], payload, uploads, {})
    assert got.rejected == [("c", "client 'c' sent no update")]
