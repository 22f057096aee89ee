"""jaxlvlm: LLaVA-style vision-language models in JAX/Flax."""
