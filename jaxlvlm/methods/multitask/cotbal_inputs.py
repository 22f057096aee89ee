"""Reading CoTBal's probe results from a JSON file, so a run can skip the probe phase.

The file holds either the raw probe scores or the reduced vectors of the authors' script:

  {"tasks": ["vqa", "count", ...],          optional: names, in the file's order
   "V": [[...], ...], "v0": [...],           raw scores: V[i][j] = probe i on task j, v0 = mini model
   "higher_better": [true, ...]}             optional, with V/v0 only
or
  {"tasks": [...], "c_out": [...], "c_in": [...], "D": [...]}      ("ratio" = v0/V_ii instead of D)

with an optional "balanced": [true, ...] (false = fixed weight 1, e.g. text-only tasks).
When the run's task names are given, the file's entries are matched by name and reordered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxlvlm.files import read_json, write_json_atomic
from jaxlvlm.methods import cotbal
from jaxlvlm.methods.cotbal_tau import resolve_temperature

_RAW = ("V", "v0")
_REDUCED = ("c_out", "c_in")


class CotbalInputError(ValueError):
    """A CoTBal input file that cannot be used; the message names the file and the key."""


def load_cotbal_inputs(path: str, task_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Reads and validates a CoTBal input file.

    Args:
      path: JSON file.
      task_names: the run's tasks; the file must then list "tasks" covering exactly these names.
    Returns:
      dict of float64 arrays in the run's task order: either {'V' [T, T], 'v0' [T]} or
      {'c_out', 'c_in', 'D'} (each [T]), plus optional 'higher_better' / 'balanced' bool [T].
    """
    try:
        raw: Any = read_json(path)
    except json.JSONDecodeError as e:
        raise CotbalInputError(f"{path}: not valid JSON ({e})") from e
    if raw is None:
        raise CotbalInputError(f"CoTBal input file {path!r} does not exist")
    if not isinstance(raw, dict):
        raise CotbalInputError(f"{path}: expected a JSON object with V/v0 or c_out/c_in/D")
    has_raw = any(k in raw for k in _RAW)
    has_red = any(k in raw for k in (*_REDUCED, "D", "ratio"))
    if has_raw == has_red:
        raise CotbalInputError(
            f"{path}: give either 'V' and 'v0' (probe scores) or 'c_out', 'c_in' and 'D' (or "
            f"'ratio'), not {'both' if has_raw else 'neither'}; keys found: {sorted(raw)}"
        )
    out: dict[str, np.ndarray] = {}
    if has_raw:
        for k in _RAW:
            if k not in raw:
                raise CotbalInputError(f"{path}: key {k!r} is missing (V and v0 go together)")
        out["v0"] = _vector(path, raw, "v0")
        T = len(out["v0"])
        V = _probe_matrix(path, raw)
        if V.shape != (T, T):
            raise CotbalInputError(
                f"{path}: 'V' has shape {V.shape}, expected ({T}, {T}) to match 'v0'"
            )
        out["V"] = V
        if "higher_better" in raw:
            out["higher_better"] = _flags(path, raw, "higher_better", T)
    else:
        for k in _REDUCED:
            if k not in raw:
                raise CotbalInputError(
                    f"{path}: key {k!r} is missing (c_out, c_in and D go together)"
                )
        if ("D" in raw) == ("ratio" in raw):
            raise CotbalInputError(f"{path}: give exactly one of 'D' and 'ratio' (= v0 / V_ii)")
        out["c_out"] = _vector(path, raw, "c_out")
        out["c_in"] = _vector(path, raw, "c_in")
        out["D"] = _vector(path, raw, "D") if "D" in raw else 1.0 - _vector(path, raw, "ratio")
        T = len(out["c_out"])
        for k in ("c_in", "D"):
            if len(out[k]) != T:
                raise CotbalInputError(f"{path}: {k!r} has {len(out[k])} entries, 'c_out' has {T}")
        if "higher_better" in raw:
            raise CotbalInputError(f"{path}: 'higher_better' only applies to raw V/v0 scores")
    if "balanced" in raw:
        out["balanced"] = _flags(path, raw, "balanced", T)
    if T < 2:
        raise CotbalInputError(f"{path}: CoTBal needs at least 2 tasks, the file has {T}")
    return _reorder(path, raw.get("tasks"), task_names, out, T)


def cotbal_weights_from_file(
    path: str,
    task_names: Sequence[str] | None = None,
    tau: float | str = 0.5,
    alphas: Sequence[float] = cotbal.DEFAULT_ALPHAS,
) -> dict[str, np.ndarray]:
    """Weights (eqs. 1-5) from a CoTBal input file; tau 'auto' is resolved on the balanced tasks.

    Returns: dict with 'lam' [T] and whichever of C [T, T], c_out, c_in, D [T] were computed or read.
    """
    inp = load_cotbal_inputs(path, task_names)
    if "V" in inp:
        res = cotbal.weights_from_scores(
            inp["V"], inp["v0"], tau, alphas, inp.get("higher_better"), inp.get("balanced")
        )
    else:
        bal = inp.get("balanced", np.ones(len(inp["c_out"]), bool))
        tau = resolve_temperature(tau, inp["c_out"][bal], inp["c_in"][bal], inp["D"][bal], alphas)
        lam = cotbal.cotbal_weights(inp["c_out"], inp["c_in"], inp["D"], tau, alphas, bal)
        res = {"c_out": inp["c_out"], "c_in": inp["c_in"], "D": inp["D"], "lam": lam, "tau": tau}
    return {k: np.asarray(v) for k, v in res.items()}


def _array(path: str, raw: dict, key: str) -> np.ndarray:
    try:
        arr = np.asarray(raw[key], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise CotbalInputError(f"{path}: {key!r} must hold numbers ({e})") from e
    if not np.all(np.isfinite(arr)):
        raise CotbalInputError(f"{path}: {key!r} holds non-finite values: {raw[key]}")
    return arr


def _probe_matrix(path: str, raw: dict) -> np.ndarray:
    """V with null rows allowed for fixed-weight tasks ('balanced' false: no probe was trained)."""
    rows, bal = raw["V"], raw.get("balanced")
    if not isinstance(rows, list) or not isinstance(bal, list) or len(bal) != len(rows):
        return _array(path, raw, "V")
    fixed = np.asarray([b is False for b in bal])
    probed = _array(path, {"V": [r for r, f in zip(rows, fixed, strict=True) if not f]}, "V")
    out = np.full((len(rows), probed.shape[-1] if probed.ndim == 2 else len(rows)), np.nan)
    out[~fixed] = probed
    return out


def _vector(path: str, raw: dict, key: str) -> np.ndarray:
    arr = _array(path, raw, key)
    if arr.ndim != 1:
        raise CotbalInputError(f"{path}: {key!r} must be a list of numbers, got shape {arr.shape}")
    return arr


def _flags(path: str, raw: dict, key: str, T: int) -> np.ndarray:
    val = raw[key]
    if not isinstance(val, list) or len(val) != T or not all(isinstance(v, bool) for v in val):
        raise CotbalInputError(
            f"{path}: {key!r} must be a list of {T} true/false values, got {val!r}"
        )
    return np.asarray(val, bool)


def _reorder(path, file_tasks, task_names, out, T):
    if task_names is None:
        return out
    if file_tasks is None:
        if len(task_names) != T:
            raise CotbalInputError(
                f"{path}: the file has {T} tasks and no 'tasks' list; the run has {len(task_names)} "
                f"tasks {list(task_names)}: add 'tasks' with the names"
            )
        return out
    if not isinstance(file_tasks, list) or len(file_tasks) != T or len(set(file_tasks)) != T:
        raise CotbalInputError(f"{path}: 'tasks' must list {T} distinct names, got {file_tasks!r}")
    missing = [t for t in task_names if t not in file_tasks]
    extra = [t for t in file_tasks if t not in task_names]
    if missing or extra:
        raise CotbalInputError(
            f"{path}: task names do not match the run: missing from the file {missing}, "
            f"not in the run {extra}"
        )
    order = np.asarray([file_tasks.index(t) for t in task_names])
    res = {}
    for k, v in out.items():
        res[k] = v[np.ix_(order, order)] if k == "V" else v[order]
    return res


def write_cotbal_inputs(
    path: str,
    task_names: Sequence[str],
    V: np.ndarray,
    v0: np.ndarray,
    balanced: Sequence[bool] | None = None,
) -> None:
    """Writes probe scores in the format load_cotbal_inputs reads (so a probe phase can be reused).

    balanced [T]: False for a fixed-weight task, which has no probe: its row of V is written as
    nulls (and read back as such); every other value must be finite.
    """
    T = len(task_names)
    bal = np.ones(T, bool) if balanced is None else np.asarray(balanced, bool)
    V = np.asarray(V, np.float64)
    if not np.all(np.isfinite(V[bal])) or not np.all(np.isfinite(np.asarray(v0))):
        raise ValueError(f"refusing to write non-finite probe scores to {path}")
    doc = {
        "tasks": list(task_names),
        "V": [[float(x) for x in row] if b else [None] * T for row, b in zip(V, bal, strict=True)],
        "v0": [float(x) for x in np.asarray(v0)],
        "balanced": [bool(b) for b in bal],
    }
    write_json_atomic(path, doc, what="CoTBal probe scores")
