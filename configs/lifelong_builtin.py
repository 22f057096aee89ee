"""Adapt-∞ lifelong stream on the built-in suite, with deliberate near-duplicates and a rare task.

    python -m jaxlvlm.main --config configs/lifelong_builtin.py:approach=adapt_inf --workdir runs/ll
    python -m jaxlvlm.main --config configs/lifelong_builtin.py:approach=random --workdir runs/ll_rand
    python -m jaxlvlm.main --config configs/lifelong_builtin.py:approach=joint --workdir runs/ll_joint

Stream (4 steps), on the real handwritten digits where the small model learns within a CPU budget:
digits + counting_noisy -> digits_dup (the same generator and seed as digits: exact duplicates under
another name) + digit_pair_noisy -> digits_noisy (near-duplicates of the digits skill) +
counting_rare (counting over the palette domain, a tenth of the others' size) -> digits_palette.
The budget is 25% of the data that joins per step on average (``budget_frac``); the pool keeps
4 x budget after pruning; each step makes ``epochs`` passes over its selection (the joint and
'all' runs make the same number of passes over all their data). Colon arguments: test, approach,
scorer, num, eval_num, budget_frac, epochs, clusters, proj_dim, base_steps, base_eval_every, joint_summary (path of
the joint run's summary.json, for the relative gain).

Recipe for the paper's stream on accelerators (not run here): convert LLaVA-1.5-7B with
tools/convert_checkpoint.py, import LLaVA-665K, M3IT, MiniGPT-4, MANTIS, LAMM, Vision-Flan with the
data import tool (one tfds source per dataset, each its own task), then set init_from, the six
steps as method.stream, budget=25000 (LITE) or 100000, proj_dim=8192, num_clusters=10,
grad_layer=31, lora rank 128 / alpha 256 on q/k/v/o/gate/up/down, lr 2e-4, runtime bf16 with
scan_layers, mesh (1, -1, 1) for FSDP, data.buckets=(1024, 2048), eval on the skill benchmarks.
"""

from configs.common import (
    base_config,
    parse_arg,
    shrink_base_for_test,
    shrink_for_test,
    use_small_builtin_model,
    use_trained_base,
)

STREAM = [
    [("digits", "plain", "digits", 1.0), ("counting", "noisy", "counting_noisy", 1.0)],
    [("digits", "plain", "digits_dup", 1.0), ("digit_pair", "noisy", "digit_pair_noisy", 1.0)],
    [("digits", "noisy", "digits_noisy", 1.0), ("counting", "palette", "counting_rare", 0.1)],
    [("digits", "palette", "digits_palette", 1.0)],
]
# The frozen base sees handwritten digits (sums/comparisons of two), counting and the answer formats.
BASE = [("digit_pair", "plain"), ("counting", "plain"), ("arithmetic", "plain")]


def get_config(arg: str | None = None):
    a = parse_arg(
        arg,
        test=False,
        approach="adapt_inf",
        scorer="log_perplexity",
        num=600,
        eval_num=60,
        budget_frac=0.25,
        epochs=8,
        clusters=6,
        proj_dim=1024,
        base_steps=800,
        base_eval_every=100,
        joint_summary="",
    )
    c = base_config()
    c.mode = "lifelong"
    num = 16 if a.test else a.num
    eval_num = 4 if a.test else a.eval_num
    specs, evals, steps = [], [], []
    for step in STREAM:
        names = []
        for family, domain, name, frac in step:
            n = max(4, int(num * frac))
            specs.append(
                dict(
                    type="builtin",
                    family=family,
                    domain=domain,
                    split="train",
                    num=n,
                    task=name,
                    seed=0,
                )
            )
            evals.append(
                dict(
                    type="builtin",
                    family=family,
                    domain=domain,
                    split="test",
                    num=eval_num,
                    task=name,
                    seed=0,
                )
            )
            names.append(name)
        steps.append(tuple(names))
    c.data.sources = tuple(specs)
    c.data.eval_sources = tuple(evals)
    c.data.tasks = tuple(t for s in steps for t in s)
    c.data.global_batch_size = 32
    c.data.eval_batch_size = 60
    c.data.buckets = (96,)
    use_small_builtin_model(c)
    c.data.max_images = 2  # digit_pair shows two images in half its samples
    c.optim.lr = 1e-3  # LoRA + connector on the frozen base
    c.optim.warmup_steps = 5
    c.lora.enabled = True
    c.lora.targets = ("q_proj", "v_proj", "o_proj")
    c.lora.rank = 8
    c.lora.alpha = 16.0
    c.train.log_every = 10
    c.train.checkpoint_every = 50
    c.eval.max_new_tokens = 6
    per_step = sum(s["num"] for s in specs) / len(STREAM)
    c.method.approach = a.approach
    c.method.scorer = a.scorer
    c.method.stream = tuple(steps)
    c.method.budget = max(8, int(a.budget_frac * per_step))
    c.method.epochs = 1 if a.test else a.epochs
    c.method.num_clusters = a.clusters
    c.method.proj_dim = a.proj_dim
    base = [
        dict(type="builtin", family=f, domain=d, split="train", num=4 * a.num, task=f"{f}-{d}")
        for f, d in BASE
    ]
    use_trained_base(c, base, a.base_steps, a.base_eval_every)
    c.method.joint_summary = a.joint_summary
    if a.test:
        c = shrink_for_test(c)
        c.data.buckets = (96,)
        c.data.eval_batch_size = 8
        shrink_base_for_test(c, 2 if a.base_steps else 0)
        c.method.stream = tuple(steps[:2])
        c.method.num_clusters = 2
        c.method.proj_dim = 64
        c.method.feature_batch = 8
        c.method.budget = 8
    return c
