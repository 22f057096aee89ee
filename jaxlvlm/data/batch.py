"""The batch contract between the data pipeline, the train step, evaluation and the methods.

A batch is a dict of arrays with a leading global batch dimension B (sharded over the batch mesh axes):

  input_ids       int32   [B, L]   token ids; each image contributes ``image_tokens_per_image``
                                   consecutive copies of ``image_token_id`` (transformers' LLaVA convention)
  attention_mask  int32   [B, L]   1 for real tokens, 0 for padding (right padding)
  targets         int32   [B, L]   next-token targets: targets[:, k] = input_ids[:, k + 1], 0 past the end
  loss_mask       float32 [B, L]   1 where targets[:, k] is an assistant token to be learned, else 0;
                                   all-zero rows are padding samples that fill a last partial batch
  pixel_values    float32 [B, N, H, W, 3]  normalised images, channels last; N = max images per sample in
                                   the bucket; unused slots are zeros and are never spliced
  num_images      int32   [B]      how many of the N slots are real images
  task_ids        int32   [B]      index of the sample's task in the run's task list
  sample_index    int32   [B]      index of the sample in its source dataset (-1 for padding rows)

Keys that a method needs beyond these are added by its runner, never by the model.
"""

from __future__ import annotations

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
TARGETS = "targets"
LOSS_MASK = "loss_mask"
PIXEL_VALUES = "pixel_values"
NUM_IMAGES = "num_images"
TASK_IDS = "task_ids"
SAMPLE_INDEX = "sample_index"

BATCH_KEYS = (
    INPUT_IDS,
    ATTENTION_MASK,
    TARGETS,
    LOSS_MASK,
    PIXEL_VALUES,
    NUM_IMAGES,
    TASK_IDS,
    SAMPLE_INDEX,
)
