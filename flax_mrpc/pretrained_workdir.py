"""A finished pretraining workdir (`flax_mrpc.pretrain`) as the start of
fine-tuning: `python -m flax_mrpc.train --pretrained WORKDIR`.

The workdir's `results.json` says `"task": "masked_lm"`; its latest
checkpoint holds the `MaskedLM` after the last epoch, its `tokenizer/` the
vocabulary learned on the corpus. The encoder's weights move by path into a
`PairClassifier` (both modules name it `encoder`); what pretraining has not
got (a pooler, the logit, and the match embedding unless `pretrain_match`)
keeps its fresh weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from flax import nnx

from flax_mrpc import steps
from flax_mrpc.checkpoint import Checkpointer, CheckpointError
from flax_mrpc.config import Config
from flax_mrpc.modules import MaskedLM
from flax_mrpc.optim import make_optimizer

TASK = "masked_lm"


def is_pretrain_workdir(path: str | Path) -> bool:
  """Whether `path` is a folder holding a finished pretraining run."""
  results = Path(path).expanduser() / "results.json"
  if not results.is_file():
    return False
  try:
    return json.loads(results.read_text()).get("task") == TASK
  except (json.JSONDecodeError, AttributeError):
    return False


def results(workdir: str | Path) -> dict:
  """The finished pretraining's results.json."""
  return json.loads((Path(workdir) / "results.json").read_text())


def saved_config(workdir: str | Path) -> Config:
  """The pretraining run's configuration (`config.pretraining_config`)."""
  return Config.from_dict(results(workdir)["config"])


def restore_masked_lm(workdir: str | Path) -> tuple[MaskedLM, Config]:
  """The workdir's final MaskedLM, with its configuration."""
  workdir = Path(workdir)
  config = saved_config(workdir)
  model = MaskedLM(config.model, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  template = steps.TrainState.create(params, make_optimizer(config.train, 1))
  checkpointer = Checkpointer(workdir / "checkpoints")
  try:
    restored = checkpointer.restore_latest(template)
  finally:
    checkpointer.close()
  if restored is None:
    raise CheckpointError(f"{workdir}/checkpoints holds no checkpoint; rerun the pretraining "
                          "(python -m flax_mrpc.pretrain --workdir ...).")
  return nnx.merge(graphdef, restored.state.params), config


def load_encoder(model: nnx.Module, workdir: str | Path) -> None:
  """Copies the pretrained encoder of `workdir` into `model` (a PairClassifier)
  in place. Raises CheckpointError if a pretrained weight has no place in
  `model` or another shape (another vocabulary size, width or depth)."""
  source = dict(nnx.to_flat_state(nnx.state(restore_masked_lm(workdir)[0].encoder, nnx.Param)))
  target = dict(nnx.to_flat_state(nnx.state(model.encoder, nnx.Param)))
  problems = [f"{'.'.join(map(str, path))}: {value.get_value().shape} pretrained, "
              f"{target[path].get_value().shape if path in target else 'no such weight'} here"
              for path, value in source.items()
              if path not in target or target[path].get_value().shape != value.get_value().shape]
  if problems:
    raise CheckpointError(f"the encoder pretrained in {workdir} does not fit this model:\n  "
                          + "\n  ".join(problems) + "\nFine-tune with the pretraining's model "
                          "fields (results.json there).")
  for path, value in source.items():
    target[path].set_value(value.get_value())
  nnx.update(model.encoder, nnx.from_flat_state(target))
