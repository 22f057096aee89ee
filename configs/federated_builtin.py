"""Pilot's federated scenarios on the built-in suite: 4 task families x 2 clients (K = 8).

    python -m jaxlvlm.main --config configs/federated_builtin.py:approach=pilot --workdir runs/fed_pilot
    python -m jaxlvlm.main --config configs/federated_builtin.py:approach=fedavg --workdir runs/fed_avg
    ... approach=fedprox | local | centralized; backend=loop runs clients in sequence;
    scenario=multimodal for the all-multimodal tasks (docs/benchmark.md, Pilot).

Tasks, chosen among the families the small model learns within a CPU budget (``scenario``):
- 'mixed' (default): digits_palette (handwritten digits in an inverted-colour domain the base never
  saw), digit_pair (sums and comparisons of two digits), counting_noisy (counting over noisy
  backgrounds) and arithmetic (text-only; its clients never use the connector's adapters);
- 'multimodal': digits_palette, digit_pair, counting_noisy and digits_noisy (handwritten digits over
  noise): every client uses the connector, so Pilot's cross-task mixture of adapters can act on
  every task.
No client task is a (family, domain) pair the base trained on (checked when the config is built).
Each task's training data (``per_client`` samples per client) is split IID (or Dirichlet label skew
with partition=dirichlet) between its two clients. The data (train and test samples) are the same
for every config.seed, so test samples pair up across approaches and seeds. All approaches start
from the same base model (connector + LLM trained on other families until its validation score
stops improving, checked every base_eval_every steps, at most base_steps) and train LoRA +
connector adapters. Colon arguments: test, scenario, approach, backend, rounds, epochs, per_client,
eval_num, round_eval_num (after every round, each client's model on the first this many test
samples of its task: the per-round curves; 0 = off), base_steps, base_eval_every, partition, fault
(a client name whose round-1 upload is corrupted on purpose: the rejection drill).

Recipe for LLaVA-1.5-7B on accelerators (not run here): convert LLaVA-1.5-7B
(tools/convert_checkpoint.py) and set init_from; import ScienceQA, TextVQA, GQA and RefCOCO with the
data import tool as four tfds sources (one task each); method.clients_per_task=2, rounds=3,
local_epochs=1, lora rank 64 / alpha 128 on q/k/v/o/gate/up/down, lr_lora=2e-4,
lr_connector=2e-5, cross_hidden_dim=256, backend='vmap' if the 8 clients' adapters fit next to the
shared backbone (they do on one H100 in bf16), otherwise 'loop'; runtime bf16, scan_layers.
"""

from configs.common import (
    base_config,
    parse_arg,
    shrink_base_for_test,
    shrink_for_test,
    use_small_builtin_model,
    use_trained_base,
)

SCENARIOS = {
    "mixed": [
        ("digits", "palette", "digits_palette"),
        ("digit_pair", "plain", "digit_pair"),
        ("counting", "noisy", "counting_noisy"),
        ("arithmetic", "plain", "arithmetic"),
    ],
    "multimodal": [
        ("digits", "palette", "digits_palette"),
        ("digit_pair", "plain", "digit_pair"),
        ("counting", "noisy", "counting_noisy"),
        ("digits", "noisy", "digits_noisy"),
    ],
}
CLIENTS_PER_TASK = 2
# The base sees plain digits, counting and colours; the clients' tasks shift the domain or the skill.
BASE = [("digits", "plain"), ("counting", "plain"), ("attribute", "plain")]
BASE_NUM = 1600  # samples per base family (fixed: the base is the same whatever per_client is)


def scenario_tasks(scenario: str) -> list[tuple[str, str, str]]:
    """(family, domain, task) of the scenario's client tasks; none may be a base (family, domain)
    pair, or the base would already have been trained on a client's task."""
    if scenario not in SCENARIOS:
        raise ValueError(
            f"config argument scenario={scenario!r}: choose one of {sorted(SCENARIOS)}"
        )
    tasks = SCENARIOS[scenario]
    seen = [t for f, d, t in tasks if (f, d) in BASE]
    if seen:
        raise ValueError(f"scenario {scenario!r}: tasks {seen} are base (family, domain) pairs")
    return tasks


def get_config(arg: str | None = None):
    a = parse_arg(
        arg,
        test=False,
        approach="pilot",
        backend="loop",  # on the 2-core CPU the loop backend measured faster (tools.bench federated_round)
        scenario="mixed",
        rounds=3,
        epochs=3,
        per_client=200,
        eval_num=60,
        round_eval_num=0,
        base_steps=800,
        base_eval_every=100,
        partition="iid",
        fault="",
    )
    c = base_config()
    c.mode = "federated"
    tasks = scenario_tasks(a.scenario)
    if a.per_client < 1 or a.eval_num < 1 or a.round_eval_num < 0:
        raise ValueError(
            f"config arguments per_client={a.per_client}, eval_num={a.eval_num}: use >= 1; "
            f"round_eval_num={a.round_eval_num}: use >= 0"
        )
    num = 16 if a.test else CLIENTS_PER_TASK * a.per_client  # per task, split over its clients
    eval_num = 4 if a.test else a.eval_num
    # seed=0: the samples are the same for every config.seed (the seed sets init and order only).
    c.data.sources = tuple(
        dict(type="builtin", family=f, domain=d, split="train", num=num, task=t, seed=0)
        for f, d, t in tasks
    )
    c.data.eval_sources = tuple(
        dict(type="builtin", family=f, domain=d, split="test", num=eval_num, task=t, seed=0)
        for f, d, t in tasks
    )
    c.data.tasks = tuple(t for _, _, t in tasks)
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
    c.method.clients_per_task = CLIENTS_PER_TASK
    c.method.rounds = a.rounds
    c.method.local_epochs = a.epochs
    c.method.round_eval_num = min(a.round_eval_num, eval_num)
    c.method.partition = a.partition
    c.method.lr_lora = 1e-3
    c.method.lr_connector = 3e-4
    c.method.cross_hidden_dim = 64
    base = [
        dict(type="builtin", family=f, domain=d, split="train", num=BASE_NUM, task=f"{f}-{d}")
        for f, d in BASE
    ]
    use_trained_base(c, base, a.base_steps, a.base_eval_every)
    c.method.fault_drill_client = a.fault
    if a.test:
        c = shrink_for_test(c)
        c.data.buckets = (96,)
        c.data.global_batch_size = 8
        c.data.eval_batch_size = 8
        shrink_base_for_test(c, 2 if a.base_steps else 0)
        c.method.rounds = min(a.rounds, 2)
        c.method.cross_hidden_dim = 8
    return c
