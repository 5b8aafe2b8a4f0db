import numpy as np
import pytest

from flax_mrpc.config import TrainConfig
from flax_mrpc.training.optimizer import learning_rate_schedule


@pytest.mark.parametrize("kind, expected", [
    ("linear", {0: 0.0, 5: 5e-4, 10: 1e-3, 55: 5e-4, 100: 0.0}),
    ("cosine", {0: 0.0, 5: 5e-4, 10: 1e-3, 55: 5e-4, 100: 0.0}),
    ("constant", {0: 0.0, 5: 5e-4, 10: 1e-3, 55: 1e-3, 100: 1e-3}),
])
def test_schedule_values(kind, expected):
  config = TrainConfig(learning_rate=1e-3, schedule=kind, warmup_fraction=0.1)
  schedule = learning_rate_schedule(config, total_steps=100)
  for step, value in expected.items():
    np.testing.assert_allclose(float(schedule(step)), value, atol=1e-9, err_msg=f"step {step}")


def test_constant_without_warmup_is_flat():
  schedule = learning_rate_schedule(
      TrainConfig(learning_rate=1e-4, schedule="constant", warmup_fraction=0.0), 100)
  np.testing.assert_allclose([float(schedule(s)) for s in (0, 50, 99)], [1e-4] * 3, rtol=1e-6)
