"""The config schema: every key of a run with its default, typed colon arguments, the test shrink.

It lives in the package so validation works wherever jaxlvlm is installed; configs/common.py
re-exports it for config files. Every config file starts from ``base_config()`` and changes values;
it never adds keys (jaxlvlm.train.config_check rejects unknown keys and names them), except inside
``method``, which belongs to the method's runner that reads it.

Colon arguments: ``--config configs/demo.py:test,steps=5`` calls ``get_config('test,steps=5')``;
``parse_arg`` turns that into typed values using the defaults a config file declares.
"""

from __future__ import annotations

import ml_collections

# Peak matmul throughput of the 2-core development CPU in float32 (docs/ENVIRONMENT.md).
CPU_PEAK_FLOPS = 215e9


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """Parses 'flag,key=value,...' into a ConfigDict typed like ``defaults``.

    A bare name sets a bool default to True ('test' -> test=True). Values are cast to the type of the
    default (int, float, bool, str). Unknown names raise a ValueError listing the known ones.
    """
    out = ml_collections.ConfigDict(dict(defaults))
    if not arg:
        return out
    for token in arg.split(","):
        token = token.strip()
        if not token:
            continue
        key, sep, raw = token.partition("=")
        if key not in defaults:
            raise ValueError(
                f"config argument {key!r} is unknown; known arguments: {sorted(defaults)}"
            )
        default = defaults[key]
        if not sep:
            if not isinstance(default, bool):
                raise ValueError(f"config argument {key!r} needs a value ({key}=...)")
            out[key] = True
            continue
        if isinstance(default, bool):
            lowered = raw.lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError(f"config argument {key}={raw!r}: expected true/false")
            out[key] = lowered in ("true", "1")
        elif isinstance(default, int):
            out[key] = int(raw)
        elif isinstance(default, float):
            out[key] = float(raw)
        else:
            out[key] = raw
    return out


def _vision(image_size, patch_size, hidden, ff, layers, heads) -> dict:
    return dict(
        style="clip",
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden,
        intermediate_size=ff,
        num_layers=layers,
        num_heads=heads,
    )


def _text(hidden, ff, layers, heads, kv_heads, vocab_size=0, max_positions=512) -> dict:
    return dict(
        arch="llama",
        vocab_size=vocab_size,  # 0 = the tokenizer's vocabulary size
        hidden_size=hidden,
        intermediate_size=ff,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        max_position_embeddings=max_positions,
    )


# The model shapes the configs and tests use, in one place: (vision dict, text dict).
#   default: base_config()'s small LVLM; small: the recipes' built-in-suite LVLM (CLIP-style ViT,
#   2 layers, width 128, 32-pixel images, 16 image tokens -> Llama-style decoder, 3 layers, width
#   128, GQA); test: the tiny model of the 'test' shrink (CPU tests).
MODEL_SIZES = {
    "default": (_vision(32, 8, 64, 128, 2, 4), _text(64, 128, 2, 4, 2)),
    "small": (_vision(32, 8, 128, 256, 2, 4), _text(128, 384, 3, 4, 2)),
    "test": (_vision(16, 8, 32, 64, 1, 2), _text(32, 64, 2, 2, 1)),
}


def set_model_size(c: ml_collections.ConfigDict, size: str) -> ml_collections.ConfigDict:
    """Sets config.model.vision / .text to the shapes of MODEL_SIZES[size]; returns ``c``."""
    vision, text = MODEL_SIZES[size]
    c.model.vision = dict(vision)
    c.model.text = dict(text)
    return c


def base_config() -> ml_collections.ConfigDict:
    """The complete schema of a jaxlvlm run with defaults (a small LVLM on the built-in suite)."""
    c = ml_collections.ConfigDict()
    c.mode = "train"  # a runner name: 'train', 'eval', or a method's runner
    c.seed = 0
    c.init_from = ""  # a converted checkpoint dir (tools/convert_checkpoint.py); '' = from scratch
    # Or start from two separate towers, assembled at the run's start into <workdir>/assembled
    # (jaxlvlm.train.assembly): a vision tower and an LM (HF dirs, a GGUF LM, or converted dirs),
    # the tokenizer to add '<image>' to ('' = the LM's), a Jinja chat template file for a tokenizer
    # without one, the vision layer the features come from, and the connector's init seed.
    c.assemble = ml_collections.ConfigDict(
        dict(vision="", llm="", tokenizer="", chat_template="", vision_feature_layer=-2, seed=0)
    )

    # Model: jaxlvlm.models.config.LVLMConfig as nested dicts.
    c.model = ml_collections.ConfigDict()
    c.model.vision, c.model.text = (dict(d) for d in MODEL_SIZES["default"])
    c.model.connector = "mlp2x_gelu"
    c.model.connector_kwargs = {}
    c.model.image_token_id = -1  # -1 = the tokenizer's '<image>' token id
    c.model.vision_feature_layer = -1
    c.model.vision_feature_select_strategy = "default"

    # How the model runs: jaxlvlm.models.config.RuntimeConfig.
    c.runtime = ml_collections.ConfigDict(
        dict(
            param_dtype="float32",
            compute_dtype="float32",  # 'bfloat16' for mixed precision (fp32 master weights)
            scan_layers=False,
            remat_vision="none",
            remat_text="none",
            attention_backend="xla",
            attention_query_blocks=4,  # causal 'xla' attention per query block (exact; 1 = off)
            attention_custom_vjp=False,  # True: 'xla' attention's flash-style backward
        )
    )

    # Device mesh ('data', 'fsdp', 'tensor'); one entry may be -1. rules: () = DEFAULT_RULES of
    # jaxlvlm.sharding, or a table of (logical_name, mesh_axis | (mesh_axes...) | None).
    c.mesh = ml_collections.ConfigDict(dict(shape=(-1, 1, 1), rules=()))

    # Multi-host: jax.distributed.initialize when enabled; empty values are read from the env
    # (JAXLVLM_COORDINATOR, JAXLVLM_NUM_PROCESSES, JAXLVLM_PROCESS_ID) or auto-detected on TPU pods.
    c.distributed = ml_collections.ConfigDict(
        dict(
            enabled=False,
            coordinator_address="",
            num_processes=0,
            process_id=-1,
            cpu_collectives="",
        )
    )

    # Tokenizer: 'builtin' (the suite's BPE), an HF tokenizer dir, or a .gguf file.
    c.tokenizer = "builtin"

    # Data: jaxlvlm.data.pipeline.DataConfig. sources / eval_sources are lists of source specs, e.g.
    # {'type': 'builtin', 'family': 'counting', 'split': 'train', 'num': 2000, 'task': 'counting'}.
    c.data = ml_collections.ConfigDict(
        dict(
            sources=(),
            eval_sources=(),
            tasks=(),  # task names; () = from the specs' 'task' keys (or their positions)
            global_batch_size=16,  # rows per global batch (all hosts)
            eval_batch_size=16,
            buckets=(64, 128),  # padded sequence lengths
            max_images=1,
            shuffle=True,
            num_epochs=ml_collections.config_dict.placeholder(int),  # None = repeat forever
            on_bad_sample="error",  # 'error' | 'skip'
            max_bad_samples=100,
            read_threads=2,
            prefetch=32,
            worker_count=0,
        )
    )

    c.train = ml_collections.ConfigDict(
        dict(
            steps=100,
            grad_accum=1,  # micro-batches per step, scanned
            log_every=10,
            checkpoint_every=50,
            keep_checkpoints=2,
            eval_every=0,  # 0 = only at the end
            halt_after_steps=0,  # >0: the process kills itself after that many steps (preemption drill)
            loss="token_weighted_nll",  # a name in jaxlvlm.train.losses.LOSSES
            # >0: LM head + cross-entropy in chunks of this many positions (never the whole
            # [B, L, V] fp32 logits and their gradient); same loss and gradients; 0 = off
            loss_chunk=0,
            peak_flops=CPU_PEAK_FLOPS,  # per device, for MFU
            progress_bar=True,
        )
    )

    c.optim = ml_collections.ConfigDict(
        dict(
            lr=1e-3,
            warmup_steps=10,
            end_lr_ratio=0.1,  # cosine ends at lr * end_lr_ratio
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            weight_decay=0.0,
            max_grad_norm=1.0,  # 0 = no clipping
            # Regexes over parameter paths ('vision/...', 'connector/...', 'llm/...', 'lora/...'):
            freeze=(),  # matching parameters get no update and no optimizer state
            lr_groups=(),  # ((regex, lr), ...): first match wins; others use optim.lr
        )
    )

    # LoRA on decoder projections through the model's low-rank hook.
    c.lora = ml_collections.ConfigDict(
        dict(enabled=False, targets=("q_proj", "v_proj"), rank=8, alpha=16.0)
    )

    # Evaluation on data.eval_sources: greedy generation + each record's scorer, per task.
    c.eval = ml_collections.ConfigDict(dict(enabled=True, max_new_tokens=8))

    # Method-specific settings: free-form, owned and validated by the method's runner.
    c.method = ml_collections.ConfigDict()
    return c


def shrink_for_test(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The 'test' shrink: a tiny model and a 2-step run that compiles few shapes (CPU tests)."""
    set_model_size(c, "test")
    c.data.buckets = (128,)
    c.data.global_batch_size = 8
    c.data.eval_batch_size = 8
    c.data.prefetch = 2
    c.train.steps = 2
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    c.train.eval_every = 0
    c.train.progress_bar = False
    c.optim.warmup_steps = 1
    c.eval.max_new_tokens = 4
    return c
