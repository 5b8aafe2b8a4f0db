"""DeBERTa-v2 and DeBERTa-v3 (`model_type` deberta-v2): BERT's post-LN
layers with disentangled attention (content-to-position and
position-to-content scores against shared, log-bucketed relative-position
embeddings, `modules.RelativeAttention`), no absolute positions by default,
and a head on [CLS]: dense, GELU (the ContextPooler), dropout, linear."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flax_mrpc.config import ModelConfig
from flax_mrpc.hf.families import common

MODEL_TYPES = ("deberta-v2",)
ARCHITECTURES = {"deberta-v2": "DebertaV2ForSequenceClassification"}  # what export writes
PREFIX = "deberta."
# The masked-LM heads of DebertaV2ForMaskedLM (both layouts); a buffer.
UNUSED = ("cls.", "lm_predictions.", "mask_predictions.", "embeddings.position_ids")


def model_fields(hf: dict[str, Any], path: Path) -> dict[str, Any]:
  hidden = hf["hidden_size"]
  unsupported = {"conv_kernel_size": (hf.get("conv_kernel_size", 0), 0),
                 "embedding_size": (hf.get("embedding_size", hidden), hidden),
                 "pooler_hidden_size": (hf.get("pooler_hidden_size", hidden), hidden),
                 "relative_attention": (hf.get("relative_attention", False), True),
                 "attention_head_size": (hf.get("attention_head_size",
                                                hidden // hf["num_attention_heads"]),
                                         hidden // hf["num_attention_heads"])}
  for key, (value, needed) in unsupported.items():
    if value != needed:
      raise common.PretrainedError(f"{path}: {key} {value!r} is not supported here (it must be "
                                   f"{needed!r}).")
  types = hf.get("pos_att_type") or []
  types = types.split("|") if isinstance(types, str) else list(types)
  if not types or set(types) - {"c2p", "p2c"}:
    raise common.PretrainedError(f"{path}: pos_att_type {types!r} is not supported here "
                                 "(supported: c2p, p2c or both).")
  norm = [x.strip() for x in hf.get("norm_rel_ebd", "none").lower().split("|")]
  common.require(hf, "pooler_hidden_act", ("gelu", "relu", "tanh"), path, "gelu")
  max_relative = hf.get("max_relative_positions", -1)
  return dict(
      vocab_size=hf["vocab_size"], max_positions=hf["max_position_embeddings"],
      type_vocab_size=hf.get("type_vocab_size", 0), d_model=hidden,
      num_heads=hf["num_attention_heads"], d_ff=hf["intermediate_size"],
      num_layers=hf["num_hidden_layers"],
      activation=common.require(hf, "hidden_act", ("gelu", "relu"), path), norm="post",
      dropout=hf.get("hidden_dropout_prob", 0.1),
      attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
      classifier_dropout=hf.get("cls_dropout"), layer_norm_eps=hf.get("layer_norm_eps", 1e-7),
      pooler=True, pooler_activation=hf.get("pooler_hidden_act", "gelu"),
      pooler_input_dropout=hf.get("pooler_dropout", 0) > 0,
      absolute_positions=hf.get("position_biased_input", True), relative_attention=True,
      position_buckets=max(hf.get("position_buckets", -1), 0),
      max_relative_positions=max_relative if max_relative > 0 else hf["max_position_embeddings"],
      relative_attention_types="|".join(t for t in ("c2p", "p2c") if t in types),
      share_relative_key=hf.get("share_att_key", False),
      norm_relative_embeddings="layer_norm" in norm)


def _layer(i: int, config: ModelConfig) -> common.Names:
  ours, hf = ("encoder", "layers", i), f"encoder.layer.{i}."
  names = {}
  for part, hf_part in (("q", "query_proj"), ("k", "key_proj"), ("v", "value_proj")):
    names |= common.linear(ours + ("attention", part), hf + f"attention.self.{hf_part}")
  types = config.relative_attention_types.split("|")
  if not config.share_relative_key:
    if "c2p" in types:
      names |= common.linear(ours + ("attention", "pos_k"), hf + "attention.self.pos_key_proj")
    if "p2c" in types:
      names |= common.linear(ours + ("attention", "pos_q"), hf + "attention.self.pos_query_proj")
  names |= common.linear(ours + ("attention", "fc"), hf + "attention.output.dense")
  names |= common.linear(ours + ("intermediate",), hf + "intermediate.dense")
  names |= common.linear(ours + ("output",), hf + "output.dense")
  names |= common.layer_norm(ours + ("attention_norm",), hf + "attention.output.LayerNorm")
  return names | common.layer_norm(ours + ("output_norm",), hf + "output.LayerNorm")


def encoder_names(config: ModelConfig) -> common.Names:
  emb = ("encoder", "embeddings")
  names = common.embedding(emb + ("word_embeddings",), "embeddings.word_embeddings")
  if config.absolute_positions:
    names |= common.embedding(emb + ("position_embeddings",), "embeddings.position_embeddings")
  if config.type_vocab_size:
    names |= common.embedding(emb + ("token_type_embeddings",),
                              "embeddings.token_type_embeddings")
  names |= common.layer_norm(emb + ("norm",), "embeddings.LayerNorm")
  names |= common.embedding(("encoder", "relative_embeddings"), "encoder.rel_embeddings")
  if config.norm_relative_embeddings:
    names |= common.layer_norm(("encoder", "relative_norm"), "encoder.LayerNorm")
  for i in range(config.num_layers):
    names |= _layer(i, config)
  return names


def head_names(config: ModelConfig) -> common.Names:
  return common.classification_head("pooler.dense", "classifier")


def learning_rate(model: ModelConfig) -> float:
  """2e-5, inside the DeBERTa paper's fine-tuning grid for base models
  (1.5e-5 to 4e-5)."""
  return 2e-5
