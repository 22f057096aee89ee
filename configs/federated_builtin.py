"""Pilot's federated scenario on the built-in suite: 4 task families x 2 clients (K = 8).

    python -m jaxlvlm.main --config configs/federated_builtin.py:approach=pilot --workdir runs/fed_pilot
    python -m jaxlvlm.main --config configs/federated_builtin.py:approach=fedavg --workdir runs/fed_avg
    ... approach=fedprox | local | centralized; backend=loop runs clients in sequence.

Tasks (CoIN-like roles): mcq (ScienceQA-like), reading (TextVQA-like), spatial (GQA-like),
grounding (RefCOCO-like). Each task's training data is split IID (or Dirichlet label skew with
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

TASKS = [("mcq", "plain"), ("reading", "plain"), ("spatial", "plain"), ("grounding", "plain")]
BASE = [("attribute", "plain"), ("counting", "plain"), ("caption", "plain")]


def get_config(arg: str | None = None):
    a = parse_arg(
        arg,
        test=False,
        approach="pilot",
        backend="loop",  # on the 2-core CPU the loop backend measured faster (tools.bench federated_round)
        rounds=3,
        epochs=1,
        num=400,
        eval_num=60,
        base_steps=400,
        partition="iid",
        fault="",
    )
    c = base_config()
    c.mode = "federated"
    num = 16 if a.test else a.num
    eval_num = 4 if a.test else a.eval_num
    c.data.sources = tuple(
        dict(type="builtin", family=f, domain=d, split="train", num=num, task=f) for f, d in TASKS
    )
    c.data.eval_sources = tuple(
        dict(type="builtin", family=f, domain=d, split="test", num=eval_num, task=f)
        for f, d in TASKS
    )
    c.data.tasks = tuple(f for f, _ in TASKS)
    c.data.global_batch_size = 16
    c.data.eval_batch_size = 60
    c.data.buckets = (96,)
    use_small_builtin_model(c)
    c.lora.enabled = True
    c.lora.targets = ("q_proj", "v_proj", "o_proj")
    c.lora.rank = 8
    c.lora.alpha = 16.0
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 10
    c.train.log_every = 25
    c.eval.max_new_tokens = 12
    c.method.approach = a.approach
    c.method.backend = a.backend
    c.method.rounds = a.rounds
    c.method.local_epochs = a.epochs
    c.method.partition = a.partition
    c.method.lr_lora = 2e-3
    c.method.lr_connector = 5e-4
    c.method.cross_hidden_dim = 64
    c.method.base_steps = a.base_steps
    c.method.base_sources = tuple(
        dict(type="builtin", family=f, domain=d, split="train", num=4 * a.num, task=f)
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
