"""EuroBERT (`model_type` eurobert): Llama-style pre-norm layers with RMSNorm,
no norm on the embeddings, a final RMSNorm; rotary positions (RoPE, base
`rope_parameters.rope_theta`), grouped-query attention (`num_key_value_heads`)
and a SwiGLU feed-forward block, down_proj(activation(gate_proj) x up_proj),
without biases by default (`attention_bias`, `mlp_bias`); no segments, no
dropout but on the attention weights. The head (`classifier_pooling`):
"bos" (the first token) or "mean" (of the pair's tokens), then dense, GELU,
linear; or "late": dense, GELU and linear on every token, the logits
averaged over the pair's tokens (as the head is linear after the GELU, the
mean of the pooler's outputs goes through the linear layer instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flax_mrpc.config import ModelConfig
from flax_mrpc.hf.families import common

MODEL_TYPES = ("eurobert",)
ARCHITECTURES = {"eurobert": "EuroBertForSequenceClassification"}  # what export writes
PREFIX = "model."
UNUSED = ("lm_head.",)  # EuroBertForMaskedLM's head

_POOLING = {"bos": "first", "mean": "mean", "late": "late"}


def model_fields(hf: dict[str, Any], path: Path) -> dict[str, Any]:
  if hf.get("rope_scaling"):
    common.rope_theta(hf["rope_scaling"], 0.0, path, "rope_scaling")
  hidden, heads = hf["hidden_size"], hf["num_attention_heads"]
  if hf.get("head_dim") not in (None, hidden // heads):
    raise common.PretrainedError(f"{path}: head_dim {hf['head_dim']!r} is not supported here "
                                 "(it must be hidden_size / num_attention_heads).")
  pooling = common.require(hf, "classifier_pooling", tuple(_POOLING), path, "late")
  return dict(
      vocab_size=hf["vocab_size"], max_positions=hf.get("max_position_embeddings", 8192),
      type_vocab_size=0, d_model=hidden, num_heads=heads, d_ff=hf["intermediate_size"],
      num_layers=hf["num_hidden_layers"],
      activation=common.require(hf, "hidden_act", ("silu", "gelu", "relu"), path, "silu"),
      norm="pre", dropout=0.0, attention_dropout=hf.get("attention_dropout", 0.0),
      classifier_dropout=0.0, layer_norm_eps=hf.get("rms_norm_eps", 1e-5),
      absolute_positions=False,
      rotary_theta=common.rope_theta(hf.get("rope_parameters"), hf.get("rope_theta", 10_000.0),
                                     path, "rope_parameters"),
      num_kv_heads=hf.get("num_key_value_heads") or heads,
      attention_bias=hf.get("attention_bias", False), gated_feed_forward=True,
      feed_forward_in_bias=hf.get("mlp_bias", False),
      feed_forward_out_bias=hf.get("mlp_bias", False), norm_type="rms", embedding_norm=False,
      pooling=_POOLING[pooling], pooler=True, pooler_activation="gelu")


def _layer(i: int, config: ModelConfig) -> common.Names:
  ours, hf = ("encoder", "layers", i), f"layers.{i}."
  names = {}
  for part, hf_part in (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj"), ("fc", "o_proj")):
    names |= common.linear(ours + ("attention", part), hf + f"self_attn.{hf_part}",
                           config.attention_bias)
  names |= common.layer_norm(ours + ("attention_norm",), hf + "input_layernorm", bias=False)
  for part, hf_part, bias in (("intermediate", "gate_proj", config.feed_forward_in_bias),
                              ("up", "up_proj", config.feed_forward_in_bias),
                              ("output", "down_proj", config.feed_forward_out_bias)):
    names |= common.linear(ours + (part,), hf + f"mlp.{hf_part}", bias)
  return names | common.layer_norm(ours + ("output_norm",), hf + "post_attention_layernorm",
                                   bias=False)


def encoder_names(config: ModelConfig) -> common.Names:
  names = common.embedding(("encoder", "embeddings", "word_embeddings"), "embed_tokens")
  for i in range(config.num_layers):
    names |= _layer(i, config)
  return names | common.layer_norm(("encoder", "final_norm"), "norm", bias=False)


def head_names(config: ModelConfig) -> common.Names:
  return common.classification_head("dense", "classifier")


def learning_rate(model: ModelConfig) -> float:
  """2e-5, chosen here, not published for MRPC: the EuroBERT paper (Boizard
  et al. 2025, arXiv:2503.05500) tunes the learning rate per task and size,
  and no MRPC value could be checked offline; 2e-5 is the value this project
  uses for the other base-size encoders (the BERT paper's GLUE grid is 2e-5
  to 5e-5)."""
  return 2e-5


_NEEDS = common.ROTARY_NEEDS | {
    "type_vocab_size": 0, "norm": "pre", "norm_type": "rms", "embedding_norm": False,
    "first_attention_norm": True, "local_window": 0, "dropout": 0.0,
    "pooler_activation": "gelu", "pooler_bias": True, "pooler_norm": False}


def hf_config(model: ModelConfig) -> dict[str, Any]:
  """The config.json keys `model_fields` reads, for a EuroBERT holding
  `model`; a field EuroBERT has no equivalent for is a PretrainedError
  naming it."""
  common.check_fields(model, _NEEDS | {"feed_forward_out_bias": model.feed_forward_in_bias},
                      "EuroBERT", {"activation": ("silu", "gelu", "relu"),
                                   "classifier_dropout": (0.0, None)}, rotary=True)
  return {
      "model_type": "eurobert", "vocab_size": model.vocab_size,
      "max_position_embeddings": model.num_positions, "hidden_size": model.d_model,
      "num_attention_heads": model.num_heads, "head_dim": model.d_model // model.num_heads,
      "num_key_value_heads": model.num_kv_heads or model.num_heads,
      "intermediate_size": model.d_ff, "num_hidden_layers": model.num_layers,
      "hidden_act": model.activation, "attention_dropout": model.attention_dropout,
      "rms_norm_eps": model.layer_norm_eps, "attention_bias": model.attention_bias,
      "mlp_bias": model.feed_forward_in_bias,
      "rope_parameters": {"rope_type": "default", "rope_theta": model.rotary_theta},
      "classifier_pooling": {value: key for key, value in _POOLING.items()}[model.pooling]}
