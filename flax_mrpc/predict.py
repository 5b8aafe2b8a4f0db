"""Score sentence pairs with a workdir's best checkpoint, or a checkpoint's own head.

    python -m flax_mrpc.predict --workdir runs/default --pair "He left." "He went away."
    python -m flax_mrpc.predict --pretrained textattack/roberta-base-MRPC --input pairs.tsv
    python -m flax_mrpc.predict --workdir runs/default --input pairs.tsv --output scored.tsv
    python -m flax_mrpc.predict --workdir runs/default --glue-submission

`--input` is a UTF-8 TSV of `sentence1<TAB>sentence2` lines (a first line
`sentence1<TAB>sentence2` is a header; empty lines are skipped). The whole
file is checked before anything is scored, and every bad line is reported
(`FILE:LINE: problem`); then it is read, scored and written BATCH_PAIRS pairs
at a time, so a file of any length streams. Output lines are
`label<TAB>probability<TAB>sentence1<TAB>sentence2` for a classifier (the
predicted label's name and probability; every label's probability with
`--all-probabilities`) and `score<TAB>sentence1<TAB>sentence2` for
regression. A symmetric task's pairs are scored in both orders as the run
was (`--one-order`: as given). `--glue-submission` scores the task's test
split(s) and writes the file(s) the GLUE server takes into the workdir
(`MRPC.tsv`, `MNLI-m.tsv` and `MNLI-mm.tsv`, `STS-B.tsv`, ...:
`index<TAB>prediction`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm import tqdm

from flax_mrpc import cli  # first: it quiets transformers before that is imported
from flax_mrpc.config import TaskConfig
from flax_mrpc.data import sources, tasks, tsv
from flax_mrpc.data.examples import UNLABELLED, DataError, Example, in_chunks
from flax_mrpc.inference import TrainedModel, load_checkpoint, load_trained

HEADER = ["sentence1", "sentence2"]
BATCH_PAIRS = 4096  # pairs read, scored and written at a time


def _pair_rows(path: Path, problems: list[str]) -> Iterator[list[str]]:
  for number, fields in tsv.rows(path, 2, (0, 1), problems):
    if not (number == 1 and fields == HEADER):
      yield fields


def check_pairs_file(path: Path) -> int:
  """Reads all of `path` once and returns its number of pairs; raises one
  DataError listing every bad line."""
  if not path.is_file():
    raise DataError(f"{path}: file not found. Pass --input a TSV of "
                         "sentence1<TAB>sentence2 lines.")
  problems: list[str] = []
  count = sum(1 for _ in _pair_rows(path, problems))
  if problems:
    raise DataError(*tsv.capped(problems))
  if not count:
    raise DataError(f"{path}: no pairs. Write one sentence1<TAB>sentence2 pair per line.")
  return count


def read_pairs(path: Path) -> Iterator[Example]:
  """The examples (label UNLABELLED) of a file `check_pairs_file` passed, streamed."""
  for idx, (sentence1, sentence2) in enumerate(_pair_rows(path, [])):
    yield Example(sentence1, sentence2, UNLABELLED, idx)


def check_pair_argument(sentence1: str, sentence2: str) -> None:
  """Raises one DataError listing what is wrong with the two `--pair` sentences."""
  problems = [f"--pair sentence {i}: {p}"
              for i, text in enumerate((sentence1, sentence2), start=1)
              if (p := tsv.sentence_problem(text))]
  if problems:
    raise DataError(*problems)


def output_fields(task: TaskConfig, predicted, all_probabilities: bool) -> list[str]:
  """What a line says of one pair before its sentences: the label's name and
  probability (or every label's probability), or the regression score."""
  if task.outputs == "regression":
    return [f"{predicted:.6f}"]
  probabilities = [1 - predicted, predicted] if task.outputs == "binary" else list(predicted)
  best = int(np.argmax(probabilities))
  shown = probabilities if all_probabilities else [probabilities[best]]
  return [task.labels[best], *(f"{q:.6f}" for q in shown)]


def submission_value(task: TaskConfig, predicted) -> str:
  """A GLUE submission's prediction: the label as GLUE's files write it, or the score."""
  if task.outputs == "regression":
    return f"{predicted:.6f}"
  return task.labels[int(predicted >= 0.5) if task.outputs == "binary" else
                     int(np.argmax(predicted))]


def write_glue_submission(trained: TrainedModel, data_source: str, data_dir: str | None,
                          folder: Path, one_order: bool) -> list[Path]:
  """Scores the task's test split(s) and writes GLUE's submission file(s) to `folder`."""
  task = trained.config.task
  if task.task not in tasks.GLUE_TASKS:
    raise ValueError("--glue-submission is for the GLUE tasks; this run trained on your own "
                     "files: use --input.")
  splits = tasks.load(task, data_source, data_dir)
  written = []
  for split, name in tasks.glue_layout(task).submission.items():
    predictions = trained.probabilities(splits[split], symmetric=False if one_order else None)
    path = folder / name
    with open(path, "w") as out:
      out.write("index\tprediction\n")
      out.writelines(f"{e.idx}\t{submission_value(task, p)}\n"
                     for e, p in zip(splits[split], predictions))
    written.append(path)
  return written


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m flax_mrpc.predict",
                                   description=__doc__.splitlines()[0])
  model = parser.add_mutually_exclusive_group(required=True)
  model.add_argument("--workdir", metavar="DIR", help="the --workdir of a training run")
  model.add_argument("--pretrained", metavar="PATH_OR_ID",
                     help="a Hugging Face checkpoint with its own classification head of the "
                          "--task's size (e.g. one fine-tuned on MRPC), scored without training")
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--pair", nargs=2, metavar=("SENTENCE1", "SENTENCE2"))
  source.add_argument("--input", type=Path, metavar="FILE",
                      help="UTF-8 TSV of sentence1<TAB>sentence2 lines")
  source.add_argument("--glue-submission", action="store_true",
                      help="write the GLUE server's file(s) for the task's test split(s) into "
                           "the workdir (or --output)")
  cli.add_workdir_task_argument(parser, "; with --pretrained: the task of its head "
                                        "(default: mrpc)")
  parser.add_argument("--all-probabilities", action="store_true",
                      help="print every label's probability, not only the predicted one's")
  parser.add_argument("--one-order", action="store_true",
                      help="score each pair in the given order only (a symmetric task's pairs "
                           "are otherwise scored in both orders and averaged)")
  parser.add_argument("--output", type=Path, metavar="FILE",
                      help="write here instead of standard output (a folder for "
                           "--glue-submission)")
  parser.add_argument("--data-dir", default=None, metavar="DIR", help="for --glue-submission")
  parser.add_argument("--data-source", default="local", choices=sources.SOURCES,
                      help="for --glue-submission (default: %(default)s)")
  parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  args = parser.parse_args(argv)
  try:
    if args.glue_submission and args.pretrained and not args.output:
      raise ValueError("--glue-submission with --pretrained needs --output FOLDER.")
    if args.input:
      total = check_pairs_file(args.input)
      examples = read_pairs(args.input)
    elif args.pair:
      check_pair_argument(*args.pair)
      examples, total = [Example(*args.pair, UNLABELLED, 0)], 1
    trained = (load_trained(args.workdir, args.task) if args.workdir
               else load_checkpoint(args.pretrained, task=tasks.glue_task(args.task or "mrpc")))
    if args.glue_submission:
      folder = args.output or Path(args.workdir)
      folder.mkdir(parents=True, exist_ok=True)
      for path in write_glue_submission(trained, args.data_source, args.data_dir, folder,
                                        args.one_order):
        print(f"wrote {path}", file=sys.stderr)
      return 0
    task = trained.config.task
    with contextlib.ExitStack() as stack:
      out = sys.stdout if args.output is None else stack.enter_context(open(args.output, "w"))
      bar = stack.enter_context(tqdm(total=total, unit="pairs", leave=False,
                                     disable=args.no_progress or total < BATCH_PAIRS))
      for batch in in_chunks(examples, BATCH_PAIRS):
        predictions = trained.probabilities(batch, symmetric=False if args.one_order else None)
        out.writelines(
            "\t".join([*output_fields(task, p, args.all_probabilities), e.sentence1,
                       e.sentence2]) + "\n"
            for e, p in zip(batch, predictions))
        bar.update(len(batch))
  except (ValueError, OSError) as e:
    return cli.report(e)
  if args.output is not None:
    print(f"wrote {total} predictions to {args.output}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
