"""Hugging Face encoder families in this project's modules: for each
`model_type`, the config translation and the explicit weight names, one
module per family.

A family module defines:
  MODEL_TYPES    the `model_type` values it reads;
  ARCHITECTURES  {model_type: its sequence-classification class}, for export;
  PREFIX         the base model's name inside a task checkpoint ("roberta.");
  UNUSED         prefixes of weights a checkpoint may hold that the pair
                 classifier does not use (pretraining heads, buffers);
  model_fields(hf, path)  -> ModelConfig fields from config.json's dict;
  encoder_names(config)   -> {our parameter path: (HF name, convert)};
  head_names(config)      -> the same for the sequence-classification head
                 (BertForSequenceClassification and its kin), whose output
                 layer `hf.heads` converts for the task;
  learning_rate(config)   -> the fine-tuning recipe's peak learning rate, from
                 the family's published recipe;
  hf_config(config)       -> (bert and the rotary families) config.json's keys
                 for a model, which export writes over the checkpoint's.
`convert` maps the stored array to ours (a transpose for kernels, a block
of a fused projection; the head's output layer: `hf.heads`);
`common.INVERSE` (`common.Block.inverse`) maps ours back. A
family whose base model holds part of the head (GTE's pooler) names those
layers' prefixes in HEAD_IN_BASE, so that export writes them under PREFIX.
"""

from __future__ import annotations

from flax_mrpc.hf.families import (bert, deberta_v2, distilbert, electra, eurobert, gte,
                                   modernbert, roberta)

FAMILIES = {model_type: family
            for family in (bert, roberta, distilbert, electra, deberta_v2, modernbert, gte,
                           eurobert)
            for model_type in family.MODEL_TYPES}
