"""Pilot's federated scenario on the built-in suite: 4 task families x 2 clients (K = 8).

    python -m jaxlvlm.main --config configs/federated_builtin.py:approach=pilot --workdir runs/fed_pilot
    python -m jaxlvlm.main --config configs/federated_builtin.py:approach=fedavg --workdir runs/fed_avg
    ... approach=fedprox | local | centralized; backend=loop runs clients in sequence.

Tasks, chosen among the families the small model learns within a CPU budget: digits_palette
(handwritten digits in an inverted-colour domain the base never saw), digit_pair (sums and
comparisons of two digits), counting_noisy (counting over noisy backgrounds) and arithmetic
(text-only; its clients never use the connector's adapters). Each task's training data is split IID (or Dirichlet label skew with
partition=dirichlet) between its two clients. All approaches start from the same base model
(connector + LLM trained for base_steps on other families) and train LoRA + connector adapters.
Colon arguments: test, approach, backend, rounds, epochs, num, eval_num, base_steps, partition,
fault (a client name whose round-1 upload is corrupted on purpose: the rejection drill).

Recipe for LLaVA-1.5-7B on accelerators (not run here): convert LLaVA-1.5-7B
(tools/convert_checkpoint.py) and set init_from; import ScienceQA, TextVQA, GQA and RefCOCO with the
data import tool as four tfds sources (one task each); method.clients_per_task=2, rounds=3,
local_epochs=1, lora rank 64 / alpha 128 on q/k/v/o/gate/up/down, lr_lora=2e-4,
lr_connector=2e-5, cross_hidden_dim=256, backend='vmap' if the 8 clients' adapters fit next to the
shared backbone (they do on one H100 in bf16), otherwise 'loop'; runtime bf16, scan_layers.
"""

from configs.common import base_config, parse_arg, shrink_for_test, use_small_builtin_model

TASKS = [
    ("digits", "palette", "digits_palette"),
    ("digit_pair", "plain", "digit_pair"),
    ("counting", "noisy", "counting_noisy"),
    ("arithmetic", "plain", "arithmetic"),
]
# The base sees plain digits, counting and colours; the clients' tasks shift the domain or the skill.
BASE = [("digits", "plain"), ("counting", "plain"), ("attribute", "plain")]
BASE_LR = 5e-4  # full training of the base from scratch (at 2e-3 it never learns to read images)


def get_config(arg: str | None = None):
    a = parse_arg(
        arg,
        test=False,
        approach="pilot",
        backend="loop",  # on the 2-core CPU the loop backend measured faster (tools.bench federated_round)
        rounds=3,
        epochs=3,
        num=400,
        eval_num=60,
        base_steps=800,
        partition="iid",
        fault="",
    )
    c = base_config()
    c.mode = "federated"
    num = 16 if a.test else a.num
    eval_num = 4 if a.test else a.eval_num
    c.data.sources = tuple(
        dict(type="builtin", family=f, domain=d, split="train", num=num, task=t)
        for f, d, t in TASKS
    )
    c.data.eval_sources = tuple(
        dict(type="builtin", family=f, domain=d, split="test", num=eval_num, task=t)
        for f, d, t in TASKS
    )
    c.data.tasks = tuple(t for _, _, t in TASKS)
    c.data.max_images = 2  # digit_pair shows two images in half its samples
    c.data.global_batch_size = 16
    c.data.eval_batch_size = 60
    c.data.buckets = (96,)
    use_small_builtin_model(c)
    c.lora.enabled = True
    c.lora.targets = ("q_proj", "v_proj", "o_proj")
    c.lora.rank = 8
    c.lora.alpha = 16.0
    c.optim.lr = 1e-3  # LoRA on the frozen base (the centralized run uses method.lr_lora)
    c.optim.warmup_steps = 10
    c.train.log_every = 25
    c.eval.max_new_tokens = 12
    c.method.approach = a.approach
    c.method.backend = a.backend
    c.method.rounds = a.rounds
    c.method.local_epochs = a.epochs
    c.method.partition = a.partition
    c.method.lr_lora = 1e-3
    c.method.lr_connector = 3e-4
    c.method.cross_hidden_dim = 64
    c.method.base_steps = a.base_steps
    c.method.base_lr = BASE_LR
    c.method.base_sources = tuple(
        dict(type="builtin", family=f, domain=d, split="train", num=4 * a.num, task=f"{f}-{d}")
        for f, d in BASE
    )
    c.method.fault_drill_client = a.fault
    if a.test:
        c = shrink_for_test(c)
        c.data.buckets = (96,)
        c.data.global_batch_size = 8
        c.data.eval_batch_size = 8
        c.method.base_sources = tuple(dict(s, num=16) for s in c.method.base_sources)
        c.method.base_steps = 2 if a.base_steps else 0
        c.method.rounds = min(a.rounds, 2)
        c.method.cross_hidden_dim = 8
    return c
