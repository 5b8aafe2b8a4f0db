"""Pretrain the encoder with masked-language modelling: `python -m flax_mrpc.pretrain`.

    python -m flax_mrpc.pretrain --workdir runs/mlm [--corpus FILE]
    python -m flax_mrpc.train --pretrained runs/mlm --workdir runs/finetuned

BERT's recipe, on this project's own encoder (`modules.MaskedLM`, the head
tied to the word embeddings): a WordPiece vocabulary learned on the corpus
(`data.corpus`; by default MRPC's train sentences), pairs of consecutive lines
packed into rows of `max_length` tokens, BERT's 15% masking with 80/10/10
(`data.masking`), and the fine-tuning loop (`training.loop.run_epochs`): the same optax
optimizer and schedule, orbax checkpoints, exact resume, preemption, and
jit/pmap/mesh over one or several hosts. After each epoch the masked-token
loss and accuracy are measured on MRPC's validation pairs (masked the same
way every time).

The workdir then holds `results.json` ("task": "masked_lm"), `metrics.jsonl`,
`tokenizer/vocab.txt` and `checkpoints/`; `train --pretrained WORKDIR`
fine-tunes its encoder with the default recipe, and `export --workdir
WORKDIR` writes it as a Hugging Face `BertForMaskedLM`.

A fine-tuning config with `pretrain_epochs` above 0 (`train --set
pretrain_epochs=N`) runs this first in its own `workdir/pretrain`, once. The
work itself is `training.pretraining`; this module is the command.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from flax_mrpc import cli  # first: it quiets transformers before that is imported
from flax_mrpc.config import Config, get_preset, with_task
from flax_mrpc.training.pretraining import pretrain

DEFAULT_EPOCHS = 20  # when the preset has no pretraining of its own


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m flax_mrpc.pretrain",
      usage="%(prog)s --workdir DIR [--corpus FILE] [options]",
      formatter_class=argparse.RawDescriptionHelpFormatter,
      description="Pretrain the encoder with masked-language modelling (BERT's 15% masking, "
                  "80/10/10)\non a text corpus, one sentence or document per line (default: "
                  "MRPC's train sentences).\nRerun the same command to resume a stopped run.",
      epilog="then: python -m flax_mrpc.train --pretrained DIR --workdir DIR2\n"
             "  or: python -m flax_mrpc.export --workdir DIR --output HF_DIR")
  common = cli.add_config_arguments(parser, {
      "workdir": "folder for checkpoints, metrics, the tokenizer and results.json",
      "preset": "the model and optimizer settings (default: default)",
      "epochs": "passes over the corpus (default: the preset's pretrain_epochs, else "
                f"{DEFAULT_EPOCHS})",
      "batch_size": "pairs of lines per step"})
  common.add_argument("--corpus", metavar="FILE",
                      help="UTF-8 text, one sentence or document per line; consecutive lines "
                           "make the pairs (default: MRPC's train sentences; MRPC's validation "
                           "pairs are held out)")
  cli.add_run_arguments(parser)
  return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> Config:
  """The preset with the flags applied; pretraining's own fields take the
  short flags (--epochs is pretrain_epochs, at least 1)."""
  changes = {field: getattr(args, flag) for flag, field in (
      ("epochs", "pretrain_epochs"), ("batch_size", "pretrain_batch_size"),
      ("learning_rate", "pretrain_learning_rate"), ("corpus", "corpus"), ("seed", "seed"))
      if getattr(args, flag) is not None}
  changes.update(cli.parse_set(args.set))
  config = with_task(get_preset(args.preset or "default"), cli.task_from_args(args)).replace(
      **changes)
  if config.pretrain.pretrain_epochs < 1:
    config = config.replace(pretrain_epochs=DEFAULT_EPOCHS)
  return config


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run_command(parse_args(argv), config_from_args, pretrain)


if __name__ == "__main__":
  sys.exit(main())
