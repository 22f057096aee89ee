"""Multi-task instruction tuning with a task weighting (docs/methods.md section 1): settings,
CoTBal's probe plan and input files, and the weightings' phase hooks. The weights' math is
jaxlvlm.methods.cotbal and jaxlvlm.methods.task_weighting."""
