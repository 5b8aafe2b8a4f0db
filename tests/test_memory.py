"""The formula's lower bound, which stands in where XLA gives no analysis."""

import chex
from flax import nnx

from flax_mrpc import train
from flax_mrpc.config import get_preset
from flax_mrpc.modules import PairClassifier
from flax_mrpc.training import memory, steps


def test_the_bound_counts_the_model_s_parameters_four_times_in_float32():
  model = get_preset("default").model
  _, params = nnx.split(PairClassifier(model, rngs=nnx.Rngs(0)))
  assert memory.training_bytes(model, 0) == 16 * steps.param_count(params)


def test_attention_grows_with_the_square_of_the_length():
  model = get_preset("tiny").model
  longer = get_preset("tiny").replace(max_length=320, max_positions=320).model
  growth = (memory.training_bytes(longer, 8) - memory.training_bytes(longer, 0)) / (
      memory.training_bytes(model, 8) - memory.training_bytes(model, 0))
  assert 10 < growth < 100  # 10x the length: 10x the hidden states, 100x the attention


def test_parameters_built_beside_the_compile_are_those_built_after_it(tmp_path, monkeypatch):
  config = get_preset("tiny")
  beside = train.params_beside_compiling(config, tmp_path, "none").result()
  chex.assert_trees_all_equal(beside, train.initial_params(config, tmp_path, "none"))
  monkeypatch.setattr(memory, "available_bytes",
                      lambda: 16 * memory.parameter_count(config.model) - 1)
  assert train.params_beside_compiling(config, tmp_path, "none").result() is None
