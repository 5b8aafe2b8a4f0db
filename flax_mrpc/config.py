"""Model and training configuration: dataclasses and named presets.

A `Config` is plain data (JSON-serialisable through `to_dict`/`from_dict`), so
it can be written next to results and checkpoints and compared on resume.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Literal


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shape and behaviour of the encoder and the pair classifier.

  Defaults are the seed's sizes: max_length 64, 8 heads of 64 = 512 wide,
  dropout 0.1, vocabulary 40000.
  """

  vocab_size: int = 40000
  max_length: int = 64  # tokens per pair
  max_positions: int | None = None  # learned positions; None = max_length (BERT: 512)
  type_vocab_size: int = 2  # 0: no segment embedding (DistilBERT)
  d_model: int = 512
  num_heads: int = 8
  d_ff: int = 2048
  num_layers: int = 1
  activation: Literal["relu", "gelu", "silu"] = "relu"
  norm: Literal["post", "pre"] = "post"
  dropout: float = 0.1
  attention_dropout: float = 0.1
  layer_norm_eps: float = 1e-12
  pooler: bool = False  # a dense layer + activation on the first token (BERT's pooler)
  pooler_activation: Literal["tanh", "gelu", "relu"] = "tanh"  # tanh: BERT, RoBERTa; gelu: ELECTRA
  pooler_input_dropout: bool = False  # dropout before the pooler too (RoBERTa, ELECTRA)
  classifier_dropout: float | None = None  # before the logit; None = dropout
  # Learned positions start at this index (RoBERTa: padding_idx + 1 = 2).
  position_offset: int = 0
  # Word, position and segment embeddings this wide, projected to d_model
  # (ELECTRA's small discriminators); None = d_model.
  embedding_size: int | None = None
  absolute_positions: bool = True  # learned absolute position embeddings (not DeBERTa-v3)
  # DeBERTa's disentangled attention (modules.RelativeAttention): scores
  # against relative positions, log-bucketed beyond position_buckets // 2
  # (0: not bucketed), up to max_relative_positions.
  relative_attention: bool = False
  position_buckets: int = 0
  max_relative_positions: int = 0
  relative_attention_types: str = "c2p|p2c"  # content-to-position, position-to-content
  share_relative_key: bool = True  # positions projected with the content q, k projections
  norm_relative_embeddings: bool = False  # LayerNorm on the relative embeddings
  # Adds a learned embedding of `match_ids` (1 where the token also occurs in
  # the other sentence): the exact-match feature of DrQA/ESIM-style pair models.
  match_embedding: bool = False
  # The seed's Pre_process: token_type_ids and attention_mask added as raw
  # numbers to every dimension, no segment embedding, no LayerNorm.
  seed_embedding: bool = False
  mask_attention: bool = True  # padded keys get zero weight; False attends to them (the seed)
  # How scaled dot-product attention is computed: "einsum" (scores, mask,
  # softmax, dropout as written), or `jax.nn.dot_product_attention` with
  # implementation "xla", "cudnn" (fused on NVIDIA GPUs) or "auto" (JAX
  # picks). The fused call has no dropout on the attention weights, so it
  # needs attention_dropout 0; not for relative attention or mask_attention=false.
  attention_implementation: Literal["einsum", "xla", "cudnn", "auto"] = "einsum"
  # Outputs of the classifier: 1 (a binary task's logit, or a regression
  # score) or the number of classes (`TaskConfig.num_outputs`).
  num_labels: int = 1
  dtype: Literal["float32", "bfloat16"] = "float32"  # compute dtype; params stay float32
  # Recompute each encoder layer in the backward pass instead of keeping its
  # activations (`nnx.remat`): less memory for about a third more compute.
  remat: bool = False
  # Rotary position embeddings (RoPE) on queries and keys, at each token's
  # position in its pair, with this base (None: none); sliding-window layers
  # use local_rotary_theta (None: rotary_theta). ModernBERT, GTE, EuroBERT.
  rotary_theta: float | None = None
  local_rotary_theta: float | None = None
  # Sliding-window attention (ModernBERT): layer i attends to its whole pair
  # when i % global_every == 0, else to the tokens at most local_window // 2
  # positions away (0: every layer global).
  local_window: int = 0
  global_every: int = 1
  num_kv_heads: int | None = None  # grouped-query attention: key/value heads; None = num_heads
  attention_bias: bool = True  # biases of the q, k, v and output projections
  # Gated feed-forward (GeGLU, SwiGLU): activation(intermediate(x)) * up(x), then output.
  gated_feed_forward: bool = False
  feed_forward_in_bias: bool = True  # biases of intermediate (and up)
  feed_forward_out_bias: bool = True  # bias of output
  norm_type: Literal["layer", "rms"] = "layer"  # LayerNorm, or RMSNorm (EuroBERT)
  norm_bias: bool = True  # LayerNorms with a bias (ModernBERT's have none)
  embedding_norm: bool = True  # a norm on the embeddings (EuroBERT has none)
  first_attention_norm: bool = True  # pre-LN: False leaves layer 0's attention input unnormed
  # The pair's representation: its first token's state ("first"), the mean of
  # its tokens' states ("mean"), or the mean of the pooler over each token
  # ("late", EuroBERT's: the mean of per-token logits).
  pooling: Literal["first", "mean", "late"] = "first"
  pooler_bias: bool = True
  pooler_norm: bool = False  # a norm after the pooler's activation (ModernBERT's head)

  @property
  def num_positions(self) -> int:
    return self.max_positions or self.max_length

  @property
  def embedding_width(self) -> int:
    return self.embedding_size or self.d_model

  def __post_init__(self):
    if self.max_length + self.position_offset > self.num_positions:
      raise ValueError(f"max_length ({self.max_length}) exceeds the model's "
                       f"{self.num_positions - self.position_offset} learned positions.")
    if self.d_model % self.num_heads:
      raise ValueError(
          f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})."
      )
    if self.num_labels < 1:
      raise ValueError(f"num_labels must be at least 1, got {self.num_labels}.")
    if self.activation not in ("relu", "gelu", "silu"):
      raise ValueError(f"activation must be 'relu', 'gelu' or 'silu', got {self.activation!r}.")
    if self.num_kv_heads is not None and (self.num_kv_heads < 1
                                          or self.num_heads % self.num_kv_heads):
      raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                       f"({self.num_kv_heads}).")
    if self.local_window < 0 or self.global_every < 1:
      raise ValueError("local_window must be at least 0 and global_every at least 1.")
    if self.norm_type not in ("layer", "rms"):
      raise ValueError(f"norm_type must be 'layer' or 'rms', got {self.norm_type!r}.")
    if self.pooling not in ("first", "mean", "late"):
      raise ValueError(f"pooling must be 'first', 'mean' or 'late', got {self.pooling!r}.")
    if self.pooling == "late" and not self.pooler:
      raise ValueError("pooling='late' averages the pooler over the tokens: set pooler=true.")
    if self.relative_attention and not (
        (self.position_buckets or self.max_relative_positions) > 0
        and set(self.relative_attention_types.split("|")) <= {"c2p", "p2c"}):
      raise ValueError("relative_attention needs position_buckets or max_relative_positions "
                       "above 0, and relative_attention_types of c2p, p2c or c2p|p2c.")
    if self.pooler_activation not in ("tanh", "gelu", "relu"):
      raise ValueError("pooler_activation must be 'tanh', 'gelu' or 'relu', got "
                       f"{self.pooler_activation!r}.")
    if self.norm not in ("post", "pre"):
      raise ValueError(f"norm must be 'post' or 'pre', got {self.norm!r}.")
    if self.dtype not in ("float32", "bfloat16"):
      raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}.")
    if self.attention_implementation not in ("einsum", "xla", "cudnn", "auto"):
      raise ValueError("attention_implementation must be 'einsum', 'xla', 'cudnn' or 'auto', "
                       f"got {self.attention_implementation!r}.")
    if self.attention_implementation != "einsum" and (
        self.attention_dropout or self.relative_attention or not self.mask_attention):
      raise ValueError(
          f"attention_implementation={self.attention_implementation} calls "
          "jax.nn.dot_product_attention, which has no dropout on the attention weights and "
          "no relative positions: set attention_dropout=0, relative_attention=false and "
          "mask_attention=true, or attention_implementation=einsum.")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation, data and tokenizer settings of one training run."""

  epochs: int = 10
  batch_size: int = 32
  learning_rate: float = 1e-4
  weight_decay: float = 0.01
  schedule: Literal["constant", "linear", "cosine"] = "linear"
  warmup_fraction: float = 0.1
  clip_norm: float | None = 1.0  # global-norm gradient clipping; None = off
  patience: int | None = None  # stop after this many epochs without a better validation score
  pos_weight: float | None = None  # BCE weight of the positive class; None = unweighted
  swap_augment: bool = False  # also train on (sentence2, sentence1)
  # Score each pair of a symmetric task (`TaskConfig.symmetric`) as the mean
  # of both orders (validation, test, predict); false: the given order only.
  symmetric_eval: bool = True
  train_fraction: float = 1.0  # train on a random subset of this share of the train split
  # Dynamic padding: cut each batch to its longest pair rounded up to this
  # multiple (one compiled step per length); None pads to model.max_length.
  pad_multiple: int | None = None
  group_by_length: bool = False  # batches of pairs of similar length (see batching)
  # Pack several pairs into each row of model.max_length tokens (see packing):
  # one compiled shape, almost no padding.
  pack: bool = False
  # "train": a WordPiece vocabulary of at most model.vocab_size learned on the
  # train split; otherwise a folder with vocab.txt/tokenizer.json or a hub name.
  tokenizer: str = "train"
  # A Hugging Face BERT checkpoint (folder or hub id) whose weights start the
  # encoder; its config replaces the model fields and its tokenizer is used.
  pretrained: str | None = None
  # Train a fresh classification head even where the checkpoint has one
  # (needed when its head has another number of labels than the task).
  fresh_head: bool = False
  lowercase: bool = True
  seed: int = 0
  # Split each batch (the pairs of one optimizer step) into this many
  # micro-batches whose gradients are summed in one compiled step: the
  # memory of a batch this many times smaller, the same update.
  accumulate_steps: int = 1

  def __post_init__(self):
    if self.epochs < 1 or self.batch_size < 1:
      raise ValueError("epochs and batch_size must be at least 1.")
    if not 1 <= self.accumulate_steps <= self.batch_size:
      raise ValueError(f"accumulate_steps must be between 1 and batch_size ({self.batch_size}), "
                       f"got {self.accumulate_steps}.")
    if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
      raise ValueError(f"learning_rate (--learning-rate) must be a positive finite number, got "
                       f"{self.learning_rate}.")
    if self.schedule not in ("constant", "linear", "cosine"):
      raise ValueError(
          f"schedule must be 'constant', 'linear' or 'cosine', got {self.schedule!r}."
      )
    if self.patience is not None and self.patience < 1:
      raise ValueError(f"patience must be at least 1 (or None), got {self.patience}.")
    if not 0.0 <= self.warmup_fraction < 1.0:
      raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}.")
    if not 0.0 < self.train_fraction <= 1.0:
      raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}.")
    if self.pad_multiple is not None and self.pad_multiple < 1:
      raise ValueError(f"pad_multiple must be at least 1 (or None), got {self.pad_multiple}.")


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
  """Masked-language-model pretraining of the encoder before fine-tuning
  (`flax_mrpc.pretrain`): BERT's masking of `mask_rate` of the tokens
  (80% [MASK], 10% a random token, 10% unchanged) on pairs of consecutive
  corpus lines, packed into rows of `model.max_length` tokens. The other
  optimizer settings (weight decay, schedule, warmup, clipping) are the
  TrainConfig's."""

  pretrain_epochs: int = 0  # passes over the corpus; 0 = no pretraining
  pretrain_batch_size: int = 32  # pairs of lines per step (on average, packed)
  pretrain_learning_rate: float = 5e-4
  mask_rate: float = 0.15
  # A UTF-8 text file, one sentence or document per line; None = the
  # sentences of MRPC's train split (never validation or test).
  corpus: str | None = None
  # Pretrain the match embedding too (with model.match_embedding): each
  # token's match id is that of the unmasked pair, so the model learns to
  # find a masked word in the other sentence.
  pretrain_match: bool = False

  def __post_init__(self):
    if self.pretrain_epochs < 0 or self.pretrain_batch_size < 1:
      raise ValueError("pretrain_epochs must be at least 0 and pretrain_batch_size at least 1.")
    if not (math.isfinite(self.pretrain_learning_rate) and self.pretrain_learning_rate > 0):
      raise ValueError("pretrain_learning_rate must be a positive finite number, got "
                       f"{self.pretrain_learning_rate}.")
    if not 0.0 < self.mask_rate < 1.0:
      raise ValueError(f"mask_rate must be in (0, 1), got {self.mask_rate}.")


METRICS = ("accuracy_f1", "accuracy", "correlation")


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """What a run predicts from a pair and how it is scored (`flax_mrpc.data.tasks`).

  `labels` are the class names in the head's order; two make a binary task
  (one logit, its sigmoid the probability of `labels[1]`), more a softmax
  over them, none a regression (one score, mean squared error). `metric` is
  GLUE's: "accuracy_f1" (MRPC, QQP: their mean picks the best epoch),
  "accuracy", or "correlation" (STS-B: the mean of Pearson and Spearman).
  `symmetric`: the relation holds both ways (paraphrase, duplicates,
  similarity), so a pair may be scored in both orders. The `*_file` fields
  and `columns` say where a "files" task's examples are.
  """

  task: str = "mrpc"  # a GLUE pair task, or "files": the user's own files
  labels: tuple[str, ...] = ("0", "1")
  metric: Literal["accuracy_f1", "accuracy", "correlation"] = "accuracy_f1"
  symmetric: bool = True
  train_file: str | None = None
  validation_file: str | None = None
  test_file: str | None = None
  columns: tuple[str, str, str] = ("sentence1", "sentence2", "label")

  @property
  def outputs(self) -> Literal["binary", "classes", "regression"]:
    """What the head emits: one logit, a logit per class, or a score."""
    return "regression" if not self.labels else "binary" if len(self.labels) == 2 else "classes"

  @property
  def num_outputs(self) -> int:
    return len(self.labels) if self.outputs == "classes" else 1

  def __post_init__(self):
    object.__setattr__(self, "labels", tuple(self.labels))
    object.__setattr__(self, "columns", tuple(self.columns))
    if len(self.labels) == 1 or len(set(self.labels)) != len(self.labels):
      raise ValueError(f"a task needs two or more distinct labels (or none, for regression), "
                       f"got {list(self.labels)}.")
    if self.metric not in METRICS:
      raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}.")
    if (self.metric == "correlation") != (not self.labels):
      raise ValueError("the correlation metric goes with regression (no labels), and only it.")
    if len(self.columns) != 3:
      raise ValueError(f"columns are three names (sentence1, sentence2, label), got "
                       f"{list(self.columns)}.")


@dataclasses.dataclass(frozen=True)
class Config:
  model: ModelConfig = ModelConfig()
  train: TrainConfig = TrainConfig()
  pretrain: PretrainConfig = PretrainConfig()
  task: TaskConfig = TaskConfig()

  @property
  def symmetric_scoring(self) -> bool:
    """Whether pairs are scored as the mean of both orders."""
    return self.train.symmetric_eval and self.task.symmetric

  def __post_init__(self):
    if self.model.num_labels != self.task.num_outputs:
      raise ValueError(f"task {self.task.task!r} needs {self.task.num_outputs} output(s) but the "
                       f"model has num_labels={self.model.num_labels}; build the config with "
                       "config.with_task.")
    if self.train.swap_augment and not self.task.symmetric:
      raise ValueError(f"swap_augment trains on swapped pairs, which task {self.task.task!r} "
                       "does not allow (its relation is not symmetric): leave it unset.")
    if self.train.pos_weight is not None and self.task.outputs != "binary":
      raise ValueError("pos_weight weighs the positive class of a binary task; task "
                       f"{self.task.task!r} is not one: leave it unset.")
    if not self.model.mask_attention and self.train.pad_multiple:
      raise ValueError("mask_attention=false attends to padding, so its output depends on the "
                       "padded length: leave pad_multiple unset, or set mask_attention=true.")
    if self.train.pack and (not self.model.mask_attention or self.model.seed_embedding):
      raise ValueError("pack=true needs attention confined to each pair: set "
                       "mask_attention=true and seed_embedding=false, or leave pack unset.")
    if self.train.pack and (self.train.pad_multiple or self.train.group_by_length):
      raise ValueError("pack=true fills rows of max_length tokens: leave pad_multiple and "
                       "group_by_length unset.")
    if self.pretrain.pretrain_epochs and self.train.pretrained:
      raise ValueError("pretrain_epochs pretrains the model from scratch; a --pretrained "
                       "checkpoint already is: set pretrain_epochs=0 or drop --pretrained.")
    if self.pretrain.pretrain_epochs and self.train.tokenizer != "train":
      raise ValueError("pretraining learns its vocabulary on its corpus: leave --tokenizer "
                       "unset (train) with pretrain_epochs.")
    if self.pretrain.pretrain_epochs and (self.model.seed_embedding
                                          or not self.model.mask_attention):
      raise ValueError("pretraining packs lines into rows, which needs attention confined to "
                       "each pair: set mask_attention=true and seed_embedding=false.")

  def to_dict(self) -> dict[str, Any]:
    """The config as JSON holds it (tuples as lists), so a saved config equals it."""
    return json.loads(json.dumps(dataclasses.asdict(self)))

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "Config":
    model = dict(d["model"])
    if "seed_quirks" in model:  # written before the two seed fixes were separate fields
      quirks = model.pop("seed_quirks")
      model.update(seed_embedding=quirks, mask_attention=not quirks)
    train = dict(d["train"])
    if "task" not in d:  # written before tasks, when one-order scoring was the default
      train.setdefault("symmetric_eval", False)
    return cls(model=ModelConfig(**model), train=TrainConfig(**train),
               pretrain=PretrainConfig(**d.get("pretrain", {})),
               task=TaskConfig(**d.get("task", {})))

  def replace(self, **changes: Any) -> "Config":
    """Returns a copy with fields changed by name, looked up in `train`,
    `model`, `pretrain` and `task` (whose names do not overlap).

    Example: `config.replace(epochs=3, d_model=128)`.
    """
    sections = {name: getattr(self, name) for name in ("model", "train", "pretrain", "task")}
    fields = {name: {f.name for f in dataclasses.fields(section)}
              for name, section in sections.items()}
    unknown = set(changes) - set().union(*fields.values())
    if unknown:
      raise ValueError(f"unknown config field(s): {sorted(unknown)}")
    return Config(**{name: dataclasses.replace(section, **{
        k: v for k, v in changes.items() if k in fields[name]})
        for name, section in sections.items()})


def with_task(config: Config, task: TaskConfig) -> Config:
  """`config` for `task`: its model's head as wide as the task needs."""
  model = dataclasses.replace(config.model, num_labels=task.num_outputs)
  return dataclasses.replace(config, model=model, task=task)


def pretraining_config(config: Config) -> Config:
  """The configuration of `config`'s pretraining run: its model without the
  match embedding (a fine-tuning feature) unless `pretrain_match`, its task (whose train split
  is the default corpus), its pretrain fields, and train
  fields made of them (packed, always all epochs) and of the optimizer
  settings they share. Fields that only fine-tuning reads stay at their
  defaults, so changing them keeps a cached pretraining valid."""
  tc, pc = config.train, config.pretrain
  train = TrainConfig(epochs=max(1, pc.pretrain_epochs), batch_size=pc.pretrain_batch_size,
                      learning_rate=pc.pretrain_learning_rate, weight_decay=tc.weight_decay,
                      schedule=tc.schedule, warmup_fraction=tc.warmup_fraction,
                      clip_norm=tc.clip_norm, pack=True, lowercase=tc.lowercase, seed=tc.seed)
  match = config.model.match_embedding and pc.pretrain_match
  pc = dataclasses.replace(pc, pretrain_match=match)
  return Config(model=dataclasses.replace(config.model, match_embedding=match), train=train,
                pretrain=pc, task=config.task)


def _seed() -> Config:
  """The seed's setup as far as it is described: its sizes, raw-id embedding,
  unmasked attention, BCE with pos_weight 0.5, 100 epochs, constant LR,
  pairs scored in the given order only."""
  return Config(
      model=ModelConfig(seed_embedding=True, mask_attention=False),
      train=TrainConfig(
          epochs=100,
          batch_size=32,
          learning_rate=1e-4,
          weight_decay=0.0,
          schedule="constant",
          warmup_fraction=0.0,
          pos_weight=0.5,
          clip_norm=None,
          symmetric_eval=False,
      ),
  )


def _default() -> Config:
  """The best from-scratch recipe found on the validation split (see README)."""
  return Config(
      model=ModelConfig(
          vocab_size=8000,
          max_length=64,
          d_model=128,
          num_heads=4,
          d_ff=512,
          num_layers=2,
          activation="gelu",
          dropout=0.3,
          attention_dropout=0.3,
          match_embedding=True,
      ),
      train=TrainConfig(
          epochs=10,
          patience=3,
          batch_size=32,
          learning_rate=5e-4,
          weight_decay=0.01,
          schedule="linear",
          warmup_fraction=0.1,
      ),
  )


def _finetune() -> Config:
  """Fine-tuning a pretrained BERT-family checkpoint (with --pretrained): lr
  1e-4, batch 32, 128 tokens, 6 epochs, 10% warmup, linear decay, the best of
  the finetune_recipe study on validation (experiments/RESULTS.md) for
  all-MiniLM-L6-v2; the CLI takes the learning rate of the checkpoint's
  family and size (`families.*.learning_rate`) unless one is given. Pairs are
  packed into rows of 128 tokens, as many rows per step as hold 32 pairs on
  average (MRPC pairs average 53 tokens): one compiled shape, 3% padding
  (experiments/benchmarks/finetune_throughput.py). The model fields come
  from the checkpoint."""
  return Config(
      model=ModelConfig(max_length=128, max_positions=512, pooler=True, activation="gelu"),
      train=TrainConfig(epochs=6, batch_size=32, learning_rate=1e-4, weight_decay=0.01,
                        schedule="linear", warmup_fraction=0.1, pack=True),
  )


def _tiny() -> Config:
  """A model and run small enough for smoke tests (seconds on a CPU)."""
  return Config(
      model=ModelConfig(
          vocab_size=1000,
          max_length=32,
          d_model=32,
          num_heads=2,
          d_ff=64,
          num_layers=1,
      ),
      train=TrainConfig(epochs=2, batch_size=64, learning_rate=1e-3),
  )


PRESETS = {"default": _default, "finetune": _finetune, "seed": _seed, "tiny": _tiny}
PRESET_SUMMARIES = {
    "default": "from scratch: the best recipe found on validation (about 2 min on 2 CPU cores)",
    "finetune": "fine-tune the --pretrained checkpoint: 6 epochs, 128 tokens, the family's lr",
    "seed": "the seed's PyTorch setup as described: 23.7M parameters, 100 epochs (use a GPU)",
    "tiny": "a tiny model for smoke tests (seconds)",
}


def get_preset(name: str) -> Config:
  """Returns the named preset: one of `PRESETS`."""
  try:
    return PRESETS[name]()
  except KeyError:
    raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}.") from None
