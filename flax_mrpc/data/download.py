"""Downloads the MRPC files from the public addresses GLUE and TFDS use.

Each file is checked against its published sha256 sum before it enters the
cache (`$FLAX_MRPC_CACHE`, else `$XDG_CACHE_HOME/flax_mrpc/mrpc`, else
`~/.cache/flax_mrpc/mrpc`); a cached file is reused. Offline, the first
failed request raises `DataError` naming `--data-dir`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from flax_mrpc.data.examples import DataError
from flax_mrpc.data.mrpc import DEV_IDS_FILE, TEST_FILE, TRAIN_FILE, given_data_dir

# (address, sha256) as published in TFDS's and HF's GLUE checksums.
FILES = {
    TRAIN_FILE: (
        "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_train.txt",
        "60a9b09084528f0673eedee2b69cb941920f0b8cd0eeccefc464a98768457f89",
    ),
    TEST_FILE: (
        "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_test.txt",
        "a04e271090879aaba6423d65b94950c089298587d9c084bf9cd7439bd785f784",
    ),
    DEV_IDS_FILE: (
        "https://dl.fbaipublicfiles.com/glue/data/mrpc_dev_ids.tsv",
        "971d7767d81b997fd9060ade0ec23c4fc31cbb226a55d1bd4a1bac474eb81dc7",
    ),
}
TIMEOUT_S = 20


def cache_dir() -> Path:
  if os.environ.get("FLAX_MRPC_CACHE"):
    return Path(os.environ["FLAX_MRPC_CACHE"]).expanduser()
  base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
  return Path(base) / "flax_mrpc" / "mrpc"


def sha256(path: Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def _fetch(url: str, expected_sha256: str, target: Path) -> None:
  try:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
      payload = response.read()
  except (urllib.error.URLError, TimeoutError, OSError) as e:
    raise DataError(
        f"could not download {url} ({e}). Offline? Pass --data-dir (or set FLAX_MRPC_DATA_DIR) "
        f"to a folder holding {TRAIN_FILE}, {TEST_FILE} and {DEV_IDS_FILE}."
    ) from None
  digest = hashlib.sha256(payload).hexdigest()
  if digest != expected_sha256:
    raise DataError(f"{url}: sha256 {digest} differs from the published {expected_sha256}; "
                    "nothing was cached. Retry later or pass --data-dir.")
  with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
    tmp.write(payload)
  os.replace(tmp.name, target)


def ensure_downloaded(directory: Path | None = None) -> Path:
  """Makes sure the three verified files are in `directory` (default:
  `cache_dir()`), downloading what is missing; returns the folder."""
  directory = directory or cache_dir()
  directory.mkdir(parents=True, exist_ok=True)
  for name, (url, expected) in FILES.items():
    target = directory / name
    if target.is_file() and sha256(target) == expected:
      continue
    _fetch(url, expected, target)
  return directory


def find_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
  """The folder to read: `mrpc.given_data_dir(data_dir)`, else the download
  cache (downloading the files into it if needed)."""
  return given_data_dir(data_dir) or ensure_downloaded()
