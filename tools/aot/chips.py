"""The TPU chip table (HBM, bf16 peak) and the topology names ``tools.aot`` compiles for.

Figures are Google's per-chip specifications, in the unit each page states (GB = 1e9 bytes, GiB =
2**30): the HBM actually free for a program is a little less (the runtime reserves some), so a
margin of a few percent under these figures is not a guarantee.

Sources (Cloud TPU system architecture pages):
  v4   https://cloud.google.com/tpu/docs/v4   275 TFLOPs bf16, HBM2 32 GiB per chip
  v5e  https://cloud.google.com/tpu/docs/v5e  197 TFLOPs bf16, HBM 16 GB per chip
  v5p  https://cloud.google.com/tpu/docs/v5p  459 TFLOPs bf16, HBM2e 95 GB per chip
  v6e  https://cloud.google.com/tpu/docs/v6e  918 TFLOPs bf16, HBM 32 GB per chip

Names follow Cloud TPU accelerator types: v4-N and v5p-N count TensorCores (2 per chip, so v5p-128
is 64 chips, 4x4x4), v5e-N (v5litepod-N) and v6e-N count chips. ``v5p:4x4x4`` names a topology
directly.
"""

from __future__ import annotations

import dataclasses

GB = 1e9
GIB = 2.0**30


@dataclasses.dataclass(frozen=True)
class Chip:
    """One TPU generation: libtpu's name, HBM bytes and bf16 peak FLOP/s per chip, and how its
    accelerator-type names count (cores or chips) and lay chips out (2D or 3D torus)."""

    name: str  # libtpu topology prefix: 'v4', 'v5e', 'v5p', 'v6e'
    hbm_bytes: float
    peak_bf16_flops: float
    cores_per_name_unit: int  # 2: 'v5p-128' counts TensorCores; 1: 'v5e-8' counts chips
    dims: int  # 3: AxBxC torus; 2: AxB
    source: str


CHIPS: dict[str, Chip] = {
    "v4": Chip("v4", 32 * GIB, 275e12, 2, 3, "https://cloud.google.com/tpu/docs/v4"),
    "v5e": Chip("v5e", 16 * GB, 197e12, 1, 2, "https://cloud.google.com/tpu/docs/v5e"),
    "v5p": Chip("v5p", 95 * GB, 459e12, 2, 3, "https://cloud.google.com/tpu/docs/v5p"),
    "v6e": Chip("v6e", 32 * GB, 918e12, 1, 2, "https://cloud.google.com/tpu/docs/v6e"),
}
ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "trillium": "v6e"}

# Chip count -> the slice shape Google offers for it (v4/v5p: 3D tori; v5e/v6e: 2D tori).
SHAPES_3D = {
    4: (2, 2, 1),
    8: (2, 2, 2),
    16: (2, 2, 4),
    32: (2, 4, 4),
    64: (4, 4, 4),
    128: (4, 4, 8),
    256: (4, 8, 8),
    512: (8, 8, 8),
    1024: (8, 8, 16),
}
SHAPES_2D = {
    1: (1, 1),
    4: (2, 2),
    8: (2, 4),
    16: (4, 4),
    32: (4, 8),
    64: (8, 8),
    128: (8, 16),
    256: (16, 16),
}


@dataclasses.dataclass(frozen=True)
class Topology:
    """A slice: its chip, the libtpu topology name ('v5p:4x4x4') and its chip count."""

    chip: Chip
    libtpu_name: str
    num_chips: int

    @property
    def host_bounds(self) -> tuple[int, int, int]:
        """Chips per host: 2x2x1 on every slice of 4 or more chips (one host of 4 chips)."""
        return (2, 2, 1) if self.num_chips >= 4 else (1, 1, 1)


def _chip(prefix: str) -> Chip:
    key = ALIASES.get(prefix, prefix)
    if key not in CHIPS:
        raise ValueError(
            f"TPU generation {prefix!r} is not in the chip table; known: {sorted(CHIPS)} "
            f"(tools/aot/chips.py)"
        )
    return CHIPS[key]


def parse_topology(name: str) -> Topology:
    """'v5p-128' | 'v5e-8' | 'v5p:4x4x4' | 'v6e:8x8' -> Topology.

    Raises ValueError naming the known sizes when a name has no standard slice shape.
    """
    if ":" in name:
        prefix, shape = name.split(":", 1)
        chip = _chip(prefix)
        dims = tuple(int(s) for s in shape.split("x"))
        if len(dims) != chip.dims:
            raise ValueError(f"--topology {name}: {chip.name} slices are {chip.dims}-D (AxB[xC])")
        n = 1
        for d in dims:
            n *= d
        return Topology(chip, f"{chip.name}:{shape}", n)
    prefix, sep, size = name.rpartition("-")
    if not sep or not size.isdigit():
        raise ValueError(
            f"--topology {name!r}: expected an accelerator type like v5p-128 or v5e-8, or a "
            f"topology like v5p:4x4x4"
        )
    chip = _chip(prefix)
    units = int(size)
    if units % chip.cores_per_name_unit:
        raise ValueError(f"--topology {name}: {chip.name}-N counts TensorCores, N must be even")
    n = units // chip.cores_per_name_unit
    shapes = SHAPES_3D if chip.dims == 3 else SHAPES_2D
    if n not in shapes:
        sizes = sorted(k * chip.cores_per_name_unit for k in shapes)
        raise ValueError(
            f"--topology {name}: no standard {chip.name} slice of {n} chips; use one "
            f"of {[f'{chip.name}-{s}' for s in sizes]} or name the shape (v5p:AxBxC)"
        )
    shape = "x".join(str(d) for d in shapes[n])
    return Topology(chip, f"{chip.name}:{shape}", n)
