"""Write a trained workdir as a Hugging Face checkpoint folder.

    python -m flax_mrpc.export --workdir runs/minilm --output exported/minilm

The folder holds `config.json` (the family's `model_type`, its
`*ForSequenceClassification` architecture, the task's `num_labels`,
`id2label`/`label2id` and `problem_type`), `model.safetensors` and the
tokenizer's files, so that
`transformers.AutoModelForSequenceClassification.from_pretrained(DIR)` loads
it with this project's predictions: a binary task's probability is its
softmax[:, 1], an N-label task's its softmax, a regression score its logit.
A run fine-tuned from a checkpoint keeps that checkpoint's config.json and
family; a from-scratch run becomes a BERT, where its config
maps onto one (`hf.families.bert.hf_config` names the fields that do not).

A pretraining workdir (`flax_mrpc.pretrain`) becomes a `BertForMaskedLM`:
`transformers.AutoModelForMaskedLM.from_pretrained(DIR)` loads it with its
decoder tied to the word embeddings, and `AutoModel` loads its encoder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from flax import nnx

from flax_mrpc import cli  # first: it quiets transformers before that is imported
from flax_mrpc.data import tokenization
from flax_mrpc.hf import save
from flax_mrpc.inference import load_trained
from flax_mrpc.training import pretrained_encoder


def export(workdir: str | Path, output: str | Path, task: str | None = None) -> Path:
  """Writes `workdir`'s best checkpoint (a pretraining workdir's final one)
  to the folder `output`; returns it. A `task` name must be the workdir's."""
  output = Path(output)
  if pretrained_encoder.is_pretraining_workdir(workdir):
    model, config = pretrained_encoder.restore_masked_lm(workdir)
    tokenizer = tokenization.load_tokenizer(str(Path(workdir) / "tokenizer"),
                                            config.train.lowercase)
    save.write_checkpoint(output, save.masked_lm_config(config.model), save.masked_lm_weights(
        nnx.state(model, nnx.Param), config.model), tokenizer)
    return output
  trained = load_trained(workdir, task)
  hf_config = save.classifier_config(trained.config)
  weights = save.classifier_weights(trained.params, trained.config.model, hf_config["model_type"],
                                    trained.config.task)
  save.write_checkpoint(output, hf_config, weights, trained.tokenizer)
  return output


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m flax_mrpc.export",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, metavar="DIR",
                      help="the --workdir of a training or pretraining run")
  parser.add_argument("--output", required=True, metavar="DIR",
                      help="folder for the Hugging Face checkpoint")
  cli.add_workdir_task_argument(parser)
  args = parser.parse_args(argv)
  try:
    folder = export(args.workdir, args.output, args.task)
  except (ValueError, OSError) as e:
    return cli.report(e)
  kind = ("AutoModelForMaskedLM" if pretrained_encoder.is_pretraining_workdir(args.workdir)
          else "AutoModelForSequenceClassification")
  print(f"wrote {folder}: load it with transformers.{kind}.from_pretrained({str(folder)!r})",
        file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
