"""The memory bound that refuses runs which cannot fit."""

import pytest
from flax import nnx

from flax_mrpc import memory, steps
from flax_mrpc.config import ModelConfig, get_preset
from flax_mrpc.modules import PairClassifier


@pytest.mark.parametrize("model", [
    get_preset("seed").model, get_preset("default").model, get_preset("finetune").model,
    ModelConfig(vocab_size=50, max_length=8, d_model=16, num_heads=2, d_ff=24, num_layers=2,
                norm="pre", pooler=True, match_embedding=True),
    ModelConfig(vocab_size=50, max_length=8, d_model=16, num_heads=2, d_ff=24,
                embedding_size=8, type_vocab_size=0),
    ModelConfig(vocab_size=50, max_length=8, d_model=16, num_heads=2, d_ff=24,
                absolute_positions=False, relative_attention=True, position_buckets=4,
                max_relative_positions=16, share_relative_key=False,
                norm_relative_embeddings=True),
], ids=["seed", "default", "finetune", "pre-norm, pooler, match", "projected, no segments",
        "relative attention"])
def test_parameter_count_is_the_models(model):
  _, params = nnx.split(PairClassifier(model, rngs=nnx.Rngs(0)))
  assert memory.parameter_count(model) == steps.param_count(params)


def test_attention_grows_with_the_square_of_the_length():
  model = get_preset("tiny").model
  longer = get_preset("tiny").replace(max_length=320, max_positions=320).model
  base = 16 * memory.parameter_count(model)
  growth = (memory.training_bytes(longer, 8) - 16 * memory.parameter_count(longer)) / (
      memory.training_bytes(model, 8) - base)
  assert 10 < growth < 100  # 10x the length: 10x the hidden states, 100x the attention


def test_a_run_larger_than_the_device_is_refused(monkeypatch):
  model = get_preset("tiny").model
  needed = memory.training_bytes(model, 64)
  monkeypatch.setattr(memory, "available_bytes", lambda: needed)
  memory.check_fits(model, 64)
  monkeypatch.setattr(memory, "available_bytes", lambda: needed - 1)
  with pytest.raises(ValueError, match=r"needs at least .* GiB .* Lower max_length"):
    memory.check_fits(model, 64)
