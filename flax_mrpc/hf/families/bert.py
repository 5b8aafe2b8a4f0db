"""BERT (`model_type` bert): BertModel and BertForSequenceClassification
checkpoints. The pooler (dense + tanh on [CLS]) belongs to the base model;
the head is dropout and a linear layer on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flax_mrpc.config import ModelConfig
from flax_mrpc.hf.families import common

MODEL_TYPES = ("bert",)
ARCHITECTURES = {"bert": "BertForSequenceClassification"}  # what export writes
MASKED_LM_ARCHITECTURE = "BertForMaskedLM"  # what export writes for a pretraining workdir
PREFIX = "bert."
UNUSED = ("cls.", "embeddings.position_ids")  # the pretraining heads; a buffer


def model_fields(hf: dict[str, Any], path: Path) -> dict[str, Any]:
  return common.bert_fields(hf, path)


def encoder_names(config: ModelConfig) -> common.Names:
  names = common.bert_embeddings(segments=True)
  for i in range(config.num_layers):
    names |= common.bert_layer(i, "encoder.layer")
  return names | common.linear(("pooler",), "pooler.dense")


def masked_lm_names(config: ModelConfig) -> common.Names:
  """BertForMaskedLM's names of a `modules.MaskedLM`: the encoder without a
  pooler, and the `cls.predictions` head, whose decoder is the word
  embeddings (tied) and whose bias is ours."""
  names = {path: (PREFIX + hf, convert)
           for path, (hf, convert) in encoder_names(config).items() if path[0] != "pooler"}
  names |= common.linear(("transform",), "cls.predictions.transform.dense")
  names |= common.layer_norm(("transform_norm",), "cls.predictions.transform.LayerNorm")
  return names | {("output_bias",): ("cls.predictions.bias", common.same)}


def head_names(config: ModelConfig) -> common.Names:
  return common.classification_head(None, "classifier")


def learning_rate(model: ModelConfig) -> float:
  """The recipe's peak learning rate: 2e-5 for BERT-base and larger (the BERT
  paper's GLUE grid is 2e-5 to 5e-5; Hugging Face's run_glue example uses
  2e-5), 1e-4 below (the finetune_recipe study here, all-MiniLM-L6-v2)."""
  return 2e-5 if model.d_model >= 768 else 1e-4


# Fields of a from-scratch ModelConfig that BERT cannot hold, with the value it needs.
_BERT_NEEDS = {"seed_embedding": False, "match_embedding": False, "norm": "post",
               "mask_attention": True, "pooler": True, "pooler_activation": "tanh",
               "pooler_input_dropout": False, "position_offset": 0, "embedding_size": None,
               "absolute_positions": True, "relative_attention": False, "rotary_theta": None,
               "local_window": 0, "num_kv_heads": None, "attention_bias": True,
               "gated_feed_forward": False, "feed_forward_in_bias": True,
               "feed_forward_out_bias": True, "norm_type": "layer", "norm_bias": True,
               "embedding_norm": True, "pooling": "first", "pooler_bias": True,
               "pooler_norm": False}


def hf_config(model: ModelConfig) -> dict[str, Any]:
  """config.json of a BERT holding a from-scratch `model`; a field BERT has no
  equivalent for is a PretrainedError naming it."""
  wrong = [f"{name}={getattr(model, name)!r} (BERT needs {value!r})"
           for name, value in _BERT_NEEDS.items() if getattr(model, name) != value]
  if model.type_vocab_size < 1:
    wrong.append("type_vocab_size=0 (BERT needs at least 1)")
  if wrong:
    raise common.PretrainedError(
        "this model has no Hugging Face BERT equivalent: " + "; ".join(wrong)
        + ". Train with those fields (--set NAME=VALUE) to export it.")
  return {
      "model_type": "bert", "vocab_size": model.vocab_size, "hidden_size": model.d_model,
      "num_hidden_layers": model.num_layers, "num_attention_heads": model.num_heads,
      "intermediate_size": model.d_ff, "hidden_act": model.activation,
      "max_position_embeddings": model.num_positions, "type_vocab_size": model.type_vocab_size,
      "layer_norm_eps": model.layer_norm_eps, "hidden_dropout_prob": model.dropout,
      "attention_probs_dropout_prob": model.attention_dropout,
      "classifier_dropout": model.classifier_dropout, "pad_token_id": 0}
