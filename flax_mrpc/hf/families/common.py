"""What the family modules share: array conversions, config checks, and the
BERT-style layer names that BERT, RoBERTa and ELECTRA all use."""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class Block:
  """Block `index` of `count` equal blocks along the first axis of a fused
  torch weight [count x out, in] or bias [count x out] (ModernBERT's Wqkv
  and Wi, GTE's qkv_proj and up_gate_proj), as ours: transposed to a kernel
  when `kernel`. Several of our parameters read one fused weight; export
  (`save`) writes their `inverse`s back, concatenated in index order."""

  index: int
  count: int
  kernel: bool

  def __call__(self, array: np.ndarray) -> np.ndarray:
    block = np.array_split(array, self.count, axis=0)[self.index]  # uneven: a mis-shaped error
    return block.T if self.kernel else block

  def inverse(self, ours: np.ndarray) -> np.ndarray:
    return ours.T if self.kernel else ours


def linear(ours: tuple, hf: str, bias: bool = True) -> Names:
  """A torch Linear `hf` (weight, and bias when `bias`) onto our nnx.Linear at path `ours`."""
  names = {ours + ("kernel",): (f"{hf}.weight", kernel)}
  return names | ({ours + ("bias",): (f"{hf}.bias", same)} if bias else {})


def fused_linear(ours: list[tuple], hf: str, bias: bool = True) -> Names:
  """A torch Linear `hf` whose output is our nnx.Linears at the paths `ours`,
  one after another (a fused projection such as Wqkv)."""
  names = {}
  for index, path in enumerate(ours):
    names[path + ("kernel",)] = (f"{hf}.weight", Block(index, len(ours), kernel=True))
    if bias:
      names[path + ("bias",)] = (f"{hf}.bias", Block(index, len(ours), kernel=False))
  return names


def classification_head(dense: str | None, out: str) -> Names:
  """A sequence-classification head: an optional dense layer `dense` onto our
  pooler, and the output layer `out` onto our classifier (`hf.heads`)."""
  names = linear(("pooler",), dense) if dense else {}
  return names | {("classifier", "kernel"): (f"{out}.weight", head_kernel),
                  ("classifier", "bias"): (f"{out}.bias", head_bias)}


def layer_norm(ours: tuple, hf: str, bias: bool = True) -> Names:
  """A LayerNorm (or, without `bias`, one without a bias, or an RMSNorm) onto ours."""
  names = {ours + ("scale",): (f"{hf}.weight", same)}
  return names | ({ours + ("bias",): (f"{hf}.bias", same)} if bias else {})


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


def rope_theta(parameters: dict[str, Any] | None, theta: float, path: Path, key: str) -> float:
  """The base of a default-type RoPE from config.json's `rope_parameters`
  (or `rope_scaling`) dict `parameters` (transformers 5), else `theta` (the
  older top-level key or the family's default); any other `rope_type` is a
  PretrainedError naming it, as config key `key`."""
  parameters = parameters or {}
  kind = parameters.get("rope_type", parameters.get("type", "default"))
  if kind != "default":
    raise PretrainedError(f"{path}: {key} rope_type {kind!r} is not supported here (supported: "
                          "'default').")
  return float(parameters.get("rope_theta", theta))


# The ModelConfig fields every rotary family (ModernBERT, GTE, EuroBERT) needs, with their values.
ROTARY_NEEDS = {"seed_embedding": False, "match_embedding": False, "mask_attention": True,
                "position_offset": 0, "embedding_size": None, "absolute_positions": False,
                "relative_attention": False, "gated_feed_forward": True, "pooler": True,
                "pooler_input_dropout": False}


def check_fields(model: Any, needs: dict[str, Any], family: str,
                 allowed: dict[str, tuple] | None = None, rotary: bool = False) -> None:
  """Raises a PretrainedError naming each field of the ModelConfig `model`
  that differs from its value in `needs`, or is not one of its values in
  `allowed` (what `family`'s config.json can hold), or, for a `rotary`
  family, that it has no RoPE base."""
  wrong = [f"{name}={getattr(model, name)!r} ({family} needs {value!r})"
           for name, value in needs.items() if getattr(model, name) != value]
  wrong += [f"{name}={getattr(model, name)!r} ({family} needs one of {values!r})"
            for name, values in (allowed or {}).items() if getattr(model, name) not in values]
  if rotary and model.rotary_theta is None:
    wrong.append(f"rotary_theta=None ({family} needs a number)")
  if wrong:
    raise PretrainedError(f"this model has no Hugging Face {family} equivalent: "
                          + "; ".join(wrong) + ".")


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
