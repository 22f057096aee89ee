"""Continual LLaVA (docs/methods.md section 2) as a runner uses it: settings, the pool's training
pieces and instruction embeddings. The pool's math is jaxlvlm.methods.prompt_pool."""
