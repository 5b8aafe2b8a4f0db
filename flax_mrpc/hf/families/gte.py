"""GTE (`model_type` gte, Alibaba's gte-multilingual / mGTE encoders): BERT's
post-LN layers with rotary positions (RoPE, base `rope_parameters.rope_theta`,
160000 by default) instead of learned ones, q, k and v in one projection
(qkv_proj), and a gated feed-forward block whose up_gate_proj (no bias)
projects to two halves, up then gate: down_proj(activation(gate) x up). The
head is BERT's: the pooler (dense + tanh on the first token, held by the base
model), dropout, linear.

Dropout sits where this project's layers have it (after the attention and
the feed-forward block); GTE also drops out inside the feed-forward block.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flax_mrpc.config import ModelConfig
from flax_mrpc.hf.families import common

MODEL_TYPES = ("gte",)
ARCHITECTURES = {"gte": "GteForSequenceClassification"}  # what export writes
PREFIX = "gte."
# GteForMaskedLM's head; the base model's pooler (part of the head here) when there is no head.
UNUSED = ("lm_head.", "pooler.")
HEAD_IN_BASE = ("pooler.",)  # export writes the pooler under PREFIX, where GteModel holds it


def model_fields(hf: dict[str, Any], path: Path) -> dict[str, Any]:
  for key in ("rope_scaling", "logn_attention_scale"):
    if hf.get(key):
      raise common.PretrainedError(f"{path}: {key} {hf[key]!r} is not supported here.")
  hidden, heads = hf["hidden_size"], hf["num_attention_heads"]
  if hf.get("head_dim", hidden // heads) != hidden // heads:
    raise common.PretrainedError(f"{path}: head_dim {hf['head_dim']!r} is not supported here "
                                 f"(it must be hidden_size / num_attention_heads).")
  return dict(
      vocab_size=hf["vocab_size"], max_positions=hf.get("max_position_embeddings", 8192),
      type_vocab_size=hf.get("type_vocab_size", 1), d_model=hidden, num_heads=heads,
      d_ff=hf["intermediate_size"], num_layers=hf["num_hidden_layers"],
      activation=common.require(hf, "hidden_act", ("gelu", "silu", "relu"), path, "gelu"),
      norm="post", dropout=hf.get("hidden_dropout_prob", 0.1),
      attention_dropout=hf.get("attention_probs_dropout_prob", 0.0),
      classifier_dropout=hf.get("classifier_dropout"),
      layer_norm_eps=hf.get("layer_norm_eps", 1e-12), absolute_positions=False,
      rotary_theta=common.rope_theta(hf.get("rope_parameters"), hf.get("rope_theta", 160_000.0),
                                     path, "rope_parameters"),
      gated_feed_forward=True, feed_forward_in_bias=False, pooler=True)


def _layer(i: int) -> common.Names:
  ours, hf = ("encoder", "layers", i), f"encoder.layer.{i}."
  attention = ours + ("attention",)
  names = common.fused_linear([attention + (part,) for part in ("q", "k", "v")],
                              hf + "attention.qkv_proj")
  names |= common.linear(attention + ("fc",), hf + "attention.o_proj")
  names |= common.layer_norm(ours + ("attention_norm",), hf + "attn_ln")
  # up first, then the gate (activated): GTE's split of up_gate_proj.
  names |= common.fused_linear([ours + ("up",), ours + ("intermediate",)],
                               hf + "mlp.up_gate_proj", bias=False)
  names |= common.linear(ours + ("output",), hf + "mlp.down_proj")
  return names | common.layer_norm(ours + ("output_norm",), hf + "mlp_ln")


def encoder_names(config: ModelConfig) -> common.Names:
  emb = ("encoder", "embeddings")
  names = common.embedding(emb + ("word_embeddings",), "embeddings.word_embeddings")
  if config.type_vocab_size:
    names |= common.embedding(emb + ("token_type_embeddings",),
                              "embeddings.token_type_embeddings")
  names |= common.layer_norm(emb + ("norm",), "embeddings.LayerNorm")
  for i in range(config.num_layers):
    names |= _layer(i)
  return names


def head_names(config: ModelConfig) -> common.Names:
  return common.classification_head("pooler.dense", "classifier")


def learning_rate(model: ModelConfig) -> float:
  """2e-5. The mGTE paper (Zhang et al. 2024, arXiv:2407.19669) reports GLUE
  results without a per-task recipe this project could check offline, so
  this is the BERT-base / RoBERTa-base value used here for encoders of the
  same post-LN, 768-wide kind (bert.learning_rate, roberta.learning_rate)."""
  return 2e-5


_NEEDS = common.ROTARY_NEEDS | {
    "norm": "post", "norm_type": "layer", "norm_bias": True, "embedding_norm": True,
    "feed_forward_in_bias": False, "feed_forward_out_bias": True, "attention_bias": True,
    "local_window": 0, "num_kv_heads": None, "pooling": "first", "pooler_activation": "tanh",
    "pooler_bias": True, "pooler_norm": False}


def hf_config(model: ModelConfig) -> dict[str, Any]:
  """The config.json keys `model_fields` reads, for a GTE holding `model`; a
  field GTE has no equivalent for is a PretrainedError naming it."""
  common.check_fields(model, _NEEDS, "GTE", {"activation": ("gelu", "silu", "relu")},
                      rotary=True)
  return {
      "model_type": "gte", "vocab_size": model.vocab_size,
      "max_position_embeddings": model.num_positions, "type_vocab_size": model.type_vocab_size,
      "hidden_size": model.d_model, "num_attention_heads": model.num_heads,
      "intermediate_size": model.d_ff, "num_hidden_layers": model.num_layers,
      "hidden_act": model.activation, "hidden_dropout_prob": model.dropout,
      "attention_probs_dropout_prob": model.attention_dropout,
      "classifier_dropout": model.classifier_dropout, "layer_norm_eps": model.layer_norm_eps,
      "rope_parameters": {"rope_type": "default", "rope_theta": model.rotary_theta}}
