"""A trained classifier restored from a workdir's best checkpoint."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Sequence

import jax
import numpy as np
from flax import nnx

from flax_mrpc.config import Config, TaskConfig, get_preset, with_task
from flax_mrpc.data import tokenization
from flax_mrpc.data.examples import Example
from flax_mrpc.hf import load
from flax_mrpc.modules import PairClassifier
from flax_mrpc.training import pretrained_encoder, steps
from flax_mrpc.training.checkpoint import Checkpointer, CheckpointError
from flax_mrpc.training.scoring import encode_views, pair_probabilities


@dataclasses.dataclass
class TrainedModel:
  config: Config
  graphdef: nnx.GraphDef
  params: nnx.State
  tokenizer: object
  best_epoch: int | None  # None: a checkpoint's own head, not trained here

  def __post_init__(self):
    self._eval = jax.jit(functools.partial(steps.eval_step, graphdef=self.graphdef,
                                           outputs=self.config.task.outputs))

  def probabilities(self, examples: Sequence[Example], batch_size: int = 64,
                    symmetric: bool | None = None) -> np.ndarray:
    """What the model predicts of the examples, in order: [n] probabilities
    of the positive class (binary tasks: paraphrase), [n, N] class
    probabilities, or [n] regression scores. `symmetric`: score both orders
    (None: as the run did, `Config.symmetric_scoring`)."""
    if symmetric is None:
      symmetric = self.config.symmetric_scoring
    views = encode_views(self.tokenizer, examples, self.config.model.max_length, symmetric,
                         self.config.model.match_embedding)
    return self.views_probabilities(views, batch_size)

  def views_probabilities(self, views: Sequence[tokenization.EncodedSplit],
                          batch_size: int = 64) -> np.ndarray:
    """`probabilities` of pairs already encoded for this model (with its
    tokenizer, max_length and match ids), averaged over `views`: one order,
    or both (`scoring.encode_views`)."""
    return pair_probabilities(self._eval, self.params, views, batch_size,
                              self.config.train.pad_multiple, self.config.train.pack)


# Reads of a workdir that a run is training in: each may meet a checkpoint
# the run removes meanwhile (it keeps the best and the last few).
READ_ATTEMPTS = 3


def _best_checkpoint(workdir: Path, task: str | None):
  """(the newest checkpoint's meta, the run's Config, the model's graphdef,
  the best epoch's parameters)."""
  checkpointer = Checkpointer(workdir / "checkpoints")
  try:
    meta = checkpointer.latest_meta()
    if meta is None or meta["best"] is None:
      raise CheckpointError(f"{workdir} has no checkpoint of a finished epoch yet.")
    config = Config.from_dict(meta["config"])
    if task is not None and task != config.task.task:
      raise CheckpointError(f"{workdir} trained on task {config.task.task!r}, not {task!r}: "
                            "leave out --task (a workdir knows its own) or pass its own.")
    graphdef, params = nnx.split(PairClassifier(config.model, rngs=nnx.Rngs(0)))
    return meta, config, graphdef, checkpointer.restore_params(params, config.train,
                                                                meta["best"]["step"])
  finally:
    checkpointer.close()


def load_trained(workdir: str | Path, task: str | None = None) -> TrainedModel:
  """The model of `workdir`'s best validation epoch, with its tokenizer. It
  only reads, so the workdir may be training in another process. A `task`
  name (a user's --task) must be the one the workdir trained on."""
  workdir = Path(workdir)
  if pretrained_encoder.is_pretraining_workdir(workdir):
    raise CheckpointError(f"{workdir} holds a pretrained masked LM, not a classifier. Fine-tune "
                          f"it first: python -m flax_mrpc.train --pretrained {workdir} "
                          "--workdir DIR.")
  if not (workdir / "checkpoints").is_dir():
    raise CheckpointError(f"{workdir} has no checkpoints/: pass the --workdir of a training run.")
  for attempt in range(READ_ATTEMPTS):
    try:
      meta, config, graphdef, params = _best_checkpoint(workdir, task)
      break
    except FileNotFoundError:  # a run training there removed a checkpoint as it was read
      if attempt == READ_ATTEMPTS - 1:
        raise
  tc = config.train
  source = str(workdir / "tokenizer") if tc.tokenizer == "train" else tc.tokenizer
  tokenizer = tokenization.load_tokenizer(source, tc.lowercase)
  return TrainedModel(config, graphdef, params, tokenizer, meta["best"]["epoch"])


def load_checkpoint(name_or_path: str, max_length: int | None = None,
                    task: TaskConfig = TaskConfig()) -> TrainedModel:
  """A Hugging Face checkpoint with its own classification head of `task`'s
  size (a 2-label one fine-tuned on MRPC, an MNLI model's 3 labels), ready
  to score pairs without training here, with the finetune preset's
  `max_length` (128) or as many as the model has."""
  if max_length is None:
    shape = load.model_config(load.resolve(name_or_path), 1)
    max_length = min(get_preset("finetune").model.max_length,
                     shape.num_positions - shape.position_offset)
  config = load.configure(with_task(get_preset("finetune"), task).replace(
      pretrained=name_or_path, max_length=max_length))
  model = PairClassifier(config.model, rngs=nnx.Rngs(0))
  checkpoint = Path(config.train.pretrained)
  if not load.load_into(model, config.model, checkpoint, task=task):
    raise load.PretrainedError(
        f"{checkpoint} has no sequence-classification head to score with. Fine-tune it first: "
        f"python -m flax_mrpc.train --pretrained {name_or_path} --workdir DIR.")
  graphdef, params = nnx.split(model)
  tokenizer = tokenization.load_tokenizer(config.train.tokenizer, config.train.lowercase)
  return TrainedModel(config, graphdef, params, tokenizer, None)
