import os
import tempfile
from pathlib import Path

import pytest

# One persistent XLA compilation cache for the session, this process and the
# CLI subprocesses the tests start: the many runs of the tiny preset then
# compile each computation once (set before jax is imported).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="flax_mrpc_xla_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# The tests' steps are tiny: compiled without LLVM's optimisations they
# compile in about a third less time and still run in milliseconds. Numerics
# may move in the last bits against an optimised build; every check that
# compares two computations compiles both here.
UNOPTIMISED = "--xla_backend_optimization_level=0"
if UNOPTIMISED not in os.environ.get("XLA_FLAGS", "").split():
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {UNOPTIMISED}".strip()


@pytest.fixture(scope="session")
def mrpc_dir() -> Path:
  """The real MRPC files: $FLAX_MRPC_DATA_DIR, else the download cache that
  `train` uses (downloaded on first use); skips when offline without them."""
  from flax_mrpc.data import download
  from flax_mrpc.data.examples import DataError

  if os.environ.get("FLAX_MRPC_DATA_DIR"):
    path = Path(os.environ["FLAX_MRPC_DATA_DIR"])
    assert path.is_dir(), f"FLAX_MRPC_DATA_DIR={path} is not a folder"
    return path
  try:
    return download.find_data_dir(None)
  except DataError as e:
    pytest.skip(f"the MRPC files are neither downloadable nor in the cache ({e.problems[0]}); "
                "set FLAX_MRPC_DATA_DIR to a folder holding them")


@pytest.fixture(scope="session")
def splits(mrpc_dir):
  from flax_mrpc.data import mrpc

  return mrpc.load_splits(mrpc_dir)


@pytest.fixture
def random_bert(tmp_path) -> Path:
  """A folder with a small randomly initialised Hugging Face BERT checkpoint
  (2 layers, 32 wide) and a 120-word vocab.txt; needs torch."""
  torch = pytest.importorskip("torch", reason="pip install torch==2.13.0")
  import transformers

  hf_config = transformers.BertConfig(
      vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
      intermediate_size=64, max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-7)
  torch.manual_seed(0)
  transformers.BertModel(hf_config).save_pretrained(str(tmp_path))
  words = ["the", "cat", "sat", "on", "mat", "a", "was", "shares", "rose", "stock", "yes", "no"]
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
  (tmp_path / "vocab.txt").write_text("\n".join(vocab + [f"w{i}" for i in range(120 - len(vocab))]))
  return tmp_path
