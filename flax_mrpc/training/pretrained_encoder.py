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

import dataclasses
import json
from pathlib import Path

from flax import nnx

from flax_mrpc import weights
from flax_mrpc.config import Config
from flax_mrpc.modules import MaskedLM
from flax_mrpc.training.checkpoint import Checkpointer, CheckpointError

TASK = "masked_lm"


def is_pretraining_workdir(path: str | Path) -> bool:
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


def configure(config: Config, **model_overrides) -> Config:
  """`config` set up to fine-tune the encoder of the pretraining workdir
  `config.train.pretrained`: all model fields are the pretraining's but the
  match embedding, a fine-tuning feature that pretraining has only with
  `pretrain_match`, and the head's width (those stay `config`'s), then `model_overrides`
  (e.g. dropout); the tokenizer is the workdir's."""
  workdir = Path(config.train.pretrained).expanduser()
  saved = saved_config(workdir)
  model = dataclasses.replace(saved.model, **(
      {"match_embedding": config.model.match_embedding, "num_labels": config.model.num_labels}
      | model_overrides))
  train = dataclasses.replace(config.train, pretrained=str(workdir),
                              tokenizer=str(workdir / "tokenizer"),
                              lowercase=saved.train.lowercase)
  return dataclasses.replace(config, model=model, train=train)


def restore_masked_lm(workdir: str | Path) -> tuple[MaskedLM, Config]:
  """The workdir's final MaskedLM, with its configuration."""
  workdir = Path(workdir)
  config = saved_config(workdir)
  graphdef, params = nnx.split(MaskedLM(config.model, rngs=nnx.Rngs(0)))
  checkpointer = Checkpointer(workdir / "checkpoints")
  try:
    params = checkpointer.restore_params(params, config.train)
  finally:
    checkpointer.close()
  return nnx.merge(graphdef, params), config


def load_encoder(model: nnx.Module, workdir: str | Path) -> None:
  """Copies the pretrained encoder of `workdir` into `model` (a PairClassifier)
  in place. Raises CheckpointError if a pretrained weight has no place in
  `model` or another shape (another vocabulary size, width or depth)."""
  source = {path: value.get_value() for path, value in nnx.to_flat_state(
      nnx.state(restore_masked_lm(workdir)[0].encoder, nnx.Param))}
  wrong = weights.mismatches(model.encoder, source)
  if wrong:
    raise CheckpointError(
        f"the encoder pretrained in {workdir} does not fit this model:\n  " + "\n  ".join(
            f"{'.'.join(map(str, path))}: {source[path].shape} pretrained, "
            f"{expected if expected is not None else 'no such weight'} here"
            for path, expected in wrong.items())
        + "\nFine-tune with the pretraining's model fields (results.json there).")
  weights.assign(model.encoder, source)
