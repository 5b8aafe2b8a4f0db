"""The memory a training run needs per device, known before it starts.

`step_need` compiles a train step on abstract shapes (nothing is allocated)
and reads XLA's `memory_analysis()`: per device, the arguments (parameters,
optimizer state, one batch), the outputs that do not reuse their buffers,
and the temporaries (the activations kept for the backward pass, the
gradients, fsdp's gathered weights). A run checks its largest batch: the
first batch's layout (padded or packed) at `max_length` tokens; `need`
checks `batch_size` padded pairs of `max_length` tokens, an upper bound for
packed rows too.

`checked_runner` compares that with one device's memory and refuses a run
that cannot fit, naming a change that would (`--parallel fsdp`, `remat`,
`accumulate_steps`, `--batch-size`, `max_length`), each checked the same
way. Under `--parallel auto` on several devices it picks fsdp when the
replicated state would not fit. The step it compiled is the one the run
then uses for batches of that shape.

`training_bytes`, a lower bound by formula, stands in where a backend gives
no analysis.

XLA:CPU undoes `remat` (it expands jax.checkpoint's optimization barriers and
CSE merges the recomputation back), so on the CPU remat saves nothing unless
XLA_FLAGS holds --xla_disable_hlo_passes=cse_barrier_expander; the GPU and
TPU compilers keep it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flax_mrpc.config import Config, ModelConfig
from flax_mrpc.modules import PairClassifier
from flax_mrpc.training import parallel, steps
from flax_mrpc.training.optimizer import make_optimizer

GIB = 2**30


def parameter_count(model: ModelConfig) -> int:
  """The parameters of `PairClassifier(model)`, from its abstract shapes (no memory)."""
  abstract = nnx.eval_shape(lambda: PairClassifier(model, rngs=nnx.Rngs(0)))
  return steps.param_count(nnx.state(abstract, nnx.Param))


def training_bytes(model: ModelConfig, rows: int) -> int:
  """A lower bound on the bytes one device needs to train `model` on [rows,
  max_length] batches: float32 parameters, gradients and AdamW's two
  moments, and per layer the attention probabilities and hidden states
  that the backward pass keeps."""
  itemsize = 2 if model.dtype == "bfloat16" else 4
  seq = model.max_length
  attention = rows * model.num_heads * seq * seq
  hidden = rows * seq * (model.d_ff + 4 * model.d_model)
  return 16 * parameter_count(model) + model.num_layers * (attention + hidden) * itemsize


def available_bytes() -> int | None:
  """Memory of one of this process's devices: an accelerator's limit, or for
  the CPU the host's available memory (Linux) shared by its devices; None
  when unknown."""
  stats = jax.local_devices()[0].memory_stats() or {}
  if "bytes_limit" in stats:
    return int(stats["bytes_limit"])
  try:
    with open("/proc/meminfo") as f:
      fields = dict(line.split(":", 1) for line in f)
    return int(fields["MemAvailable"].split()[0]) * 1024 // jax.local_device_count()
  except (OSError, KeyError, ValueError):
    return None


def device_peak_gib() -> float | None:
  """The most memory this process's first device has held, where the
  backend reports it (GPUs, TPUs; not the CPU)."""
  peak = (jax.local_devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
  return None if peak is None else peak / GIB


def abstract_batch(config: Config, rows: int) -> dict[str, jax.ShapeDtypeStruct]:
  """The shapes of a padded training batch of `rows` pairs of `max_length` tokens."""
  tokens = jax.ShapeDtypeStruct((rows, config.model.max_length), jnp.int32)
  batch = {"input_ids": tokens, "token_type_ids": tokens, "attention_mask": tokens}
  if config.model.match_embedding:
    batch["match_ids"] = tokens
  regression = config.task.outputs == "regression"
  batch["labels"] = jax.ShapeDtypeStruct((rows,), jnp.float32 if regression else jnp.int32)
  batch["weights"] = jax.ShapeDtypeStruct((rows,), jnp.float32)
  return batch


def abstract_train_state(model: ModelConfig, tx, module: type[nnx.Module] = PairClassifier
                         ) -> tuple[nnx.GraphDef, steps.TrainState]:
  """`module(model)`'s graphdef and the shapes of its TrainState under the
  optimizer `tx` (nothing allocated)."""
  graphdef, params = nnx.split(nnx.eval_shape(lambda: module(model, rngs=nnx.Rngs(0))))
  return graphdef, jax.eval_shape(lambda p: steps.TrainState.create(p, tx), params)


def largest_batch(first: dict[str, np.ndarray], max_length: int) -> dict[str, jax.ShapeDtypeStruct]:
  """The shapes of a run's largest batch: those of its `first` batch, with
  the token axis at `max_length` (a dynamically padded batch may be shorter)."""
  seq = first["input_ids"].shape[1]
  return {name: jax.ShapeDtypeStruct(
      (x.shape[0], max_length, *x.shape[2:]) if x.ndim > 1 and x.shape[1] == seq else x.shape,
      x.dtype) for name, x in first.items()}


def _analysed_bytes(compiled) -> int | None:
  """Per device: arguments, outputs that do not reuse an argument's buffer,
  temporaries and code, from XLA's analysis of a compiled step."""
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  return (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
          - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes
          + analysis.generated_code_size_in_bytes)


def _size(num_bytes: float) -> str:
  """'1.25 GiB', or '3.2 MiB' below a GiB."""
  return f"{num_bytes / GIB:,.2f} GiB" if num_bytes >= GIB else f"{num_bytes / 2**20:,.1f} MiB"


@dataclasses.dataclass(frozen=True)
class Need:
  """What a run needs per device, and where the figure comes from.

  Attributes:
    mode: the run's concrete parallel mode.
    bytes_per_device: XLA's figure, or the formula's lower bound.
    source: "xla" or "formula".
    available: one device's memory (`available_bytes`); None when unknown.
  """

  mode: str
  bytes_per_device: int
  source: str
  available: int | None

  @property
  def fits(self) -> bool:
    return self.available is None or self.bytes_per_device <= self.available

  def describe(self) -> str:
    """'1.25 GiB per device (XLA, --parallel fsdp)', for the log and errors."""
    return (f"{_size(self.bytes_per_device)} per device "
            f"({'XLA' if self.source == 'xla' else 'at least, by formula'}, --parallel {self.mode})")

  def record(self) -> dict[str, Any]:
    """The figures `results.json` keeps."""
    return {"parallel": self.mode, "needed_gib_per_device": self.bytes_per_device / GIB,
            "source": self.source,
            "available_gib": None if self.available is None else self.available / GIB}


def step_need(config: Config, runner: parallel.DataParallel, state,
              batch: dict[str, Any]) -> Need:
  """`Need` of `runner`'s train step on `state` and `batch` (shapes), which
  `runner.compile_train_step` compiles and keeps for the run; the formula's
  bound where the backend gives no analysis."""
  compiled = _analysed_bytes(runner.compile_train_step(state, batch))
  if compiled is not None:
    return Need(runner.mode, compiled, "xla", available_bytes())
  rows = jax.tree.leaves(batch)[0].shape[0] // runner.num_devices
  return Need(runner.mode, training_bytes(config.model, rows), "formula", available_bytes())


def need(config: Config, mode: str) -> Need:
  """`Need` of training `config` in `mode` (one of `parallel.MODES`) on its
  largest padded batch: `batch_size` pairs of `max_length` tokens."""
  tx = make_optimizer(config.train, 1)
  graphdef, state = abstract_train_state(config.model, tx)
  runner = parallel.DataParallel(mode, graphdef, tx,
                                 steps.PairLoss(config.train.pos_weight, config.task.outputs),
                                 accumulate_steps=config.train.accumulate_steps)
  rows = -(-config.train.batch_size // runner.rows_multiple) * runner.rows_multiple
  return step_need(config, runner, state, abstract_batch(config, rows))


def _changes(config: Config, mode: str) -> Iterator[tuple[str, Config, str]]:
  """(flag, changed config, mode) for each single change that lowers the
  memory a step needs, the cheapest in accuracy and speed first."""
  tc, mc = config.train, config.model
  if mode != "fsdp" and jax.device_count() > 1:
    yield "--parallel fsdp", config, "fsdp"
  if not mc.remat:
    yield "--set remat=true", config.replace(remat=True), mode
  for k in (2, 4, 8, 16, 32):
    if tc.accumulate_steps < k <= tc.batch_size:
      yield f"--set accumulate_steps={k}", config.replace(accumulate_steps=k), mode
  for fraction in (2, 4):
    smaller = tc.batch_size // fraction
    if smaller >= tc.accumulate_steps:
      yield f"--batch-size {smaller}", config.replace(batch_size=smaller), mode
  if mc.max_length >= 32:
    yield (f"--set max_length={mc.max_length // 2}",
           config.replace(max_length=mc.max_length // 2), mode)


def fitting_change(config: Config, mode: str) -> str | None:
  """The first change of `_changes` under which `config` fits one device;
  else fsdp (on several devices), remat and the most micro-batches of
  `_changes` together, when that fits; None when nothing does."""
  for flag, changed, changed_mode in _changes(config, mode):
    if need(changed, changed_mode).fits:
      return flag
  micro_batches = max([k for k in (2, 4, 8, 16, 32) if k <= config.train.batch_size],
                      default=config.train.accumulate_steps)
  together = config.replace(remat=True, accumulate_steps=micro_batches)
  several = jax.device_count() > 1
  if need(together, "fsdp" if several else mode).fits:
    return " ".join((["--parallel fsdp"] if several else [])
                    + ["--set remat=true", f"--set accumulate_steps={micro_batches}"])
  return None


def checked_runner(config: Config, mode: str, make_runner: Callable[[str], parallel.DataParallel],
                   state, first_batch: dict[str, np.ndarray]
                   ) -> tuple[parallel.DataParallel, Need]:
  """The run's `make_runner(mode)` with its train step compiled for `state`
  (shapes) and the run's largest batch (`largest_batch` of its
  `first_batch`), and what that step needs per device. `config` names the
  changes that would fit (`fitting_change`: measured on the pair
  classifier's step). Under `auto` on several devices, fsdp's runner when
  the replicated state would not fit. Raises ValueError, naming a change
  that fits, when the step needs more than one device has."""
  batch = largest_batch(first_batch, config.model.max_length)
  runner = make_runner(mode)
  found = step_need(config, runner, state, batch)
  if not found.fits and may_switch_to_fsdp(mode):
    runner = make_runner("fsdp")
    found = step_need(config, runner, state, batch)
  if not found.fits:
    raise too_large(config, found)
  return runner, found


def may_switch_to_fsdp(mode: str) -> bool:
  """Whether `checked_runner` may run `mode` as fsdp: under auto on several devices."""
  return mode == "auto" and jax.device_count() > 1


def parameters_fit(model: ModelConfig) -> bool:
  """Whether `model`'s float32 parameters, gradients and AdamW's two
  moments take at most one device's memory: small enough to build before
  the step is checked."""
  available = available_bytes()
  return available is not None and 16 * parameter_count(model) <= available


def too_large(config: Config, found: Need) -> ValueError:
  """The error of a run that needs more than a device has, naming a change that fits."""
  change = fitting_change(config, found.mode)
  platform = jax.local_devices()[0].platform
  advice = (f"With {change} it fits" if change else "Neither --parallel fsdp, remat=true, "
            "accumulate_steps nor a smaller --batch-size or max_length fits, alone or together")
  return ValueError(
      f"this run needs {found.describe()} to train {config.model.num_layers} layer(s) of width "
      f"{config.model.d_model} on batches of {config.train.batch_size} pairs of "
      f"{config.model.max_length} tokens; a {platform} device has "
      f"{_size(found.available)}. {advice}.")
