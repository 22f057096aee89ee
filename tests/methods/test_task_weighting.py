"""EW, TLA, DWA, RLW and CoTBal weightings against plain numpy references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlvlm.methods import task_weighting as tw

T = 3


def _batch(seed, B=6, L=5):
    rng = np.random.default_rng(seed)
    nll = rng.uniform(0.1, 3.0, (B, L)).astype(np.float32)
    mask = (rng.uniform(size=(B, L)) > 0.3).astype(np.float32)
    task = rng.integers(0, T, B).astype(np.int32)
    return nll, mask, task


def _np_token_loss(nll, mask, task, lam):
    w = lam[task][:, None] * mask
    return (w * nll).sum() / w.sum()


@functools.partial(jax.jit, static_argnums=0)
def _step(cfg, state, nll, mask, task, step):
    loss, lam = tw.weighted_task_loss(cfg, state, nll, mask, task, step)
    loss_sum, tokens = tw.per_task_sums(nll, mask, task, cfg.num_tasks)
    return loss, lam, tw.update_weighting_state(cfg, state, loss_sum, tokens, lam)


@functools.partial(jax.jit, static_argnums=0)
def _split_step(cfg, state, nll, mask, task, step):
    """The runner's path: before_step sets the weights, the trainer's loss reads them."""
    from jaxlvlm.train.losses import token_weighted_nll

    state = tw.before_step(cfg, state, mask, task, step)
    batch = {"loss_mask": mask, "task_ids": task, "targets": jnp.zeros(mask.shape, jnp.int32)}
    # Two-class logits [log p0, log(1 - p0)] with p0 = exp(-nll): their token NLL at target 0 is nll.
    p0 = jnp.exp(-nll)
    rest = jnp.log(jnp.maximum(1.0 - p0, 1e-30))
    logits = jnp.stack([jnp.log(p0), rest], axis=-1)
    num, den, _ = token_weighted_nll(logits, batch, state)
    loss_sum, tokens = tw.per_task_sums(nll, mask, task, cfg.num_tasks)
    return num / den, state["task_weights"], tw.after_step(cfg, state, loss_sum, tokens)


def test_ew_is_token_mean():
    cfg = tw.WeightingConfig("ew", T)
    nll, mask, task = _batch(0)
    loss, lam, state = _step(cfg, tw.init_weighting_state(cfg), nll, mask, task, 0)
    np.testing.assert_allclose(loss, (nll * mask).sum() / mask.sum(), rtol=1e-6)
    np.testing.assert_array_equal(lam, np.ones(T))
    np.testing.assert_array_equal(state["task_weights"], np.ones(T))


def test_tla_divides_the_sum_of_task_means_by_all_tasks():
    # VisATB weight_method.py, EqualWeightingTaskBalancing: sum_t mean_t * 1 / sum_t 1 over all T.
    cfg = tw.WeightingConfig("tla", T)
    nll, mask, task = _batch(1)
    task = np.array([0, 0, 0, 0, 2, 2], np.int32)  # task 1 absent from this batch
    loss, lam, _ = _step(cfg, tw.init_weighting_state(cfg), nll, mask, task, 0)
    means = [(nll * mask)[task == t].sum() / mask[task == t].sum() for t in (0, 2)]
    np.testing.assert_allclose(loss, sum(means) / T, rtol=1e-6)
    n = [mask[task == t].sum() for t in range(T)]
    np.testing.assert_allclose(lam, [sum(n) / (T * n[0]), 1.0, sum(n) / (T * n[2])], rtol=1e-6)


def test_cotbal_uses_static_weights_and_keeps_them():
    w = np.array([0.5, 1.0, 1.5], np.float32)
    cfg = tw.WeightingConfig("cotbal", T)
    state = tw.init_weighting_state(cfg, static_weights=w)
    nll, mask, task = _batch(2)
    loss, lam, state = _step(cfg, state, nll, mask, task, 3)
    np.testing.assert_allclose(loss, _np_token_loss(nll, mask, task, w), rtol=1e-6)
    np.testing.assert_array_equal(state["task_weights"], w)


class _ReferenceDWA:
    """VisATB weight_method.py DynamicWeightAverage, restated: a [2W, T] FIFO of per-step task
    mean losses starting at ones; from step k > W, lam = T softmax(mean(newest W) / mean(oldest W)
    / temp), computed after pushing step k's own losses. absent_as_zero=False leaves a task's
    absent steps (and the initial ones) out of the means instead of counting them as 0 (and 1)."""

    def __init__(self, window, temp, absent_as_zero):
        self.w, self.temp, self.zero = window, temp, absent_as_zero
        self.costs = np.ones((2 * window, T))
        self.present = np.zeros((2 * window, T), bool)
        self.k = 0

    def _lam(self, costs, present, k):
        if k <= self.w:
            return np.ones(T)
        weight = np.ones_like(costs) if self.zero else present.astype(float)
        new = (costs * weight)[self.w :].sum(0) / np.maximum(weight[self.w :].sum(0), 1)
        old = (costs * weight)[: self.w].sum(0) / np.maximum(weight[: self.w].sum(0), 1)
        # A task absent from the whole older half: the reference divides 0 by 0 there (a NaN
        # weight); both sides take the ratio 1 instead.
        ok = (weight[self.w :].sum(0) > 0) & (weight[: self.w].sum(0) > 0) & (old > 0)
        r = np.where(ok, new / np.where(ok, old, 1), 1.0)
        e = np.exp(r / self.temp - (r / self.temp).max())
        return T * e / e.sum()

    def before(self):  # the weights a trainer can know before the forward pass
        return self._lam(self.costs, self.present, self.k)

    def step(self, nll, mask, task):  # the reference: push first, then the weights
        present = np.array([mask[task == t].sum() > 0 for t in range(T)])
        means = [(nll * mask)[task == t].sum() / max(mask[task == t].sum(), 1) for t in range(T)]
        self.costs = np.concatenate([self.costs[1:], [np.where(present, means, 0.0)]])
        self.present = np.concatenate([self.present[1:], [present]])
        lam = self._lam(self.costs, self.present, self.k)
        self.k += 1
        return lam


@pytest.mark.parametrize("absent_as_zero", [True, False])
def test_dwa_rolling_window_matches_the_reference(absent_as_zero):
    cfg = tw.WeightingConfig(
        "dwa", T, dwa_window=2, dwa_temperature=2.0, dwa_absent_as_zero=absent_as_zero
    )
    ref = _ReferenceDWA(2, 2.0, absent_as_zero)
    fused = split = tw.init_weighting_state(cfg)
    for step in range(9):
        nll, mask, task = _batch(10 + step)
        nll = nll * (1.0 + 0.3 * task[:, None] * step)  # losses drift differently per task
        if step in (4, 5):
            task = np.where(task == 1, 0, task).astype(np.int32)  # task 1 missing from two steps
        want_split = ref.before()
        want = ref.step(nll, mask, task)
        loss, lam, fused = _step(cfg, fused, nll, mask, task, step)
        np.testing.assert_allclose(lam, want, rtol=1e-5, err_msg=f"step {step}")
        np.testing.assert_allclose(loss, _np_token_loss(nll, mask, task, want), rtol=1e-5)
        _, lam_split, split = _split_step(cfg, split, nll, mask, task, step)
        np.testing.assert_allclose(lam_split, want_split, rtol=1e-5, err_msg=f"step {step}")
    assert not np.allclose(lam, 1.0)  # the window did kick in


def test_rlw_draws_per_step_and_is_reproducible():
    cfg = tw.WeightingConfig("rlw", T, seed=7)
    state = tw.init_weighting_state(cfg)
    nll, mask, task = _batch(3)
    lam_a = [np.asarray(_step(cfg, state, nll, mask, task, s)[1]) for s in range(4)]
    lam_b = [
        np.asarray(_step(cfg, tw.init_weighting_state(cfg), nll, mask, task, s)[1])
        for s in range(4)
    ]
    for s in range(4):
        key = jax.random.fold_in(jax.random.PRNGKey(7), s)
        z = np.asarray(jax.random.normal(key, (T,), jnp.float32))
        e = np.exp(z - z.max())
        np.testing.assert_allclose(lam_a[s], T * e / e.sum(), rtol=1e-6)
        np.testing.assert_array_equal(lam_a[s], lam_b[s])
    assert not np.allclose(lam_a[0], lam_a[1])


@pytest.mark.parametrize("name", ["ew", "tla", "rlw"])
def test_before_after_step_path_equals_the_fused_loss(name):
    # TLA agrees while every task is in the batch (the trainer's loss divides by sum(lam m),
    # which equals the token count then); DWA's split path is tested against its reference above.
    cfg = tw.WeightingConfig(name, T)
    s1 = s2 = tw.init_weighting_state(cfg)
    for step in range(4):
        nll, mask, task = _batch(20 + step)
        task = np.arange(len(task), dtype=np.int32) % T
        nll = nll * (1.0 + task[:, None] * step)
        l1, lam1, s1 = _step(cfg, s1, nll, mask, task, step)
        l2, lam2, s2 = _split_step(cfg, s2, nll, mask, task, step)
        np.testing.assert_allclose(lam2, lam1, rtol=1e-6)
        np.testing.assert_allclose(l2, l1, rtol=1e-5)
    for k in s1:
        np.testing.assert_allclose(
            np.asarray(s2[k], np.float64), np.asarray(s1[k], np.float64), rtol=1e-6
        )


def test_per_task_sums():
    nll, mask, task = _batch(4)
    loss_sum, tokens = tw.per_task_sums(nll, mask, task, T)
    for t in range(T):
        np.testing.assert_allclose(loss_sum[t], (nll * mask)[task == t].sum(), rtol=1e-6)
        assert tokens[t] == mask[task == t].sum()


def test_bad_configs():
    with pytest.raises(ValueError, match="unknown task weighting 'foo'"):
        tw.WeightingConfig("foo", 3)
    with pytest.raises(ValueError, match="needs static_weights"):
        tw.init_weighting_state(tw.WeightingConfig("cotbal", 3))
    with pytest.raises(ValueError, match="run has 3 tasks"):
        tw.init_weighting_state(tw.WeightingConfig("cotbal", 3), static_weights=np.ones(4))
    with pytest.raises(ValueError, match="only used by 'cotbal'"):
        tw.init_weighting_state(tw.WeightingConfig("ew", 3), static_weights=np.ones(3))
