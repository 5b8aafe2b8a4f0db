"""The Flax modules with the seed's embedding and unmasked attention compute
the seed's PyTorch function."""

import sys
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from flax_mrpc.config import ModelConfig
from flax_mrpc.modules import PairClassifier

torch = pytest.importorskip("torch", reason="the seed port needs torch: pip install torch==2.13.0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "benchmarks"))
import seed_torch  # noqa: E402


def test_seed_port_gives_the_same_logits_for_the_same_weights():
  config = ModelConfig(vocab_size=100, max_length=24, d_model=32, num_heads=4, d_ff=64,
                       num_layers=2, seed_embedding=True, mask_attention=False)
  flax_model = PairClassifier(config, rngs=nnx.Rngs(3))
  torch_model = seed_torch.from_flax(config, flax_model).eval()
  rng = np.random.default_rng(0)
  lengths = np.array([24, 17, 9, 3])
  mask = (np.arange(24)[None, :] < lengths[:, None]).astype(np.int32)
  ids = rng.integers(5, 100, (4, 24)).astype(np.int32) * mask
  segments = ((np.arange(24)[None, :] >= lengths[:, None] // 2) * mask).astype(np.int32)
  ours = np.asarray(flax_model(ids, segments, mask))
  with torch.no_grad():
    theirs = torch_model(*(torch.tensor(a, dtype=torch.long) for a in (ids, segments, mask)))
  assert np.ptp(ours) > 1e-2  # distinct logits, so the comparison means something
  np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-5)


def test_seed_port_refuses_a_masked_model():
  config = ModelConfig(vocab_size=100, max_length=8, d_model=16, num_heads=2, d_ff=32)
  with pytest.raises(ValueError, match="seed_embedding=True and mask_attention=False"):
    seed_torch.from_flax(config, PairClassifier(config, rngs=nnx.Rngs(0)))
