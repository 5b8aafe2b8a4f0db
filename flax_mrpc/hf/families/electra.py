"""ELECTRA discriminators (`model_type` electra): BERT's layers, embeddings
`embedding_size` wide projected to the hidden size when narrower, and a
classification head on [CLS]: dropout, dense, GELU, dropout, linear."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flax_mrpc.config import ModelConfig
from flax_mrpc.hf.families import common

MODEL_TYPES = ("electra",)
ARCHITECTURES = {"electra": "ElectraForSequenceClassification"}  # what export writes
PREFIX = "electra."
# The pretraining heads of ElectraForPreTraining / ElectraForMaskedLM; a buffer.
UNUSED = ("discriminator_predictions.", "generator_", "embeddings.position_ids")


def model_fields(hf: dict[str, Any], path: Path) -> dict[str, Any]:
  embedding_size = hf.get("embedding_size", hf["hidden_size"])
  return common.bert_fields(hf, path) | dict(
      embedding_size=None if embedding_size == hf["hidden_size"] else embedding_size,
      pooler_activation="gelu", pooler_input_dropout=True)


def encoder_names(config: ModelConfig) -> common.Names:
  names = common.bert_embeddings(segments=True)
  if config.embedding_width != config.d_model:
    names |= common.linear(("encoder", "embeddings_project"), "embeddings_project")
  for i in range(config.num_layers):
    names |= common.bert_layer(i, "encoder.layer")
  return names


def head_names(config: ModelConfig) -> common.Names:
  return common.classification_head("classifier.dense", "classifier.out_proj")


def learning_rate(model: ModelConfig) -> float:
  """The ELECTRA paper's GLUE learning rates (its appendix): 3e-4 for Small
  (256 wide), 1e-4 for Base, 5e-5 for Large (1024 wide)."""
  return 3e-4 if model.d_model <= 256 else 1e-4 if model.d_model < 1024 else 5e-5
