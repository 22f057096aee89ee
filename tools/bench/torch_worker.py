"""The PyTorch side of a benchmark in its own process, as PyTorch's users run it.

Run in one process with jaxlvlm, PyTorch shares the process's allocator: with jaxlvlm's host-memory
setting applied (jaxlvlm/host_memory.py) both sides draw from one glibc arena, PyTorch gets the
setting too, and each side's freed blocks are where the other's next buffers land. A side-by-side
ratio then measures the pair, not each framework as it is run. ``TorchWorker`` starts this module
as a child process that builds the reference model, saves it for jaxlvlm to load, and times its
train steps on request, so the parent can interleave the two sides in time while each keeps its own
process, threads and allocator. ``keep_host_memory=True`` applies jaxlvlm's allocator setting in
the worker too (before torch is imported), to show what PyTorch gains from it.

Protocol: one JSON object per line. The parent writes requests to the worker's stdin; the worker
answers each on the pipe that was its stdout (everything else it prints goes to stderr):

  {"op": "build", "config": NAME, "save_dir": DIR} -> {"params": N}  (model seeded; saved to DIR
                                                       unless DIR is null)
  {"op": "prepare"}                                -> {"first_loss": x}  (optimizer, one step)
  {"op": "steps", "warmup": W, "iters": N}         -> {"times": [s]*N, "faults": F, "system_s": S,
                                                       "steps": W + N}
  {"op": "peak", "n": 2048}                        -> {"flops": f}  (fp32 n^3 matmul, PyTorch)
  {"op": "exit"}                                   -> (the worker exits)

A failed request answers {"error": "..."}; the parent raises it with the worker's traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback

from tools.bench.common import ROOT


class TorchWorker:
    """Parent-side handle of one worker process; ``with TorchWorker() as w: w.build(...)``."""

    def __init__(self, keep_host_memory: bool = False):
        cmd = [sys.executable, "-m", "tools.bench.torch_worker"]
        if keep_host_memory:
            cmd.append("--keep-host-memory")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.host_memory = self._call({"op": "hello"})["host_memory"]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _call(self, request: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            code = self.proc.wait()
            raise RuntimeError(
                f"the PyTorch worker (pid {self.pid}) exited with status {code} during "
                f"{request['op']!r}; its stderr above says why"
            )
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(
                f"the PyTorch worker failed on {request['op']!r}:\n{answer['error']}"
            )
        return answer

    def build(self, config: str, save_dir: str | None) -> int:
        """Builds bench config ``config`` (seed 0), saves it to ``save_dir`` unless None; returns
        its number of parameters."""
        return self._call({"op": "build", "config": config, "save_dir": save_dir})["params"]

    def prepare(self) -> float:
        """Makes the optimizer and runs the first step; returns its loss."""
        return self._call({"op": "prepare"})["first_loss"]

    def steps(self, warmup: int, iters: int) -> dict:
        """Runs warmup + iters steps; {'times': seconds of the iters, 'faults', 'system_s',
        'steps'}: the worker's own minor page faults and system CPU over all of them."""
        return self._call({"op": "steps", "warmup": warmup, "iters": iters})

    def peak(self, n: int = 2048) -> float:
        return self._call({"op": "peak", "n": n})["flops"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> TorchWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TorchSide:
    """The PyTorch side itself: the model, its inputs and its step. The worker serves one; the
    shared-process mode of tools.bench.train_step uses one directly (same methods as TorchWorker).
    """

    pid = None  # runs in the caller's process

    def __init__(self, host_memory: str = "shared with the caller's process"):
        self.host_memory = host_memory
        self.model = None
        self.inputs = None
        self.run = None

    def build(self, config: str, save_dir: str | None) -> int:
        from tools.bench.common import BENCH_CONFIGS
        from tools.bench.hf_reference import build_torch_llava, make_inputs, save_torch_llava

        self.model = self.run = None  # free the last config's model first
        cfg = BENCH_CONFIGS[config]
        self.model = build_torch_llava(cfg)
        self.inputs = make_inputs(cfg)
        if save_dir is not None:
            save_torch_llava(self.model, save_dir)
        return sum(p.numel() for p in self.model.parameters())

    def prepare(self) -> float:
        from tools.bench.train_step import torch_train_step

        self.run, first_loss = torch_train_step(self.model, self.inputs)
        return first_loss

    def steps(self, warmup: int, iters: int) -> dict:
        from tools.bench.common import time_fn
        from tools.bench.kernel_cost import KernelCost

        cost = KernelCost()
        with cost.over(warmup + iters):
            t = time_fn(self.run, warmup=warmup, iters=iters)
        return {"times": t["times"], "faults": cost.faults, "system_s": cost.system_s,
                "steps": warmup + iters}  # fmt: skip

    def peak(self, n: int = 2048) -> float:
        from tools.bench.matmul_peak import measure_torch_matmul_peak

        return measure_torch_matmul_peak(n)

    def close(self) -> None:
        self.model = self.run = None

    def __enter__(self) -> TorchSide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def handle(self, request: dict) -> dict:
        """One protocol request (module docstring) -> its answer."""
        op = request["op"]
        if op == "hello":
            return {"host_memory": self.host_memory, "pid": os.getpid()}
        if op == "build":
            return {"params": self.build(request["config"], request["save_dir"])}
        if op == "prepare":
            return {"first_loss": self.prepare()}
        if op == "steps":
            return self.steps(request["warmup"], request["iters"])
        if op == "peak":
            return {"flops": self.peak(request["n"])}
        raise ValueError(f"unknown request {op!r} (expected build, prepare, steps, peak or exit)")


def serve(keep_host_memory: bool) -> None:
    # Answers go to the pipe that stdout was; anything else printed (by transformers, by C code
    # writing to fd 1) is sent to stderr so it cannot corrupt the protocol.
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    host_memory = "not applied (PyTorch's own default)"
    if keep_host_memory:
        from jaxlvlm.host_memory import keep_freed_host_memory

        host_memory = keep_freed_host_memory()  # before torch starts any thread
    import torch  # noqa: F401 - its threads and allocator start here, after the setting

    state = TorchSide(host_memory)
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("op") == "exit":
            break
        try:
            answer = state.handle(request)
        except Exception:  # noqa: BLE001 - reported to the parent, which raises it
            answer = {"error": traceback.format_exc()}
        answers.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    serve("--keep-host-memory" in sys.argv[1:])
