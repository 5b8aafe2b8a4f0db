"""RoBERTa and XLM-RoBERTa (`model_type` roberta, xlm-roberta): BERT's
layers, positions counted from padding_idx + 1, one segment, and a
classification head on <s>: dropout, dense, tanh, dropout, linear."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flax_mrpc.config import ModelConfig
from flax_mrpc.hf.families import common

MODEL_TYPES = ("roberta", "xlm-roberta")
ARCHITECTURES = {"roberta": "RobertaForSequenceClassification",
                 "xlm-roberta": "XLMRobertaForSequenceClassification"}  # what export writes
PREFIX = "roberta."
# The masked-LM head, and the base model's pooler, which the classifier does not use.
UNUSED = ("lm_head.", "pooler.", "embeddings.position_ids", "embeddings.token_type_ids")


def model_fields(hf: dict[str, Any], path: Path) -> dict[str, Any]:
  return common.bert_fields(hf, path) | dict(
      position_offset=hf.get("pad_token_id", 1) + 1, pooler_input_dropout=True)


def encoder_names(config: ModelConfig) -> common.Names:
  names = common.bert_embeddings(segments=True)
  for i in range(config.num_layers):
    names |= common.bert_layer(i, "encoder.layer")
  return names


def head_names(config: ModelConfig) -> common.Names:
  return common.classification_head("classifier.dense", "classifier.out_proj")


def learning_rate(model: ModelConfig) -> float:
  """2e-5: the middle of the RoBERTa paper's GLUE grid, 1e-5 to 3e-5 (its
  appendix, fine-tuning hyper-parameters)."""
  return 2e-5
