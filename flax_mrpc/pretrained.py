"""Hugging Face BERT-family checkpoints loaded into this project's modules.

A checkpoint is a folder with `config.json`, `model.safetensors` (or
`pytorch_model.bin`, which needs torch) and `vocab.txt`/`tokenizer.json`, or a
hub id when online. Its config becomes a `ModelConfig`; each weight is mapped
by explicit name onto `PairClassifier`'s encoder (and pooler); the classifier
head stays freshly initialised. Missing, unexpected or mis-shaped weights are
one `PretrainedError` listing them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from flax_mrpc.config import Config, ModelConfig

_ACTIVATIONS = ("gelu", "relu")  # hidden_act values these modules implement
# Buffers a checkpoint may hold that are not weights.
_IGNORED = ("embeddings.position_ids",)


class PretrainedError(ValueError):
  """A checkpoint that does not fit the modules; the message lists why."""


def resolve(name_or_path: str) -> Path:
  """A local checkpoint folder for a folder path or a hub id (downloaded when online)."""
  path = Path(name_or_path).expanduser()
  if path.is_dir():
    return path
  try:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name_or_path, allow_patterns=[
        "config.json", "*.safetensors", "vocab.txt", "tokenizer*.json", "special_tokens_map.json"]))
  except Exception as e:
    raise PretrainedError(
        f"{name_or_path!r} is not a folder and could not be fetched from the hub ({e}). "
        "Pass --pretrained a folder with config.json and model.safetensors."
    ) from None


def model_config(checkpoint: Path, max_length: int, **overrides) -> ModelConfig:
  """Translates the checkpoint's `config.json` into a `ModelConfig`."""
  path = checkpoint / "config.json"
  if not path.is_file():
    raise PretrainedError(f"{path}: file not found; a BERT checkpoint folder needs config.json.")
  hf = json.loads(path.read_text())
  if hf.get("model_type") not in ("bert", None) or hf.get(
      "position_embedding_type", "absolute") != "absolute":
    raise PretrainedError(f"{path}: model_type {hf.get('model_type')!r} with "
                          f"{hf.get('position_embedding_type')!r} positions is not a BERT "
                          "encoder these modules can hold.")
  if hf.get("hidden_act") not in _ACTIVATIONS:
    raise PretrainedError(f"{path}: hidden_act {hf.get('hidden_act')!r} is not one of "
                          f"{_ACTIVATIONS}.")
  fields = dict(
      vocab_size=hf["vocab_size"], max_length=max_length,
      max_positions=hf["max_position_embeddings"], type_vocab_size=hf["type_vocab_size"],
      d_model=hf["hidden_size"], num_heads=hf["num_attention_heads"],
      d_ff=hf["intermediate_size"], num_layers=hf["num_hidden_layers"],
      activation=hf["hidden_act"], norm="post",
      dropout=hf.get("hidden_dropout_prob", 0.1),
      attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
      layer_norm_eps=hf.get("layer_norm_eps", 1e-12), pooler=True,
  )
  fields.update(overrides)
  return ModelConfig(**fields)


def read_weights(checkpoint: Path) -> dict[str, np.ndarray]:
  """{HF name: float32 array}, without a `bert.` prefix."""
  safetensors_path = checkpoint / "model.safetensors"
  torch_path = checkpoint / "pytorch_model.bin"
  if safetensors_path.is_file():
    from safetensors.numpy import load_file

    weights = load_file(str(safetensors_path))
  elif torch_path.is_file():
    try:
      import torch
    except ImportError:
      raise PretrainedError(f"{torch_path} needs torch to read; install torch or convert the "
                            "checkpoint to model.safetensors.") from None
    weights = {k: v.float().numpy() for k, v in
               torch.load(torch_path, map_location="cpu", weights_only=True).items()}
  else:
    raise PretrainedError(f"{checkpoint}: neither model.safetensors nor pytorch_model.bin.")
  return {k.removeprefix("bert."): np.asarray(v, np.float32) for k, v in weights.items()}


def _layer_names(i: int) -> dict[tuple, tuple[str, bool]]:
  hf = f"encoder.layer.{i}."
  ours = ("encoder", "layers", i)
  names = {}
  for part, module in (("attention.self.query", "attention.q"), ("attention.self.key", "attention.k"),
                       ("attention.self.value", "attention.v"),
                       ("attention.output.dense", "attention.fc"),
                       ("intermediate.dense", "intermediate"), ("output.dense", "output")):
    path = ours + tuple(module.split("."))
    names[path + ("kernel",)] = (hf + part + ".weight", True)
    names[path + ("bias",)] = (hf + part + ".bias", False)
  for part, module in (("attention.output.LayerNorm", "attention_norm"),
                       ("output.LayerNorm", "output_norm")):
    names[ours + (module, "scale")] = (hf + part + ".weight", False)
    names[ours + (module, "bias")] = (hf + part + ".bias", False)
  return names


def weight_names(config: ModelConfig) -> dict[tuple, tuple[str, bool]]:
  """{our parameter path: (HF name, transpose?)} for every pretrained weight."""
  emb = ("encoder", "embeddings")
  names = {
      emb + ("word_embeddings", "embedding"): ("embeddings.word_embeddings.weight", False),
      emb + ("position_embeddings", "embedding"): ("embeddings.position_embeddings.weight", False),
      emb + ("token_type_embeddings", "embedding"): (
          "embeddings.token_type_embeddings.weight", False),
      emb + ("norm", "scale"): ("embeddings.LayerNorm.weight", False),
      emb + ("norm", "bias"): ("embeddings.LayerNorm.bias", False),
  }
  for i in range(config.num_layers):
    names.update(_layer_names(i))
  if config.pooler:
    names[("pooler", "kernel")] = ("pooler.dense.weight", True)
    names[("pooler", "bias")] = ("pooler.dense.bias", False)
  return names


def load_into(model: nnx.Module, config: ModelConfig, weights: dict[str, np.ndarray],
              source: str = "checkpoint") -> None:
  """Copies `weights` (HF names) into the encoder and pooler of `model`, a
  `PairClassifier` built from `config`, in place."""
  config_names = weight_names(config)
  state = nnx.state(model, nnx.Param)
  flat = dict(nnx.to_flat_state(state))
  missing, mis_shaped = [], []
  for path, (hf_name, transpose) in config_names.items():
    if hf_name not in weights:
      missing.append(hf_name)
      continue
    value = weights[hf_name].T if transpose else weights[hf_name]
    target = flat[path]
    current = target.get_value()
    if value.shape != current.shape:
      mis_shaped.append(f"{hf_name}: {value.shape} in the {source}, {current.shape} in the model")
      continue
    target.set_value(jnp.asarray(value, current.dtype))
  unexpected = sorted(set(weights) - set(_IGNORED) - {n for n, _ in config_names.values()})
  problems = []
  if missing:
    problems.append(f"missing: {', '.join(sorted(missing))}")
  if unexpected:
    problems.append(f"unexpected: {', '.join(unexpected)}")
  if mis_shaped:
    problems.append(f"mis-shaped: {'; '.join(mis_shaped)}")
  if problems:
    raise PretrainedError(f"the {source} does not fit the model:\n  " + "\n  ".join(problems))
  nnx.update(model, nnx.from_flat_state(flat))


def load_pretrained(name_or_path: str, max_length: int, seed: int = 0, **overrides):
  """(PairClassifier with the checkpoint's weights, its ModelConfig, its folder)."""
  from flax_mrpc.modules import PairClassifier

  checkpoint = resolve(name_or_path)
  config = model_config(checkpoint, max_length, **overrides)
  model = PairClassifier(config, rngs=nnx.Rngs(params=seed))
  load_into(model, config, read_weights(checkpoint), source=str(checkpoint))
  return model, config, checkpoint


def configure(config: Config, **model_overrides) -> Config:
  """`config` with its model fields taken from `config.train.pretrained` (a
  folder or hub id, resolved to a folder) and its tokenizer from there;
  `model_overrides` (e.g. dropout) are applied on top."""
  checkpoint = resolve(config.train.pretrained)
  model = model_config(checkpoint, config.model.max_length, **model_overrides)
  train = dataclasses.replace(config.train, pretrained=str(checkpoint),
                              tokenizer=str(checkpoint))
  return Config(model=model, train=train)
