"""DistilBERT (`model_type` distilbert): no segment embedding, BERT's
post-LN layers under other names, and a head on [CLS]: pre_classifier
(dense), ReLU, dropout (seq_classif_dropout), linear."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flax_mrpc.config import ModelConfig
from flax_mrpc.hf.families import common

MODEL_TYPES = ("distilbert",)
ARCHITECTURES = {"distilbert": "DistilBertForSequenceClassification"}  # what export writes
PREFIX = "distilbert."
# The masked-LM head of DistilBertForMaskedLM; a buffer.
UNUSED = ("vocab_transform.", "vocab_layer_norm.", "vocab_projector.", "embeddings.position_ids")


def model_fields(hf: dict[str, Any], path: Path) -> dict[str, Any]:
  return dict(
      vocab_size=hf["vocab_size"], max_positions=hf["max_position_embeddings"],
      type_vocab_size=0, d_model=hf["dim"], num_heads=hf["n_heads"], d_ff=hf["hidden_dim"],
      num_layers=hf["n_layers"],
      activation=common.require(hf, "activation", ("gelu", "relu"), path), norm="post",
      dropout=hf.get("dropout", 0.1), attention_dropout=hf.get("attention_dropout", 0.1),
      classifier_dropout=hf.get("seq_classif_dropout", 0.2), layer_norm_eps=1e-12,
      pooler=True, pooler_activation="relu")


def _layer(i: int) -> common.Names:
  ours, hf = ("encoder", "layers", i), f"transformer.layer.{i}."
  names = {}
  for part, hf_part in (("q", "q_lin"), ("k", "k_lin"), ("v", "v_lin"), ("fc", "out_lin")):
    names |= common.linear(ours + ("attention", part), hf + f"attention.{hf_part}")
  names |= common.linear(ours + ("intermediate",), hf + "ffn.lin1")
  names |= common.linear(ours + ("output",), hf + "ffn.lin2")
  names |= common.layer_norm(ours + ("attention_norm",), hf + "sa_layer_norm")
  return names | common.layer_norm(ours + ("output_norm",), hf + "output_layer_norm")


def encoder_names(config: ModelConfig) -> common.Names:
  names = common.bert_embeddings(segments=False)
  for i in range(config.num_layers):
    names |= _layer(i)
  return names


def head_names(config: ModelConfig) -> common.Names:
  return common.classification_head("pre_classifier", "classifier")


def learning_rate(model: ModelConfig) -> float:
  """2e-5, as Hugging Face's text-classification guide fine-tunes
  distilbert-base-uncased."""
  return 2e-5
