"""Console progress: a tqdm bar with step, loss, tokens/s, MFU and ETA (process 0 only)."""

from __future__ import annotations

import time

import jax
from tqdm import tqdm


class Progress:
    """Tracks throughput between log points and shows it on a tqdm bar (or log lines)."""

    def __init__(self, total: int, start: int, enabled: bool, step_flops: float, peak_flops: float):
        self.enabled = enabled and jax.process_index() == 0
        self.step_flops = step_flops
        self.peak = peak_flops * jax.device_count()
        self.bar = None
        if self.enabled:
            self.bar = tqdm(total=total, initial=start, desc="train", dynamic_ncols=True)
        self._t = time.perf_counter()
        self._step = start

    def rates(self, step: int, tokens: float) -> dict[str, float]:
        """Throughput since the previous call: steps/s, tokens/s, MFU (model FLOPs / peak)."""
        now = time.perf_counter()
        dt = max(now - self._t, 1e-9)
        steps = max(step - self._step, 1)
        self._t, self._step = now, step
        sps = steps / dt
        return {
            "steps_per_s": sps,
            "tokens_per_s": tokens / dt,
            "mfu": self.step_flops * sps / self.peak if self.peak > 0 else 0.0,
        }

    def update(self, step: int, info: dict) -> None:
        if self.bar is None:
            return
        self.bar.n = step
        self.bar.set_postfix(
            loss=f"{info['loss']:.4f}",
            tok_s=f"{info.get('tokens_per_s', 0):.0f}",
            mfu=f"{100 * info.get('mfu', 0):.1f}%",
            refresh=False,
        )
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
