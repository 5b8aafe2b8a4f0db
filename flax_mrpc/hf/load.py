"""Hugging Face BERT-family checkpoints loaded into this project's modules.

A checkpoint is a folder with `config.json`, `model.safetensors` (or
`pytorch_model.bin`, which needs torch) and its tokenizer files, or a hub id
when online. Its `model_type` picks the family (`flax_mrpc.hf.families`: bert,
roberta, xlm-roberta, distilbert, electra, deberta-v2, modernbert, gte,
eurobert), whose config translation gives the `ModelConfig` and whose
explicit weight names map every weight onto `PairClassifier`. A checkpoint
with a sequence-classification head of the task's size (one fine-tuned on
MRPC, an MNLI model's 3 labels) brings it along (`hf.heads`): a binary
model's probability is then the checkpoint's softmax[:, 1]; one without the
head's output layer gets a fresh head.
Missing, unexpected or mis-shaped weights are one `PretrainedError` listing
them; another `model_type`, or a config option the modules do not
implement, is one naming it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import ModuleType

import numpy as np
from flax import nnx

from flax_mrpc import weights
from flax_mrpc.config import Config, ModelConfig, TaskConfig
from flax_mrpc.hf import heads
from flax_mrpc.hf.families import FAMILIES, common
from flax_mrpc.hf.families.common import PretrainedError
from flax_mrpc.modules import PairClassifier

__all__ = ["PretrainedError", "configure", "load_into", "load_pretrained", "model_config",
           "read_weights", "recipe_learning_rate", "resolve"]


def resolve(name_or_path: str) -> Path:
  """A local checkpoint folder for a folder path or a hub id (downloaded when online)."""
  path = Path(name_or_path).expanduser()
  if path.is_dir():
    return path
  try:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name_or_path, allow_patterns=[
        "config.json", "*.safetensors", "vocab.txt", "vocab.json", "merges.txt", "*.model",
        "tokenizer*.json", "special_tokens_map.json"]))
  except Exception as e:
    raise PretrainedError(
        f"{name_or_path!r} is not a folder and could not be fetched from the hub ({e}). "
        "Pass --pretrained a folder with config.json and model.safetensors."
    ) from None


def _hf_config(checkpoint: Path) -> tuple[dict, ModuleType]:
  """config.json's dict and the family module of its model_type."""
  path = checkpoint / "config.json"
  if not path.is_file():
    raise PretrainedError(f"{path}: file not found; a checkpoint folder needs config.json.")
  hf = json.loads(path.read_text())
  model_type = hf.get("model_type") or "bert"
  if model_type not in FAMILIES:
    raise PretrainedError(f"{path}: model_type {model_type!r} is not supported; supported: "
                          f"{', '.join(sorted(FAMILIES))}.")
  return hf, FAMILIES[model_type]


def model_config(checkpoint: Path, max_length: int, **overrides) -> ModelConfig:
  """Translates the checkpoint's `config.json` into a `ModelConfig`."""
  hf, family = _hf_config(checkpoint)
  fields = family.model_fields(hf, checkpoint / "config.json") | {"max_length": max_length}
  return ModelConfig(**(fields | overrides))


def recipe_learning_rate(checkpoint: Path, model: ModelConfig) -> float:
  """The fine-tuning learning rate of the checkpoint's family and size."""
  return _hf_config(checkpoint)[1].learning_rate(model)


def read_weights(checkpoint: Path) -> dict[str, np.ndarray]:
  """{HF name: float32 array}, as stored."""
  safetensors_path = checkpoint / "model.safetensors"
  torch_path = checkpoint / "pytorch_model.bin"
  if safetensors_path.is_file():
    from safetensors.numpy import load_file

    stored = load_file(str(safetensors_path))
  elif torch_path.is_file():
    try:
      import torch
    except ImportError:
      raise PretrainedError(f"{torch_path} needs torch to read; install torch or convert the "
                            "checkpoint to model.safetensors.") from None
    stored = {k: v.float().numpy() for k, v in
               torch.load(torch_path, map_location="cpu", weights_only=True).items()}
  else:
    raise PretrainedError(f"{checkpoint}: neither model.safetensors nor pytorch_model.bin.")
  return {k: np.asarray(v, np.float32) for k, v in stored.items()}


def _problems(missing: list[str], unexpected: list[str], mis_shaped: list[str]) -> list[str]:
  return ([f"missing: {', '.join(sorted(missing))}"] if missing else []) + (
      [f"unexpected: {', '.join(sorted(unexpected))}"] if unexpected else []) + (
      [f"mis-shaped: {'; '.join(mis_shaped)}"] if mis_shaped else [])


def _head(names: common.Names, by_name: dict[str, np.ndarray], hf: dict, task: TaskConfig,
          source: str) -> common.Names:
  """`names` with the output layer's conversion chosen for `task` (`heads.to_ours`)."""
  out = next((hf_name for hf_name, convert in names.values() if convert is common.head_kernel),
             None)
  if out not in by_name:
    return names
  order = heads.label_order(hf, task, by_name[out].shape[0], source)
  convert = lambda array: heads.to_ours(array, task, order)
  return {path: (hf_name, convert if c in (common.head_kernel, common.head_bias) else c)
          for path, (hf_name, c) in names.items()}


def load_into(model: nnx.Module, config: ModelConfig, checkpoint: Path,
              source: str | None = None, task: TaskConfig = TaskConfig(),
              fresh_head: bool = False) -> bool:
  """Copies the checkpoint's weights into `model`, a `PairClassifier` built
  from `config` (`model_config` of it) for `task`, in place; returns whether
  its classification head was taken (else, or with `fresh_head`, the
  model's head keeps its fresh weights)."""
  hf, family = _hf_config(checkpoint)
  source = source or str(checkpoint)
  stored = read_weights(checkpoint)
  by_name = {name.removeprefix(family.PREFIX): value for name, value in stored.items()}
  names = family.encoder_names(config)
  head = family.head_names(config)
  has_head = head[("classifier", "kernel")][0] in by_name  # the head's output layer
  if has_head and fresh_head:
    by_name = {k: v for k, v in by_name.items() if k not in {n for n, _ in head.values()}}
    has_head = False
  if has_head:
    names |= _head(head, by_name, hf, task, source)
  missing = sorted({hf_name for hf_name, _ in names.values() if hf_name not in by_name})
  arrays = {path: convert(by_name[hf_name]) for path, (hf_name, convert) in names.items()
            if hf_name in by_name}
  mis_shaped = [f"{names[path][0]}: {by_name[names[path][0]].shape} in the {source}, "
                f"{expected} expected"
                for path, expected in weights.mismatches(model, arrays).items()]
  used = {hf_name for hf_name, _ in names.values()}
  unexpected = [name for name in by_name if name not in used and not name.startswith(
      family.UNUSED)]
  problems = _problems(missing, unexpected, mis_shaped)
  if problems:
    raise PretrainedError(f"the {source} does not fit the model:\n  " + "\n  ".join(problems))
  weights.assign(model, arrays)
  return has_head


def load_pretrained(name_or_path: str, max_length: int, seed: int = 0,
                    task: TaskConfig = TaskConfig(), fresh_head: bool = False, **overrides):
  """(PairClassifier of `task` with the checkpoint's weights, its ModelConfig, its folder)."""
  checkpoint = resolve(name_or_path)
  config = model_config(checkpoint, max_length, **({"num_labels": task.num_outputs} | overrides))
  model = PairClassifier(config, rngs=nnx.Rngs(params=seed))
  load_into(model, config, checkpoint, task=task, fresh_head=fresh_head)
  return model, config, checkpoint


def configure(config: Config, **model_overrides) -> Config:
  """`config` with its model fields taken from `config.train.pretrained` (a
  folder or hub id, resolved to a folder) and its tokenizer from there;
  `model_overrides` (e.g. dropout) are applied on top."""
  checkpoint = resolve(config.train.pretrained)
  model = model_config(checkpoint, config.model.max_length,
                       **({"num_labels": config.model.num_labels} | model_overrides))
  train = dataclasses.replace(config.train, pretrained=str(checkpoint),
                              tokenizer=str(checkpoint))
  return dataclasses.replace(config, model=model, train=train)
