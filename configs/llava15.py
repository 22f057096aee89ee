"""LLaVA-1.5's two-stage recipe on your own towers and data.

    # stage 1: connector only, on caption data, from a vision tower and an LM assembled at the start
    python -m jaxlvlm.main --config configs/llava15.py:stage=1,vision=hf/clip,llm=hf/vicuna,data=DATA/captions \
        --workdir runs/stage1
    # stage 2: connector + LLM (full, or LoRA with lora=true), on conversations
    python -m jaxlvlm.main --config configs/llava15.py:stage=2,lora=true,init=ckpt/stage1,data=DATA/chat \
        --workdir runs/stage2

Colon arguments:
  stage=1|2       which stage (the table below)
  lora=false      stage 2 with LoRA on the decoder (base frozen, connector trained at 2e-5)
  vision=DIR, llm=DIR_OR_GGUF   stage 1 from two pretrained towers (CLIP/SigLIP and Llama/Qwen2 HF
                  directories, a Llama GGUF file, or converted directories): the run assembles them
                  with a fresh connector into <workdir>/assembled at its start (once: a rerun resumes
                  from its checkpoint and never assembles again; jaxlvlm.train.assembly)
  chat_template=FILE   a Jinja chat template for an LM tokenizer without one (with vision/llm)
  init=DIR        converted checkpoint to start from instead: tools/assemble_llava.py's output for
                  stage 1, tools/convert_checkpoint.py of stage 1's export for stage 2 (README)
  tokenizer=DIR   with init: a tokenizer with '<image>' and a chat template (default: init, where
                  both tools put it); with vision/llm: the tokenizer '<image>' is added to (default:
                  the LM's)
  data=DIR/NAME   a dataset written by tools/import_llava_data.py --data_dir DIR --name NAME
  split=train, eval_split=''   dataset splits; eval by greedy generation only when eval_split is set
  steps=N         LLaVA trains one epoch: set steps = samples / batch
  batch=N         global batch (0 = the paper's: 256 in stage 1, 128 in stage 2)
  seq=N           padded sequence length (LLaVA's model_max_length is 2048)
  lora_rank=128, lora_alpha=256, lora_targets=all (or e.g. q_proj+v_proj+o_proj)
  bf16=true       bfloat16 compute with float32 master weights (LLaVA trains in bf16)
  test            tiny shapes for CPU tests (2 steps, float32)

Hyper-parameters, against LLaVA-1.5's (Liu et al. 2023, "Improved Baselines with Visual Instruction
Tuning", appendix table of hyper-parameters, and the scripts/v1_5 pretrain/finetune(_lora) scripts):

                     stage 1 (pretrain)        stage 2 full       stage 2 LoRA
  trained            connector                 connector + LLM    connector + LoRA (r 128, alpha 256,
                                                                  every linear layer of the LLM)
  batch              256                       128                128
  lr                 1e-3                      2e-5               2e-4 (connector 2e-5)
  schedule           cosine, warm-up 3%        same               same
  weight decay       0                         0                  0
  optimizer          AdamW (0.9, 0.999)        same               same
  epochs             1                         1                  1
  vision features    layer -2 (config.assemble.vision_feature_layer), frozen tower

The cosine decays to 0 (HF Trainer's cosine). Gradient clipping at norm 1.0 is the HF Trainer default
that LLaVA runs with. Differences from LLaVA: stage 1 renders samples through the tokenizer's chat
template (LLaVA uses its 'plain' template: image then caption, no roles), and images are resized to
the tower's size (CLIP: short side + centre crop) instead of padded to a square.
"""

from __future__ import annotations

import os

from configs.common import base_config, parse_arg, shrink_for_test
from jaxlvlm.train.lora import LORA_TARGETS

# stage -> (lr, global batch) of LLaVA-1.5; LoRA's are separate.
_STAGE = {1: (1e-3, 256), 2: (2e-5, 128)}
_LORA_LR, _LORA_CONNECTOR_LR = 2e-4, 2e-5
_WARMUP_RATIO = 0.03


def _tfds_source(data: str, split: str) -> dict:
    data = data.rstrip("/")
    return dict(
        type="tfds",
        data_dir=os.path.dirname(data) or ".",
        name=os.path.basename(data),
        split=split,
    )


def get_config(arg: str | None = None):
    a = parse_arg(
        arg,
        stage=1,
        lora=False,
        init="",
        vision="",
        llm="",
        chat_template="",
        tokenizer="",
        data="",
        split="train",
        eval_split="",
        steps=1000,
        batch=0,
        seq=2048,
        lora_rank=128,
        lora_alpha=256.0,
        lora_targets="all",
        bf16=True,
        test=False,
    )
    if a.stage not in _STAGE:
        raise ValueError(f"stage={a.stage}: LLaVA-1.5 has stages 1 and 2")
    if a.lora and a.stage != 2:
        raise ValueError("lora=true is a stage-2 option; stage 1 trains only the connector")
    towers = bool(a.vision or a.llm)
    if towers and not (a.vision and a.llm):
        raise ValueError("vision= and llm= go together: stage 1 assembles the two towers")
    if towers and (a.stage != 1 or a.init):
        raise ValueError(
            "vision= and llm= start stage 1 from two towers; stage 2 starts from stage 1's export "
            "(init=), and stage 1 takes either the towers or init=, not both"
        )
    if a.chat_template and not towers:
        raise ValueError("chat_template= is for the tokenizer of vision= / llm=; init= has its own")
    # `test` alone (no init, no data) smoke-runs the recipe's settings on the tiny test model, the
    # built-in tokenizer and built-in digits; any real run names its start and its data.
    if not (a.init or towers) and not a.test:
        raise ValueError(
            "stage 1 starts from vision=DIR,llm=DIR (two pretrained towers) or init=DIR "
            "(tools/assemble_llava.py's output); stage 2 from init=DIR (stage 1's export converted "
            "with tools/convert_checkpoint.py)"
        )
    if not a.data and not a.test:
        raise ValueError("data=DATA_DIR/NAME is needed (a dataset of tools/import_llava_data.py)")
    c = base_config()
    c.mode = "train"
    c.init_from = a.init
    c.tokenizer = a.tokenizer or a.init or "builtin"
    if towers:
        c.assemble.vision, c.assemble.llm = a.vision, a.llm
        c.assemble.tokenizer, c.assemble.chat_template = a.tokenizer, a.chat_template
        c.tokenizer = ""  # set at the run's start to <workdir>/assembled (its '<image>' token)
    if a.data:
        c.data.sources = (_tfds_source(a.data, a.split),)
        c.data.eval_sources = (_tfds_source(a.data, a.eval_split),) if a.eval_split else ()
    else:
        c.data.sources = (dict(type="builtin", family="digits", split="train", num=16),)
    c.eval.enabled = bool(a.eval_split)
    lr, batch = _STAGE[a.stage]
    c.data.global_batch_size = a.batch or batch
    c.data.eval_batch_size = min(c.data.global_batch_size, 64)
    c.data.buckets = (a.seq,)
    c.data.on_bad_sample = "skip"
    c.train.steps = a.steps
    c.train.log_every = max(1, min(50, a.steps // 20))
    c.train.checkpoint_every = max(1, min(1000, a.steps))
    c.runtime.compute_dtype = "bfloat16" if a.bf16 else "float32"

    c.optim.lr = lr
    c.optim.warmup_steps = round(_WARMUP_RATIO * a.steps)
    c.optim.end_lr_ratio = 0.0
    c.optim.weight_decay = 0.0
    c.optim.b1, c.optim.b2, c.optim.eps = 0.9, 0.999, 1e-8
    c.optim.max_grad_norm = 1.0
    if a.stage == 1:
        c.optim.freeze = ("^vision/", "^llm/")
    elif a.lora:
        c.optim.freeze = ("^vision/", "^llm/")
        c.optim.lr = _LORA_LR
        c.optim.lr_groups = (("^connector/", _LORA_CONNECTOR_LR),)
        targets = LORA_TARGETS if a.lora_targets == "all" else tuple(a.lora_targets.split("+"))
        c.lora = dict(enabled=True, targets=targets, rank=a.lora_rank, alpha=a.lora_alpha)
    else:
        c.optim.freeze = ("^vision/",)

    if a.test:
        c = shrink_for_test(
            c
        )  # with init, the architecture is init's; the shrink's model is unused
        c.data.global_batch_size = a.batch or 4
        c.data.eval_batch_size = 4
        c.data.buckets = (a.seq if a.seq != 2048 else 64,)
        c.train.steps = a.steps if a.steps != 1000 else 2
        c.train.checkpoint_every = c.train.steps
        c.optim.warmup_steps = round(_WARMUP_RATIO * c.train.steps)
        c.runtime.compute_dtype = "float32"
    return c
