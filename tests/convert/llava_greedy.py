"""Greedy tokens of a run (jaxlvlm, LoRA through the low-rank hook) and of its export (transformers,
through the exported processor), for the same prompts with images."""

from __future__ import annotations

import io

import numpy as np


def jaxlvlm_greedy(run, prompts, images, new_tokens: int) -> list[list[int]]:
    """run: jaxlvlm.train.run_export.RunWeights; prompts: user texts with '<image>'; images: PIL.

    Returns per prompt the greedy tokens up to and including the first eos.
    """
    from jaxlvlm.data.conversation import tokenize_prompt
    from jaxlvlm.data.images import preprocess_image
    from jaxlvlm.eval.generate import greedy_generate
    from jaxlvlm.models import build_model
    from jaxlvlm.train.lora import lora_to_lowrank

    cfg, tok = run.model_cfg, run.tokenizer
    rows, pixels = [], []
    for i, (text, image) in enumerate(zip(prompts, images, strict=True)):
        record = {
            "id": f"p{i}",
            "conversations": [{"from": "human", "value": text}, {"from": "gpt", "value": ""}],
        }
        rows.append(
            tokenize_prompt(record, tok, cfg.image_token_id, cfg.image_tokens_per_image, 4096)
        )
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        pixels.append(preprocess_image(buf.getvalue(), cfg.vision.image_size, cfg.vision.style))
    length = max(len(r.input_ids) for r in rows)
    ids = np.zeros((len(rows), length), np.int32)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r.input_ids)] = r.input_ids
        mask[i, : len(r.input_ids)] = 1
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "pixel_values": np.stack(pixels)[:, None],
        "num_images": np.ones((len(rows),), np.int32),
    }
    lowrank = None
    if run.lora:
        rank = next(iter(run.lora.values()))["a"].shape[-1]
        lowrank = lora_to_lowrank(run.lora, float(run.config.lora.alpha), rank)
    out = greedy_generate(
        build_model(cfg), run.params, batch, new_tokens, tok.eos_token_id, 0, lowrank
    )
    return [_until_eos(list(map(int, row)), tok.eos_token_id) for row in np.asarray(out)]


def hf_greedy(model, processor, prompts, images, new_tokens: int) -> tuple[list, list]:
    """(greedy tokens per prompt, input_ids per prompt) from transformers on the exported dir."""
    import torch

    tok = processor.tokenizer
    outs, inputs_ids = [], []
    for text, image in zip(prompts, images, strict=True):
        messages = [{"role": "user", "content": text}]
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=prompt, images=[image], return_tensors="pt")
        with torch.no_grad():
            gen = model.generate(
                **inputs,
                max_new_tokens=new_tokens,
                do_sample=False,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
            )
        n = inputs["input_ids"].shape[1]
        outs.append(_until_eos(gen[0, n:].tolist(), tok.eos_token_id))
        inputs_ids.append(inputs["input_ids"][0].tolist())
    return outs, inputs_ids


def _until_eos(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens
