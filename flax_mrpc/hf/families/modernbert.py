"""ModernBERT (`model_type` modernbert): pre-LN layers without biases, LayerNorms
without bias, a norm on the embeddings and after the last layer, none before
layer 0's attention; rotary positions (RoPE) with base `global_rope_theta` in
the global layers and `local_rope_theta` in the others, which attend to the
tokens at most local_attention // 2 positions away (every
`global_attn_every_n_layers`-th layer, from layer 0, is global); a GeGLU
feed-forward block (Wi projects to two halves: activation(first) x second);
no segments. The head pools the first token or the mean of the tokens
(`classifier_pooling`), then dense, activation, LayerNorm, dropout, linear.

Dropout sits where this project's layers have it (after the attention and
the feed-forward block) rather than inside ModernBERT's MLP; all of it is 0
in the released checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flax_mrpc.config import ModelConfig
from flax_mrpc.hf.families import common

MODEL_TYPES = ("modernbert",)
ARCHITECTURES = {"modernbert": "ModernBertForSequenceClassification"}  # what export writes
PREFIX = "model."
UNUSED = ("head.", "decoder.")  # ModernBertForMaskedLM's head (unused without a classifier)

_GLOBAL, _LOCAL = "full_attention", "sliding_attention"


def _global_every(hf: dict[str, Any], path: Path) -> int:
  """n such that layer i is global exactly when i % n == 0: from `layer_types`
  (transformers 5) or `global_attn_every_n_layers` (older configs)."""
  layers = hf["num_hidden_layers"]
  types = hf.get("layer_types")
  if types is None:
    return hf.get("global_attn_every_n_layers", 3)
  for every in range(1, layers + 1):
    if list(types) == [_LOCAL if i % every else _GLOBAL for i in range(layers)]:
      return every
  raise common.PretrainedError(f"{path}: layer_types {types!r} is not supported here (layer i "
                               "must be global exactly when i % n == 0 for some n).")


def _rope_thetas(hf: dict[str, Any], path: Path) -> tuple[float, float]:
  """(global, local) RoPE bases, from `rope_parameters` (transformers 5) or
  `global_rope_theta` / `local_rope_theta`; 160000 and 10000 by default."""
  if hf.get("rope_scaling"):
    common.rope_theta(hf["rope_scaling"], 0.0, path, "rope_scaling")
  parameters = hf.get("rope_parameters") or {}
  return (common.rope_theta(parameters.get(_GLOBAL), hf.get("global_rope_theta") or 160_000.0,
                            path, "rope_parameters.full_attention"),
          common.rope_theta(parameters.get(_LOCAL), hf.get("local_rope_theta") or 10_000.0,
                            path, "rope_parameters.sliding_attention"))


def model_fields(hf: dict[str, Any], path: Path) -> dict[str, Any]:
  pooling = common.require(hf, "classifier_pooling", ("cls", "mean"), path, "cls")
  global_theta, local_theta = _rope_thetas(hf, path)
  return dict(
      vocab_size=hf["vocab_size"], max_positions=hf.get("max_position_embeddings", 8192),
      type_vocab_size=0, d_model=hf["hidden_size"], num_heads=hf["num_attention_heads"],
      d_ff=hf["intermediate_size"], num_layers=hf["num_hidden_layers"],
      activation=common.require(hf, "hidden_activation", ("gelu", "silu", "relu"), path, "gelu"),
      norm="pre", dropout=hf.get("mlp_dropout", 0.0),
      attention_dropout=hf.get("attention_dropout", 0.0),
      classifier_dropout=hf.get("classifier_dropout", 0.0),
      layer_norm_eps=hf.get("norm_eps", 1e-5), absolute_positions=False,
      rotary_theta=global_theta, local_rotary_theta=local_theta,
      local_window=hf.get("local_attention", 128), global_every=_global_every(hf, path),
      attention_bias=hf.get("attention_bias", False), gated_feed_forward=True,
      feed_forward_in_bias=hf.get("mlp_bias", False),
      feed_forward_out_bias=hf.get("mlp_bias", False), norm_bias=hf.get("norm_bias", False),
      first_attention_norm=False, pooling="first" if pooling == "cls" else "mean", pooler=True,
      pooler_activation=common.require(hf, "classifier_activation", ("gelu", "tanh", "relu"),
                                       path, "gelu"),
      pooler_bias=hf.get("classifier_bias", False), pooler_norm=True)


def _layer(i: int, config: ModelConfig) -> common.Names:
  ours, hf = ("encoder", "layers", i), f"layers.{i}."
  attention = ours + ("attention",)
  names = common.fused_linear([attention + (part,) for part in ("q", "k", "v")],
                              hf + "attn.Wqkv", config.attention_bias)
  names |= common.linear(attention + ("fc",), hf + "attn.Wo", config.attention_bias)
  if i > 0:
    names |= common.layer_norm(ours + ("attention_norm",), hf + "attn_norm", config.norm_bias)
  names |= common.fused_linear([ours + ("intermediate",), ours + ("up",)], hf + "mlp.Wi",
                               config.feed_forward_in_bias)
  names |= common.linear(ours + ("output",), hf + "mlp.Wo", config.feed_forward_out_bias)
  return names | common.layer_norm(ours + ("output_norm",), hf + "mlp_norm", config.norm_bias)


def encoder_names(config: ModelConfig) -> common.Names:
  emb = ("encoder", "embeddings")
  names = common.embedding(emb + ("word_embeddings",), "embeddings.tok_embeddings")
  names |= common.layer_norm(emb + ("norm",), "embeddings.norm", config.norm_bias)
  for i in range(config.num_layers):
    names |= _layer(i, config)
  return names | common.layer_norm(("encoder", "final_norm"), "final_norm", config.norm_bias)


def head_names(config: ModelConfig) -> common.Names:
  names = common.linear(("pooler",), "head.dense", config.pooler_bias)
  names |= common.layer_norm(("pooler_norm",), "head.norm", config.norm_bias)
  return names | common.classification_head(None, "classifier")


def learning_rate(model: ModelConfig) -> float:
  """5e-5: ModernBERT's GLUE recipe for MRPC with ModernBERT-base (lr 5e-5,
  weight decay 5e-6, 10 epochs, batch 64, started from its MNLI checkpoint;
  Warner et al. 2024, "Smarter, Better, Faster, Longer", arXiv:2412.13663,
  the appendix's GLUE hyper-parameter table). Used for every size here."""
  return 5e-5


_NEEDS = common.ROTARY_NEEDS | {"type_vocab_size": 0, "norm": "pre", "norm_type": "layer",
                               "embedding_norm": True, "first_attention_norm": False,
                               "pooler_norm": True, "num_kv_heads": None}


def hf_config(model: ModelConfig) -> dict[str, Any]:
  """The config.json keys `model_fields` reads, for a ModernBERT holding
  `model`; a field ModernBERT has no equivalent for is a PretrainedError
  naming it."""
  common.check_fields(model, _NEEDS | {"feed_forward_out_bias": model.feed_forward_in_bias},
                      "ModernBERT", {"pooling": ("first", "mean"),
                                     "activation": ("gelu", "silu", "relu"),
                                     "pooler_activation": ("gelu", "tanh", "relu")},
                      rotary=True)
  local = model.local_rotary_theta or model.rotary_theta
  return {
      "model_type": "modernbert", "vocab_size": model.vocab_size,
      "max_position_embeddings": model.num_positions, "hidden_size": model.d_model,
      "num_attention_heads": model.num_heads, "intermediate_size": model.d_ff,
      "num_hidden_layers": model.num_layers, "hidden_activation": model.activation,
      "mlp_dropout": model.dropout, "attention_dropout": model.attention_dropout,
      "classifier_dropout": (model.dropout if model.classifier_dropout is None
                             else model.classifier_dropout),
      "norm_eps": model.layer_norm_eps, "norm_bias": model.norm_bias,
      "attention_bias": model.attention_bias, "mlp_bias": model.feed_forward_in_bias,
      "local_attention": model.local_window,
      "layer_types": [_LOCAL if model.local_window and i % model.global_every else _GLOBAL
                      for i in range(model.num_layers)],
      "rope_parameters": {_GLOBAL: {"rope_type": "default", "rope_theta": model.rotary_theta},
                          _LOCAL: {"rope_type": "default", "rope_theta": local}},
      "classifier_pooling": "cls" if model.pooling == "first" else "mean",
      "classifier_activation": model.pooler_activation, "classifier_bias": model.pooler_bias}
