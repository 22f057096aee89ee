#!/usr/bin/env bash
# GPU device check, one call (< 8 minutes): train step of a ~1.2B LVLM in bf16 with cuDNN attention
# at a batch sized for the GPU's memory (measured step time, tokens/s, MFU against the GPU's bf16
# peak) and generation's decode step. Uses the machine's CUDA jax; installs jax[cuda12] only if jax
# has no GPU backend. DEVICE_CHECK_SIZE=tiny runs the same path with a tiny model on CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "${DEVICE_CHECK_SIZE:-gpu}" != "tiny" ]; then
  if ! python -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
    pip install "jax[cuda12]"
  fi
fi
exec timeout 470 python -m tools.bench.device_check
