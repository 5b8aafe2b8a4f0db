"""A trained classifier restored from a workdir's best checkpoint."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Sequence

import jax
import numpy as np
from flax import nnx

from flax_mrpc import batching, packing, pretrained, pretrained_workdir, steps, tokenization
from flax_mrpc.checkpoint import Checkpointer, CheckpointError
from flax_mrpc.config import Config, get_preset
from flax_mrpc.data import Example
from flax_mrpc.modules import PairClassifier
from flax_mrpc.optim import make_optimizer


def predict_probabilities(
    eval_fn, params: nnx.State, split: tokenization.EncodedSplit, batch_size: int,
    pad_multiple: int | None = None, pack: bool = False,
) -> np.ndarray:
  """[n] paraphrase probabilities of an encoded split, in its order, with a
  jitted `steps.eval_step`. With `pad_multiple`, pairs are batched shortest
  first and each batch is cut to its longest pair (see `batching.batches`);
  with `pack`, they are packed into batches of `batch_size` rows (see
  `packing`)."""
  features = split.features()
  lengths = features["attention_mask"].sum(axis=1)
  if pack:
    rows = packing.pack_rows(lengths, np.arange(len(split)), features["input_ids"].shape[1])
    order = np.concatenate(rows)
    out = np.concatenate([np.asarray(eval_fn(params, batch))[batch["weights"] > 0] for batch in
                          packing.packed_batches(features, rows, batch_size)])
  else:
    order = np.argsort(lengths, kind="stable") if pad_multiple else np.arange(len(split))
    out = np.concatenate([np.asarray(eval_fn(params, batch)) for batch in
                          batching.batches(features, batch_size, order, pad_multiple)])
  probabilities = np.empty(len(split), np.float32)
  probabilities[order] = out[: len(split)]
  return probabilities


def pair_probabilities(
    eval_fn, params: nnx.State, views: Sequence[tokenization.EncodedSplit], batch_size: int,
    pad_multiple: int | None = None, pack: bool = False,
) -> np.ndarray:
  """[n] mean of `predict_probabilities` over encodings of the same n pairs:
  one view, or (sentence1, sentence2) and (sentence2, sentence1) for a
  symmetric score (`TrainConfig.symmetric_eval`)."""
  return np.mean([predict_probabilities(eval_fn, params, view, batch_size, pad_multiple, pack)
                  for view in views], axis=0)


def encode_views(tokenizer, examples: Sequence[Example], max_length: int,
                 symmetric: bool) -> list[tokenization.EncodedSplit]:
  """The encodings `pair_probabilities` averages: the pairs as given and, if
  `symmetric`, swapped."""
  return [tokenization.encode_pairs(tokenizer, examples, max_length, swap=swap)
          for swap in ((False, True) if symmetric else (False,))]


@dataclasses.dataclass
class TrainedModel:
  config: Config
  graphdef: nnx.GraphDef
  params: nnx.State
  tokenizer: object
  best_epoch: int | None  # None: a checkpoint's own head, not trained here

  def __post_init__(self):
    self._eval = jax.jit(functools.partial(steps.eval_step, graphdef=self.graphdef))

  def probabilities(self, examples: Sequence[Example], batch_size: int = 64) -> np.ndarray:
    """[n] paraphrase probabilities of the examples, in order."""
    views = encode_views(self.tokenizer, examples, self.config.model.max_length,
                         self.config.train.symmetric_eval)
    return pair_probabilities(self._eval, self.params, views, batch_size,
                              self.config.train.pad_multiple, self.config.train.pack)


def load_trained(workdir: str | Path) -> TrainedModel:
  """The model of `workdir`'s best validation epoch, with its tokenizer. It
  only reads, so the workdir may be training in another process."""
  workdir = Path(workdir)
  if pretrained_workdir.is_pretrain_workdir(workdir):
    raise CheckpointError(f"{workdir} holds a pretrained masked LM, not a classifier. Fine-tune "
                          f"it first: python -m flax_mrpc.train --pretrained {workdir} "
                          "--workdir DIR.")
  if not (workdir / "checkpoints").is_dir():
    raise CheckpointError(f"{workdir} has no checkpoints/: pass the --workdir of a training run.")
  checkpointer = Checkpointer(workdir / "checkpoints")
  try:
    meta = checkpointer.latest_meta()
    if meta is None or meta["best"] is None:
      raise CheckpointError(f"{workdir} has no checkpoint of a finished epoch yet.")
    config = Config.from_dict(meta["config"])
    graphdef, params = nnx.split(PairClassifier(config.model, rngs=nnx.Rngs(0)))
    template = steps.TrainState.create(params, make_optimizer(config.train, 1))
    params = checkpointer.restore(meta["best"]["step"], template).state.params
  finally:
    checkpointer.close()
  tc = config.train
  source = str(workdir / "tokenizer") if tc.tokenizer == "train" else tc.tokenizer
  tokenizer = tokenization.load_tokenizer(source, tc.lowercase)
  return TrainedModel(config, graphdef, params, tokenizer, meta["best"]["epoch"])


def load_checkpoint(name_or_path: str, max_length: int | None = None) -> TrainedModel:
  """A Hugging Face checkpoint with its own 2-label classification head (one
  fine-tuned on MRPC, say), ready to score pairs without training here, with
  the finetune preset's `max_length` (128) or as many as the model has."""
  if max_length is None:
    shape = pretrained.model_config(pretrained.resolve(name_or_path), 1)
    max_length = min(get_preset("finetune").model.max_length,
                     shape.num_positions - shape.position_offset)
  config = pretrained.configure(get_preset("finetune").replace(
      pretrained=name_or_path, max_length=max_length))
  model = PairClassifier(config.model, rngs=nnx.Rngs(0))
  checkpoint = Path(config.train.pretrained)
  if not pretrained.load_into(model, config.model, checkpoint):
    raise pretrained.PretrainedError(
        f"{checkpoint} has no sequence-classification head to score with. Fine-tune it first: "
        f"python -m flax_mrpc.train --pretrained {name_or_path} --workdir DIR.")
  graphdef, params = nnx.split(model)
  tokenizer = tokenization.load_tokenizer(config.train.tokenizer, config.train.lowercase)
  return TrainedModel(config, graphdef, params, tokenizer, None)
