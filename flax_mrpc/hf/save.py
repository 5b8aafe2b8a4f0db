"""This project's models written as Hugging Face checkpoints: the config.json
and the {name: array} that transformers loads, mapped back through each
family's weight table (`families`), and the folder holding them.

A classifier keeps the family and config.json of the checkpoint it was
fine-tuned from (the keys its family's `hf_config` writes taken from the
model), or becomes a BERT where its config maps onto one
(`families.bert.hf_config` names the fields that do not); either way a
`*ForSequenceClassification` of the task's labels (`hf.heads`): a binary
model's softmax[:, 1] is this project's probability. A pretrained `MaskedLM` becomes a `BertForMaskedLM` with its
decoder tied to the word embeddings.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from flax_mrpc.config import Config, ModelConfig, TaskConfig
from flax_mrpc.hf import heads
from flax_mrpc.hf.families import FAMILIES, bert, common


def _mapped(params: nnx.State, names: dict, model_type: str,
            task: TaskConfig = TaskConfig()) -> dict[str, np.ndarray]:
  """{HF name: array} of every parameter in `params` through `names`
  ({our path: (HF name, conversion)}), the head's for `task`; raises
  PretrainedError naming the parameters that have no name."""
  inverse = common.INVERSE | {common.head_kernel: lambda a: heads.to_theirs(a, task),
                              common.head_bias: lambda a: heads.to_theirs(a, task)}
  flat = {path: np.asarray(value.get_value(), np.float32)
          for path, value in nnx.to_flat_state(params)}
  unmapped = sorted(set(flat) - set(names))
  if unmapped:
    raise common.PretrainedError(f"these parameters have no {model_type} name: {unmapped}.")
  arrays, blocks = {}, {}
  for path, (hf_name, convert) in names.items():
    if isinstance(convert, common.Block):  # one block of a fused weight
      blocks.setdefault(hf_name, {})[convert.index] = convert.inverse(flat[path])
    else:
      arrays[hf_name] = inverse[convert](flat[path])
  arrays |= {hf_name: np.concatenate([parts[i] for i in sorted(parts)])
             for hf_name, parts in blocks.items()}
  return {hf_name: np.ascontiguousarray(array) for hf_name, array in arrays.items()}


def classifier_config(config: Config) -> dict[str, Any]:
  """The config.json of a classifier trained with `config`: its starting
  checkpoint's (with the fields its family's `hf_config` writes taken from
  the model, which a --set may have changed), or a BERT's, with the task's
  head (`heads.label_config`)."""
  source = config.train.pretrained
  hf = (json.loads((Path(source) / "config.json").read_text()) if source
        else bert.hf_config(config.model))
  model_type = hf.get("model_type") or "bert"
  if source and hasattr(FAMILIES[model_type], "hf_config"):
    hf |= FAMILIES[model_type].hf_config(config.model)
  return hf | {
      "model_type": model_type, "architectures": [FAMILIES[model_type].ARCHITECTURES[model_type]],
      **heads.label_config(config.task)}


def classifier_weights(params: nnx.State, model: ModelConfig, model_type: str,
                       task: TaskConfig = TaskConfig()) -> dict[str, np.ndarray]:
  """{HF name: array} of a `PairClassifier`'s parameters as the family's
  sequence-classification model of `task`."""
  family = FAMILIES[model_type]
  names = {path: (family.PREFIX + hf_name, convert)
           for path, (hf_name, convert) in family.encoder_names(model).items()}
  in_base = getattr(family, "HEAD_IN_BASE", ())  # head layers the base model holds (GTE's pooler)
  head = {path: (family.PREFIX + hf_name if hf_name.startswith(in_base) else hf_name, convert)
          for path, (hf_name, convert) in family.head_names(model).items()}
  return _mapped(params, names | head, model_type, task)


def masked_lm_config(model: ModelConfig) -> dict[str, Any]:
  """The config.json of a `MaskedLM` as a BertForMaskedLM."""
  return bert.hf_config(dataclasses.replace(model, pooler=True)) | {
      "architectures": [bert.MASKED_LM_ARCHITECTURE], "tie_word_embeddings": True}


def masked_lm_weights(params: nnx.State, model: ModelConfig) -> dict[str, np.ndarray]:
  """{HF name: array} of a `MaskedLM`'s parameters as a BertForMaskedLM."""
  return _mapped(params, bert.masked_lm_names(model), "BERT")


def write_checkpoint(folder: Path, config: dict[str, Any], weights: dict[str, np.ndarray],
                     tokenizer) -> None:
  """Writes config.json, model.safetensors and the tokenizer's files to `folder`."""
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
  save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
  tokenizer.save_pretrained(str(folder))
