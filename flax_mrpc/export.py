"""Write a trained workdir as a Hugging Face checkpoint folder.

    python -m flax_mrpc.export --workdir runs/minilm --output exported/minilm

The folder holds `config.json` (the family's `model_type`, its
`*ForSequenceClassification` architecture, labels not_paraphrase /
paraphrase), `model.safetensors` and the tokenizer's files, so that
`transformers.AutoModelForSequenceClassification.from_pretrained(DIR)` loads
it as a 2-label classifier whose softmax[:, 1] is this project's
probability. A run fine-tuned from a checkpoint keeps that checkpoint's
config.json and family; a from-scratch run becomes a BERT, where its config
maps onto one (`families.bert.hf_config` names the fields that do not).

A pretraining workdir (`flax_mrpc.pretrain`) becomes a `BertForMaskedLM`:
`transformers.AutoModelForMaskedLM.from_pretrained(DIR)` loads it with its
decoder tied to the word embeddings, and `AutoModel` loads its encoder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from flax import nnx

from flax_mrpc import cli  # first: it quiets transformers before that is imported
from flax_mrpc import pretrained_workdir, tokenization
from flax_mrpc.families import FAMILIES, bert, common
from flax_mrpc.inference import TrainedModel, load_trained

LABELS = {"0": "not_paraphrase", "1": "paraphrase"}


def hf_config(trained: TrainedModel) -> dict:
  """The exported config.json: the starting checkpoint's, or a BERT's."""
  source = trained.config.train.pretrained
  config = (json.loads((Path(source) / "config.json").read_text()) if source
            else bert.hf_config(trained.config.model))
  model_type = config.get("model_type") or "bert"
  return config | {
      "model_type": model_type, "architectures": [FAMILIES[model_type].ARCHITECTURES[model_type]],
      "id2label": LABELS, "label2id": {name: int(i) for i, name in LABELS.items()}}


def hf_weights(trained: TrainedModel, model_type: str) -> dict[str, np.ndarray]:
  """{HF name: array} of the sequence-classification model, every one of ours mapped back."""
  family = FAMILIES[model_type]
  model = trained.config.model
  flat = {path: np.asarray(value.get_value(), np.float32)
          for path, value in nnx.to_flat_state(trained.params)}
  names = {path: (family.PREFIX + hf_name, convert)
           for path, (hf_name, convert) in family.encoder_names(model).items()}
  names |= family.head_names(model)
  unmapped = sorted(set(flat) - set(names))
  if unmapped:
    raise common.PretrainedError(f"these parameters have no {model_type} name: {unmapped}.")
  return {hf_name: np.ascontiguousarray(common.INVERSE[convert](flat[path]))
          for path, (hf_name, convert) in names.items()}


def masked_lm_export(workdir: str | Path) -> tuple[dict, dict[str, np.ndarray], object]:
  """(config.json, {HF name: array}, tokenizer) of a pretraining workdir's
  final MaskedLM as a BertForMaskedLM."""
  model, config = pretrained_workdir.restore_masked_lm(workdir)
  hf = bert.hf_config(dataclasses.replace(config.model, pooler=True)) | {
      "architectures": [bert.MASKED_LM_ARCHITECTURE], "tie_word_embeddings": True}
  flat = {path: np.asarray(value.get_value(), np.float32)
          for path, value in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  names = bert.masked_lm_names(config.model)
  unmapped = sorted(set(flat) - set(names))
  if unmapped:
    raise common.PretrainedError(f"these parameters have no BERT name: {unmapped}.")
  weights = {hf_name: np.ascontiguousarray(common.INVERSE[convert](flat[path]))
             for path, (hf_name, convert) in names.items()}
  tokenizer = tokenization.load_tokenizer(str(Path(workdir) / "tokenizer"),
                                          config.train.lowercase)
  return hf, weights, tokenizer


def export(workdir: str | Path, output: str | Path) -> Path:
  """Writes `workdir`'s best checkpoint (a pretraining workdir's final one)
  to the folder `output`; returns it."""
  from safetensors.numpy import save_file

  if pretrained_workdir.is_pretrain_workdir(workdir):
    config, weights, tokenizer = masked_lm_export(workdir)
  else:
    trained = load_trained(workdir)
    config = hf_config(trained)
    weights, tokenizer = hf_weights(trained, config["model_type"]), trained.tokenizer
  output = Path(output)
  output.mkdir(parents=True, exist_ok=True)
  (output / "config.json").write_text(json.dumps(config, indent=2) + "\n")
  save_file(weights, str(output / "model.safetensors"), metadata={"format": "pt"})
  tokenizer.save_pretrained(str(output))
  return output


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m flax_mrpc.export",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, metavar="DIR",
                      help="the --workdir of a training or pretraining run")
  parser.add_argument("--output", required=True, metavar="DIR",
                      help="folder for the Hugging Face checkpoint")
  args = parser.parse_args(argv)
  try:
    folder = export(args.workdir, args.output)
  except (ValueError, OSError) as e:
    return cli.report(e)
  kind = ("AutoModelForMaskedLM" if pretrained_workdir.is_pretrain_workdir(args.workdir)
          else "AutoModelForSequenceClassification")
  print(f"wrote {folder}: load it with transformers.{kind}.from_pretrained({str(folder)!r})",
        file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
