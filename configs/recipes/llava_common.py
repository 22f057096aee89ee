"""Paper-scale LLaVA-1.5 pieces shared by the recipes in this directory.

LLaVA-1.5 (Liu et al., "Improved Baselines with Visual Instruction Tuning", 2023): CLIP ViT-L/14 at
336 px (576 image tokens, features of the second-to-last layer), a two-layer GELU MLP connector and a
Vicuna-1.5 (Llama-2 architecture) decoder. Stage 1 trains the connector only on LCS-558K (global
batch 256, lr 1e-3); stage 2 trains connector + LLM on the 665K mixture (global batch 128, lr 2e-5;
the LoRA variant uses rank 128, alpha 256, lr 2e-4), both at 2048 tokens.

Each recipe file declares ``AOT = {'topology': ..., 'programs': (...)}``: the slice it is sized for and
the functions ``python -m tools.aot`` compiles. The paper's bucket and batch, FSDP over every chip
and full remat are the default; a recipe swept with tools.aot.sweep records the variant that fits
with the best estimated MFU there, with a comment (BENCHMARKS.md, section 6, lists the variants).
"""

from __future__ import annotations

from configs.common import base_config, parse_arg

# HF llava-1.5 checkpoints: Vicuna's 32000 tokens + <image> + <pad>, padded to 32064 (shards evenly).
VOCAB = 32064
IMAGE_TOKEN_ID = 32000
PAPER_LENGTH = 2048


def clip_vit_l14_336() -> dict:
    """CLIP ViT-L/14 at 336 px: 24 layers, width 1024, 16 heads, 577 positions."""
    return dict(
        style="clip",
        image_size=336,
        patch_size=14,
        hidden_size=1024,
        intermediate_size=4096,
        num_layers=24,
        num_heads=16,
    )


def vicuna(size: str) -> dict:
    """Vicuna-1.5 7B or 13B (Llama-2 shapes, MHA, 4096 positions)."""
    shapes = {
        "7b": dict(hidden_size=4096, intermediate_size=11008, num_layers=32, num_heads=32),
        "13b": dict(hidden_size=5120, intermediate_size=13824, num_layers=40, num_heads=40),
    }
    if size not in shapes:
        raise ValueError(f"LLaVA-1.5 LLM size {size!r}: expected one of {sorted(shapes)}")
    s = shapes[size]
    return dict(
        arch="llama",
        vocab_size=VOCAB,
        num_kv_heads=s["num_heads"],
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        **s,
    )


def llava15_config(size: str, data_path: str, image_root: str):
    """A train-mode config of LLaVA-1.5-{size} on a LLaVA-format JSON: bf16 compute over fp32 master
    weights, layers scanned, the paper's 2048-token sequences."""
    c = base_config()
    c.mode = "train"
    c.tokenizer = "lmsys/vicuna-7b-v1.5"  # a local HF tokenizer dir of that name
    c.model.vision = clip_vit_l14_336()
    c.model.text = vicuna(size)
    c.model.connector = "mlp2x_gelu"
    c.model.image_token_id = IMAGE_TOKEN_ID
    c.model.vision_feature_layer = -2
    c.model.vision_feature_select_strategy = "default"
    c.runtime.param_dtype = "float32"
    c.runtime.compute_dtype = "bfloat16"
    c.runtime.scan_layers = True
    c.runtime.remat_vision = "full"
    c.runtime.remat_text = "full"
    c.data.sources = (dict(type="llava_json", path=data_path, image_root=image_root),)
    c.data.buckets = (PAPER_LENGTH,)
    c.data.max_images = 1
    c.train.loss_chunk = 512
    c.train.progress_bar = False
    c.eval.enabled = False
    return c


def stage1(c, global_batch: int = 256):
    """Connector only (vision tower and LLM frozen), lr 1e-3, warmup 3% of one epoch of 558K."""
    c.optim.freeze = ("vision/.*", "llm/.*")
    c.optim.lr = 1e-3
    c.optim.weight_decay = 0.0
    c.data.global_batch_size = global_batch
    c.train.steps = 558_128 // global_batch
    c.optim.warmup_steps = int(0.03 * c.train.steps)
    return c


def stage2(c, global_batch: int = 128, lora_rank: int = 0):
    """Connector + LLM (vision frozen), lr 2e-5; lora_rank > 0: LoRA on every decoder projection
    (rank r, alpha 2r, lr 2e-4, connector lr 2e-5) with the LLM frozen."""
    c.data.global_batch_size = global_batch
    c.train.steps = 665_298 // global_batch
    c.optim.warmup_steps = int(0.03 * c.train.steps)
    c.optim.weight_decay = 0.0
    if lora_rank:
        c.optim.freeze = ("vision/.*", "llm/.*")
        c.optim.lr = 2e-4
        c.optim.lr_groups = (("connector/.*", 2e-5),)
        c.lora.enabled = True
        c.lora.rank = lora_rank
        c.lora.alpha = 2.0 * lora_rank
        c.lora.targets = (
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        )
    else:
        c.optim.freeze = ("vision/.*",)
        c.optim.lr = 2e-5
    return c


STAGE_DATA = {
    1: ("blip_laion_cc_sbu_558k.json", "LLaVA-Pretrain/images"),
    2: ("llava_v1_5_mix665k.json", "data"),
}


def recipe(size: str, stage: int, lora_rank: int = 0, arg: str | None = None):
    """LLaVA-1.5-{size} at stage 1 or 2 (full, or LoRA of ``lora_rank``) with the paper's batch,
    FSDP over every chip. Colon arguments: data=<LLaVA json>, images=<image root>."""
    data, images = STAGE_DATA[stage]
    a = parse_arg(arg, data=data, images=images)
    c = llava15_config(size, a.data, a.images)
    c = stage1(c) if stage == 1 else stage2(c, lora_rank=lora_rank)
    c.mesh.shape = (1, -1, 1)
    return c
