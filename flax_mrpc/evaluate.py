"""Recompute a split's metrics from a workdir's best checkpoint, on its task.

    python -m flax_mrpc.evaluate --workdir runs/default --split test
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Sequence

import numpy as np

from flax_mrpc import cli  # first: it quiets transformers before that is imported
from flax_mrpc.data import cache, sources, tasks, tokenization
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
  parser.add_argument("--data-cache", metavar="DIR",
                      help="the encoded-split cache the run used (default: WORKDIR/data_cache)")
  cli.add_workdir_task_argument(parser)
  args = parser.parse_args(argv)
  try:
    trained = load_trained(args.workdir, args.task)
    config = trained.config
    splits = tasks.split_sources(config.task, args.data_source, args.data_dir)
    if args.split not in splits or args.split == "train":
      raise ValueError(f"task {config.task.task!r} has no split {args.split!r}; choose one of "
                       f"{[name for name in splits if name != 'train']}.")
    start = time.time()
    folder = cache.folder_for(args.workdir, args.data_cache)
    symmetric = config.symmetric_scoring and not args.one_order
    views, hit = cache.encoded_views(
        cache.EncodedCache(folder), splits[args.split].fingerprint, splits[args.split].read,
        trained.tokenizer, config.model.max_length, (False, True) if symmetric else (False,),
        config.model.match_embedding)
    print(cache.summary({args.split: hit}, folder, time.time() - start), file=sys.stderr)
    labels = np.asarray(views[0].labels)
    if not np.all(tokenization.labelled(labels)):
      raise DataError(f"the {args.split} split has no labels; use flax_mrpc.predict.")
    predictions = trained.views_probabilities(views)
  except ValueError as e:
    return cli.report(e)
  metrics = task_metrics(config.task, labels, predictions)
  print(json.dumps({"task": config.task.task, "split": args.split, "best_epoch": trained.best_epoch,
                    **metrics}, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
