"""What the command-line tools share: a quiet start, one-line errors,
`--set NAME=VALUE`, and the run shell of `train` and `pretrain` (their
common flags, the flags of checkpoints and of several devices and hosts,
and `run_command`, their `main`).

Import this module before anything that imports transformers: it sets
`TRANSFORMERS_NO_ADVISORY_WARNINGS`, so transformers does not announce at
import that PyTorch is missing (these tools never use it). An explicit value
in the environment is kept. It also keeps absl's log lines (orbax writes
its progress there) off standard error: the commands print their own.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
logging.getLogger("absl").setLevel(logging.CRITICAL)

import jax  # noqa: E402

from flax_mrpc.config import (PRESETS, Config, ModelConfig, PretrainConfig,  # noqa: E402
                              TaskConfig, TrainConfig)
from flax_mrpc.data import cache, sources, tasks  # noqa: E402
from flax_mrpc.training import parallel  # noqa: E402
from flax_mrpc.training.loop import EXIT_PREEMPTED, Preempted  # noqa: E402

EXIT_USAGE = 2  # a bad flag or input file, as argparse exits


def report(error: Exception) -> int:
  """Prints `error: ...` on standard error (a line per problem of a
  `DataError`) and returns EXIT_USAGE."""
  for problem in getattr(error, "problems", None) or [str(error)]:
    print(f"error: {problem}", file=sys.stderr)
  return EXIT_USAGE


def _field_types() -> dict[str, Any]:
  """{field name: annotated type} of every config section."""
  hints = {name: hint for section in (ModelConfig, TrainConfig, PretrainConfig, TaskConfig)
           for name, hint in typing.get_type_hints(section).items()}
  return {name: hint for name, hint in hints.items()  # a task's files and labels: their flags
          if name not in ("task", "labels", "columns") and not name.endswith("_file")}


def _convert(item: str, name: str, raw: str, hint: Any) -> Any:
  """`raw` as a value of the annotated type `hint` (bool, int, float, str, a
  Literal of strings, or any of these `| None`)."""
  options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union,
                                                                   types.UnionType) else (hint,)
  if raw.lower() == "none":
    if type(None) in options:
      return None
    raise ValueError(f"--set {item!r}: {name} cannot be none.")
  kind = next(t for t in options if t is not type(None))
  if kind is bool:
    if raw.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"--set {item!r}: {name} takes true or false.")
    return raw.lower() in ("true", "1")
  if kind in (int, float):
    try:
      return kind(raw)
    except ValueError:
      raise ValueError(f"--set {item!r}: {name} takes a number ({kind.__name__}).") from None
  return raw


def parse_set(assignments: Sequence[str]) -> dict[str, Any]:
  """Parses `--set name=value` pairs, converting each value to its field's annotated type."""
  hints = _field_types()
  changes = {}
  for item in assignments:
    name, sep, raw = item.partition("=")
    if not sep or name not in hints:
      raise ValueError(f"--set {item!r}: expected NAME=VALUE with NAME one of {sorted(hints)}.")
    changes[name] = _convert(item, name, raw, hints[name])
  return changes


def add_config_arguments(parser: argparse.ArgumentParser,
                         helps: dict[str, str]) -> argparse._ArgumentGroup:
  """Declares the flags `train` and `pretrain` share in a "common options"
  group, which it returns for the command's own. `helps` holds each
  command's words for --workdir, --preset, --epochs and --batch-size (by
  their dest names)."""
  common = parser.add_argument_group("common options")
  common.add_argument("--workdir", required=True, metavar="DIR", help=helps["workdir"])
  common.add_argument("--preset", choices=sorted(PRESETS), metavar="NAME", help=helps["preset"])
  common.add_argument("--epochs", type=int, metavar="N", help=helps["epochs"])
  common.add_argument("--batch-size", type=int, metavar="N", help=helps["batch_size"])
  common.add_argument("--learning-rate", type=float, metavar="LR", help="peak learning rate")
  common.add_argument("--seed", type=int, metavar="N", help="random seed (init, dropout, shuffling)")
  common.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                      help="change any field of flax_mrpc/config.py, e.g. --set d_model=256 "
                           "(repeatable); for a model larger than memory allows: --set "
                           "remat=true (recompute each layer in the backward pass), --set "
                           "accumulate_steps=K (K micro-batches per optimizer step)")
  common.add_argument("--data-dir", default=None, metavar="DIR",
                      help="folder with the MRPC files, for offline use (default: "
                           "$FLAX_MRPC_DATA_DIR, else download into the user cache)")
  common.add_argument("--data-source", default="local", choices=sources.SOURCES,
                      help="reader of the MRPC files: this project's (local), "
                           "tensorflow-datasets (tfds) or Hugging Face datasets (hf) "
                           "(default: %(default)s)")
  add_task_arguments(parser)
  common.add_argument("--overwrite", action="store_true",
                      help="start afresh: remove the outputs and checkpoints in --workdir "
                           "(by default an unfinished run there is resumed)")
  return common


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
  """The flags that choose the task: a GLUE pair task, or the user's files."""
  group = parser.add_argument_group(
      "task", "MRPC by default; another GLUE pair task; or your own TSV, CSV or JSONL files "
      "with a header")
  group.add_argument("--task", choices=tasks.TASKS[:-1], metavar="NAME",
                     help=f"a GLUE pair task: {', '.join(tasks.TASKS[:-1])} (default: mrpc; "
                          "GLUE TSV files in --data-dir, or --data-source hf/tfds)")
  group.add_argument("--train-file", metavar="FILE", help="your train pairs (.tsv, .csv, .jsonl)")
  group.add_argument("--validation-file", metavar="FILE",
                     help="your validation pairs: they pick the best epoch")
  group.add_argument("--test-file", metavar="FILE",
                     help="your test pairs, scored once with the best epoch (labels optional)")
  group.add_argument("--columns", metavar="A,B,LABEL", default="sentence1,sentence2,label",
                     help="the header names of the two sentences and the label "
                          "(default: %(default)s)")
  group.add_argument("--regression", action="store_true",
                     help="the labels are numbers to predict (mean squared error), not classes")
  group.add_argument("--symmetric", action="store_true",
                     help="the relation holds both ways (duplicates, similarity): score each "
                          "pair in both orders")


def add_workdir_task_argument(parser: argparse.ArgumentParser, help_extra: str = "") -> None:
  """--task for commands that read a workdir: optional, checked against the
  task the workdir trained on."""
  parser.add_argument("--task", choices=tasks.TASKS[:-1], metavar="NAME",
                      help="the workdir's GLUE task, checked against the one it trained on "
                           f"(it knows its own){help_extra}")


def task_from_args(args: argparse.Namespace) -> TaskConfig:
  """The TaskConfig the flags of `add_task_arguments` choose."""
  files = (args.train_file, args.validation_file, args.test_file)
  if not any(files):
    if args.regression or args.symmetric or args.columns != "sentence1,sentence2,label":
      raise ValueError("--columns, --regression and --symmetric describe your own files: pass "
                       "them with --train-file and --validation-file.")
    return tasks.glue_task(args.task or "mrpc")
  if args.task:
    raise ValueError("--task names a GLUE task; your own files (--train-file) are a task of "
                     "their own: drop --task.")
  if not (args.train_file and args.validation_file):
    raise ValueError("your own data needs --train-file and --validation-file (--test-file is "
                     "optional).")
  columns = tuple(args.columns.split(","))
  if len(columns) != 3 or not all(columns):
    raise ValueError(f"--columns {args.columns!r}: expected three names, "
                     "SENTENCE1,SENTENCE2,LABEL.")
  # train keeps what it learns of the train file in its encoded-split cache
  folder = cache.folder_for(args.workdir, args.data_cache) if "data_cache" in args else None
  return tasks.files_task(*files, columns=columns, regression=args.regression,
                          symmetric=args.symmetric, cache_folder=folder)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
  """The flags of a resumable run's checkpoints and progress, and of several
  devices and hosts."""
  more = parser.add_argument_group("checkpoints and progress")
  more.add_argument("--checkpoint-every-steps", type=int, default=None, metavar="N",
                    help="also checkpoint every N steps (default: at each epoch end only)")
  more.add_argument("--keep-checkpoints", type=int, default=2, metavar="K",
                    help="keep the last K checkpoints besides the best (default: 2)")
  more.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  devices = parser.add_argument_group("several devices and hosts")
  devices.add_argument("--parallel", default="auto", choices=parallel.MODES,
                       help="how the devices share the work: jit over a device mesh with the "
                            "state replicated (sharding) or sharded over the devices (fsdp: "
                            "parameters, gradients and AdamW moments, for models larger than "
                            "one device), pmap, or one device (none); auto: sharding when there "
                            "are several devices, fsdp when the replicated state would not fit "
                            "(default: %(default)s)")
  devices.add_argument("--multi-host", action="store_true",
                       help="one of several processes (hosts of a TPU VM pod slice, GPU "
                            "hosts): run the same command on every host; JAX detects TPU pods "
                            "and SLURM/MPI clusters, elsewhere add --coordinator-address, "
                            "--num-processes and --process-id")
  devices.add_argument("--coordinator-address", metavar="HOST:PORT",
                       help="process 0's address, for --multi-host outside detected clusters")
  devices.add_argument("--num-processes", type=int, metavar="N", help="for --multi-host")
  devices.add_argument("--process-id", type=int, metavar="I", help="for --multi-host: 0 .. N-1")


def start_run(args: argparse.Namespace) -> None:
  """Checks the flags of `add_run_arguments` and, with --multi-host, joins
  this process to the others. Raises ValueError for a bad combination."""
  manual = (args.coordinator_address, args.num_processes, args.process_id)
  if any(x is not None for x in manual) and not args.multi_host:
    raise ValueError("--coordinator-address, --num-processes and --process-id go with "
                     "--multi-host.")
  if args.keep_checkpoints < 1 or (args.checkpoint_every_steps or 1) < 1:
    raise ValueError("--keep-checkpoints and --checkpoint-every-steps must be at least 1.")
  if args.multi_host:
    parallel.initialize_processes(*manual)
  keep_compiled_steps(Path(args.workdir) / XLA_CACHE)


XLA_CACHE = "xla_cache"  # a workdir's compiled steps, unless JAX_COMPILATION_CACHE_DIR is set


def keep_compiled_steps(folder: Path) -> None:
  """Turns on JAX's persistent compilation cache in `folder`, so a rerun or
  a resume loads what it compiled instead of compiling it again: on a
  2-core CPU, MiniLM's packed train step takes about 8 s to compile and
  the model's eager initialisation about 2 s of small compilations, which
  is why every compilation is kept, however short. A folder the user chose
  (JAX_COMPILATION_CACHE_DIR, or jax.config) is left as it is."""
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def run_options(args: argparse.Namespace) -> dict[str, Any]:
  """The keyword arguments that `train.train_and_evaluate` and
  `pretraining.pretrain` take from the shared flags."""
  options = {"data_dir": args.data_dir, "overwrite": args.overwrite,
             "progress": not args.no_progress,
             "checkpoint_every_steps": args.checkpoint_every_steps,
             "keep_checkpoints": args.keep_checkpoints, "data_source": args.data_source,
             "parallel_mode": args.parallel}
  if "data_cache" in args:  # train's own flag
    options["data_cache"] = args.data_cache
  return options


def run_command(args: argparse.Namespace, config_from_args: Callable[[argparse.Namespace], Config],
                run: Callable[..., Any]) -> int:
  """The `main` of `train` and `pretrain`: builds the config, checks the run
  flags, then `run(config, workdir, **run_options(args))`. Returns the exit
  status: 0, EXIT_PREEMPTED after a signal (a checkpoint was saved), or
  EXIT_USAGE with one `error:` line per problem.

  What was built before the command (modules, the caller's objects) is
  kept out of Python's garbage collection while it runs: reading and
  encoding a large split allocates millions of short-lived objects, and
  each full collection would otherwise walk all of it again."""
  gc.freeze()
  try:
    config = config_from_args(args)
    start_run(args)
    run(config, args.workdir, **run_options(args))
  except Preempted as e:
    print(str(e), file=sys.stderr)
    return EXIT_PREEMPTED
  except (ValueError, FileExistsError) as e:
    return report(e)
  finally:
    gc.unfreeze()
  return 0
