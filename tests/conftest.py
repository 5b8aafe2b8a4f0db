import os
from pathlib import Path

import pytest

_DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mrpc"


@pytest.fixture(scope="session")
def mrpc_dir() -> Path:
  """The real MRPC files: $FLAX_MRPC_DATA_DIR, else ../shared/data/mrpc."""
  if os.environ.get("FLAX_MRPC_DATA_DIR"):
    path = Path(os.environ["FLAX_MRPC_DATA_DIR"])
    assert path.is_dir(), f"FLAX_MRPC_DATA_DIR={path} is not a folder"
    return path
  if not _DEFAULT_DATA.is_dir():
    pytest.skip("real MRPC files not found: set FLAX_MRPC_DATA_DIR")
  return _DEFAULT_DATA


@pytest.fixture(scope="session")
def splits(mrpc_dir):
  from flax_mrpc import data

  return data.load_splits(mrpc_dir)
