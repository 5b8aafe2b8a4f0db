"""What the family modules share: array conversions, config checks, and the
BERT-style layer names that BERT, RoBERTa and ELECTRA all use."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

Convert = Callable[[np.ndarray], np.ndarray]
Names = dict[tuple, tuple[str, Convert]]


class PretrainedError(ValueError):
  """A checkpoint that does not fit the modules; the message lists why."""


def same(array: np.ndarray) -> np.ndarray:
  return array


def kernel(array: np.ndarray) -> np.ndarray:
  """A torch Linear weight [out, in] as a Flax kernel [in, out]."""
  return array.T


def head_kernel(array: np.ndarray) -> np.ndarray:
  """The classification head's output weight [labels, hidden]: marks the
  name whose conversion `flax_mrpc.hf.heads` chooses by the task."""
  return array


def head_bias(array: np.ndarray) -> np.ndarray:
  """The classification head's output bias [labels] (see `head_kernel`)."""
  return array


# Each conversion's inverse, from our arrays back to Hugging Face's (the head's: `hf.heads`).
INVERSE = {same: same, kernel: kernel}


def linear(ours: tuple, hf: str) -> Names:
  """A torch Linear `hf` (weight, bias) onto our nnx.Linear at path `ours`."""
  return {ours + ("kernel",): (f"{hf}.weight", kernel), ours + ("bias",): (f"{hf}.bias", same)}


def classification_head(dense: str | None, out: str) -> Names:
  """A sequence-classification head: an optional dense layer `dense` onto our
  pooler, and the output layer `out` onto our classifier (`hf.heads`)."""
  names = linear(("pooler",), dense) if dense else {}
  return names | {("classifier", "kernel"): (f"{out}.weight", head_kernel),
                  ("classifier", "bias"): (f"{out}.bias", head_bias)}


def layer_norm(ours: tuple, hf: str) -> Names:
  return {ours + ("scale",): (f"{hf}.weight", same), ours + ("bias",): (f"{hf}.bias", same)}


def embedding(ours: tuple, hf: str) -> Names:
  return {ours + ("embedding",): (f"{hf}.weight", same)}


def bert_layer(i: int, hf: str) -> Names:
  """Layer i of a BERT-style encoder whose layers are `hf`.{i}."""
  ours, hf = ("encoder", "layers", i), f"{hf}.{i}."
  names = {}
  for module, part in (("attention", "q"), ("attention", "k"), ("attention", "v")):
    hf_part = {"q": "query", "k": "key", "v": "value"}[part]
    names |= linear(ours + (module, part), hf + f"attention.self.{hf_part}")
  names |= linear(ours + ("attention", "fc"), hf + "attention.output.dense")
  names |= linear(ours + ("intermediate",), hf + "intermediate.dense")
  names |= linear(ours + ("output",), hf + "output.dense")
  names |= layer_norm(ours + ("attention_norm",), hf + "attention.output.LayerNorm")
  names |= layer_norm(ours + ("output_norm",), hf + "output.LayerNorm")
  return names


def bert_embeddings(segments: bool) -> Names:
  emb = ("encoder", "embeddings")
  names = embedding(emb + ("word_embeddings",), "embeddings.word_embeddings")
  names |= embedding(emb + ("position_embeddings",), "embeddings.position_embeddings")
  if segments:
    names |= embedding(emb + ("token_type_embeddings",), "embeddings.token_type_embeddings")
  return names | layer_norm(emb + ("norm",), "embeddings.LayerNorm")


def require(hf: dict[str, Any], key: str, allowed: tuple, path: Path, default: Any = None) -> Any:
  """`hf[key]` (or `default`), which must be one of `allowed`."""
  value = hf.get(key, default)
  if value not in allowed:
    raise PretrainedError(f"{path}: {key} {value!r} is not supported here (supported: "
                          f"{', '.join(map(repr, allowed))}).")
  return value


def bert_fields(hf: dict[str, Any], path: Path) -> dict[str, Any]:
  """The ModelConfig fields BERT, RoBERTa and ELECTRA configs share."""
  require(hf, "position_embedding_type", ("absolute",), path, "absolute")
  return dict(
      vocab_size=hf["vocab_size"], max_positions=hf["max_position_embeddings"],
      type_vocab_size=hf["type_vocab_size"], d_model=hf["hidden_size"],
      num_heads=hf["num_attention_heads"], d_ff=hf["intermediate_size"],
      num_layers=hf["num_hidden_layers"],
      activation=require(hf, "hidden_act", ("gelu", "relu"), path), norm="post",
      dropout=hf.get("hidden_dropout_prob", 0.1),
      attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
      classifier_dropout=hf.get("classifier_dropout"),
      layer_norm_eps=hf.get("layer_norm_eps", 1e-12), pooler=True)
