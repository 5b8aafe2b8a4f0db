"""Recompute a split's metrics from a workdir's best checkpoint, on its task.

    python -m flax_mrpc.evaluate --workdir runs/default --split test
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import numpy as np

from flax_mrpc import cli  # first: it quiets transformers before that is imported
from flax_mrpc.data import sources, tasks, tokenization
from flax_mrpc.data.examples import DataError
from flax_mrpc.inference import load_trained
from flax_mrpc.training.metrics import task_metrics


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m flax_mrpc.evaluate", description=__doc__)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--split", default="validation",
                      help="validation or test (MNLI: also validation_mismatched, "
                           "test_mismatched; default: %(default)s)")
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--data-source", default="local", choices=sources.SOURCES)
  parser.add_argument("--one-order", action="store_true",
                      help="score each pair in the given order only")
  cli.add_workdir_task_argument(parser)
  args = parser.parse_args(argv)
  try:
    trained = load_trained(args.workdir, args.task)
    task = trained.config.task
    splits = tasks.load(task, args.data_source, args.data_dir)
    if args.split not in splits or args.split == "train":
      raise ValueError(f"task {task.task!r} has no split {args.split!r}; choose one of "
                       f"{[name for name in splits if name != 'train']}.")
    examples = splits[args.split]
    labels = tokenization.label_array([e.label for e in examples])
    if not np.all(tokenization.labelled(labels)):
      raise DataError(f"the {args.split} split has no labels; use flax_mrpc.predict.")
    predictions = trained.probabilities(examples, symmetric=False if args.one_order else None)
  except ValueError as e:
    return cli.report(e)
  metrics = task_metrics(task, labels, predictions)
  print(json.dumps({"task": task.task, "split": args.split, "best_epoch": trained.best_epoch,
                    **metrics}, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
