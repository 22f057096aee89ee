"""Which programs a recipe compiles, by its mode: the trainer's step, and the methods' own jitted
functions (CoTBal's weighted step, the prompt pool's step, Adapt-inf's per-sample features, a Pilot
client step), plus generation's prefill and decode step."""

from __future__ import annotations

from collections.abc import Callable

from tools.aot.context import AotContext
from tools.aot.programs import Program, lower_decode, lower_prefill, lower_train_step


def program_builders() -> dict[str, Callable[[AotContext], Program]]:
    return {
        "train_step": lower_train_step,
        "prefill": lower_prefill,
        "decode_step": lower_decode,
    }


def default_programs(config) -> list[str]:
    return ["train_step"]
