"""The encoded-split cache: token arrays written once, memory-mapped on reuse.

A split's encoding is a pure function of the split's content, the
tokenizer, `max_length`, the order (as given or swapped) and whether match
ids are computed. `entry_key` hashes those into a key, and an entry is a
folder `FOLDER/KEY/` with one raw array file per field (`input_ids.bin`,
...) and `meta.json`: each array's dtype and shape, the truncation count
and what the key was made of.

Why raw arrays and a JSON index rather than `.npy` or Arrow: an entry is
written in one streaming pass over a split whose length is only known at
the end (a file is read as it is checked), so each array is appended to
its file chunk by chunk, where `.npy` wants the shape in a header before
the data. `np.memmap` maps the files back with meta.json's shapes, so a
step reads only the rows it touches. Arrow's offsets and schemas add
nothing for fixed-width rows, and pyarrow is not a core dependency.

Writes are atomic: an entry is built in a temporary folder beside it and
renamed into place, so a kill mid-write leaves no entry, and of two
processes building the same entry the first rename wins and the other's
copy is dropped. An entry that fails its checks when read (meta.json
missing or unreadable, a file missing or of another size than its shape
says) is removed and rebuilt, with one warning line. Entries are never
evicted: remove the folder to reclaim the space.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import socket
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from flax_mrpc.data import tokenization
from flax_mrpc.data.examples import Example

FORMAT_VERSION = 1  # bump when what an entry holds or how it is encoded changes
ARRAYS = ("input_ids", "token_type_ids", "attention_mask", "match_ids", "labels", "idx",
          "lengths", "truncated")
_PARTIAL = ".partial-"
WORKDIR_FOLDER = "data_cache"  # a run's cache, unless --data-cache names a shared one
# The files of a tokenizer folder that decide which class AutoTokenizer loads it with
# (besides SentencePiece's *.model files).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "config.json", "vocab.txt", "vocab.json", "merges.txt")


def folder_for(workdir: str | os.PathLike, data_cache: str | os.PathLike | None) -> Path:
  """Where a run caches its encoded splits: `data_cache`, else `workdir/data_cache`."""
  return Path(data_cache) if data_cache else Path(workdir) / WORKDIR_FOLDER


def summary(hits: dict[str, bool], folder: Path, seconds: float) -> str:
  """One log line: which splits the cache gave and which were encoded into it."""
  kinds = {True: "reused {} from the cache", False: "encoded and cached {}"}
  parts = [text.format(", ".join(name for name, hit in hits.items() if hit is kind))
           for kind, text in kinds.items() if kind in hits.values()]
  return f"encoded splits: {'; '.join(parts)} ({folder}, {seconds:.1f} s)"


def file_digest(path: Path) -> str:
  """The sha256 of a file's bytes (read once per process while the file's
  size and modification time stay the same)."""
  status = Path(path).stat()
  return _digest(str(Path(path).resolve()), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
  """A hash of everything in `tokenizer` that decides the ids of a pair: a
  fast tokenizer's whole pipeline (its JSON, without the truncation and
  padding a call sets), else its vocabulary files and settings; with the
  class, the padding token and the padding and truncation sides."""
  digest = hashlib.sha256()
  for part in (type(tokenizer).__name__, tokenizer.pad_token_id, tokenizer.padding_side,
               tokenizer.truncation_side):
    digest.update(repr(part).encode())
  backend = getattr(tokenizer, "backend_tokenizer", None)
  if backend is not None:
    pipeline = json.loads(backend.to_str())
    pipeline.pop("truncation", None)
    pipeline.pop("padding", None)
    digest.update(json.dumps(pipeline, sort_keys=True).encode())
    return digest.hexdigest()
  with tempfile.TemporaryDirectory() as folder:
    for name in sorted(tokenizer.save_vocabulary(folder)):
      digest.update(Path(name).read_bytes())
  settings = {k: v for k, v in tokenizer.init_kwargs.items() if k != "name_or_path"}
  digest.update(repr(sorted(settings.items(), key=str)).encode())
  return digest.hexdigest()


def entry_key(split_fingerprint: str, tokenizer_print: str, max_length: int, swap: bool,
              with_match_ids: bool) -> str:
  """The entry of one encoding of one split."""
  parts = [FORMAT_VERSION, split_fingerprint, tokenizer_print, max_length, swap, with_match_ids]
  return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def remembered(folder: Path | None, key: str, compute: Callable[[], Any]) -> Any:
  """`compute()`, a JSON value, kept as `folder/KEY.json` so that a later
  call with the same key reads it instead (no folder: computed each time).
  Used for what a run learns from a whole file before encoding it (the
  label names of the user's train file)."""
  if folder is None:
    return compute()
  path = folder / f"{key}.json"
  try:
    return json.loads(path.read_text())["value"]
  except (OSError, ValueError, KeyError):
    pass
  value = compute()
  folder.mkdir(parents=True, exist_ok=True)
  partial = path.with_name(f".{path.name}{_PARTIAL}{uuid.uuid4().hex[:8]}")
  partial.write_text(json.dumps({"value": value}) + "\n")
  partial.replace(path)
  return value


def tokenizer_files_key(source: str) -> str | None:
  """A `remembered` key for the class AutoTokenizer picks for the folder
  `source`: its tokenizer files' hashes and the transformers version (None
  for a hub name, which is not read here)."""
  path = Path(source).expanduser()
  if not path.is_dir():
    return None
  digest = hashlib.sha256(importlib.metadata.version("transformers").encode())
  for file in sorted(path.iterdir()):
    if file.is_file() and (file.name in TOKENIZER_FILES or file.suffix == ".model"):
      digest.update(f"{file.name}:{file_digest(file)}".encode())
  return f"tokenizer-class-{digest.hexdigest()[:32]}"


def loaded_tokenizer(folder: Path | None, source: str, lowercase: bool):
  """`tokenization.load_tokenizer(source, lowercase)`. The class AutoTokenizer
  chose for a folder is `remembered` in `folder`, so a rerun, a resume or
  another run on the same files loads that class directly, without
  AutoTokenizer's import of torch (seconds of a cached first step)."""
  key = tokenizer_files_key(source)
  if key is None:
    return tokenization.load_tokenizer(source, lowercase)
  chosen = []

  def auto_class() -> str:
    chosen.append(tokenization.load_tokenizer(source, lowercase))
    return type(chosen[0]).__name__

  class_name = remembered(folder, key, auto_class)
  return chosen[0] if chosen else tokenization.load_tokenizer(source, lowercase, class_name)


def _warn(message: str) -> None:
  print(f"warning: {message}", file=sys.stderr, flush=True)


class EncodedCache:
  """Entries in `folder` (created on first write)."""

  def __init__(self, folder: str | os.PathLike):
    self.folder = Path(folder)

  def get(self, key: str) -> tokenization.EncodedSplit | None:
    """The entry `key`, memory-mapped, or None when there is none. A damaged
    entry is removed (one warning line) and None returned."""
    entry = self.folder / key
    if not entry.is_dir():
      return None
    try:
      meta = json.loads((entry / "meta.json").read_text())
      arrays = {name: self._mapped(entry, name, spec) for name, spec in meta["arrays"].items()}
      num_truncated = int(meta["num_truncated"])
    except (OSError, ValueError, KeyError, TypeError) as e:
      _warn(f"the cached encoding {entry} is damaged ({e}); rebuilding it.")
      shutil.rmtree(entry, ignore_errors=True)
      return None
    return tokenization.EncodedSplit(**{name: arrays.get(name) for name in ARRAYS},
                                     num_truncated=num_truncated)

  @staticmethod
  def _mapped(entry: Path, name: str, spec: dict) -> np.ndarray:
    path, dtype, shape = entry / f"{name}.bin", np.dtype(spec["dtype"]), tuple(spec["shape"])
    expected = int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
      raise ValueError(f"{path.name} has {size} bytes where its shape {shape} needs {expected}")
    if expected == 0:
      return np.zeros(shape, dtype)
    return np.memmap(path, dtype, mode="r", shape=shape)

  def build(self, keys: Sequence[str], swaps: Sequence[bool],
            chunks: Iterable[list[tokenization.EncodedSplit]],
            about: dict) -> list[tokenization.EncodedSplit]:
    """Writes the entries `keys` (the orders `swaps`) from `chunks` (each a
    list with one part per key, as `tokenization.encode_chunks` yields them)
    and returns them, memory-mapped. `about` is recorded in each meta.json.
    An exception from `chunks` (a bad data file) leaves no entry behind."""
    self.folder.mkdir(parents=True, exist_ok=True)
    self._remove_abandoned(keys)
    writer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    partial = [self.folder / f".{key}{_PARTIAL}{writer}" for key in keys]
    try:
      specs = self._write(partial, chunks)
      for folder, key, swap, (arrays, truncated) in zip(partial, keys, swaps, specs):
        meta = {"format": FORMAT_VERSION, "arrays": arrays, "num_truncated": truncated, **about,
                "swap": swap}
        (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        try:
          folder.rename(self.folder / key)
        except OSError:  # another process renamed its copy first: use that one
          shutil.rmtree(folder)
    finally:
      for folder in partial:
        shutil.rmtree(folder, ignore_errors=True)
    built = [self.get(key) for key in keys]
    if any(split is None for split in built):
      raise OSError(f"the encoded-split cache in {self.folder} could not be written or read "
                    "back; check the disk, or pass another --data-cache folder.")
    return built

  @staticmethod
  def _write(partial: list[Path], chunks: Iterable[list[tokenization.EncodedSplit]]
             ) -> list[tuple[dict, int]]:
    """Appends every chunk's arrays to the files in `partial`; returns, per
    folder, each array's dtype and shape and the truncation count."""
    for folder in partial:
      folder.mkdir()
    files = [{name: open(folder / f"{name}.bin", "wb") for name in ARRAYS} for folder in partial]
    specs: list[dict] = [{} for _ in partial]
    truncated = [0] * len(partial)
    try:
      for parts in chunks:
        for i, part in enumerate(parts):
          truncated[i] += part.num_truncated
          for name in ARRAYS:
            array = getattr(part, name)
            if array is None:
              continue
            spec = specs[i].setdefault(name, {"dtype": array.dtype.str,
                                              "shape": [0, *array.shape[1:]]})
            if array.dtype.str != spec["dtype"]:
              raise ValueError(f"{name}: a chunk of {array.dtype} after {spec['dtype']}")
            spec["shape"][0] += len(array)
            files[i][name].write(np.ascontiguousarray(array).tobytes())
    finally:
      for opened in files:
        for f in opened.values():
          f.close()
    for folder, spec in zip(partial, specs):
      for name in set(ARRAYS) - set(spec):
        (folder / f"{name}.bin").unlink()
    return list(zip(specs, truncated))

  def _remove_abandoned(self, keys: Sequence[str]) -> None:
    """Removes this host's partial entries of `keys` whose writer is gone
    (a run killed mid-write), one warning line each."""
    host = socket.gethostname()
    for key in keys:
      for folder in self.folder.glob(f".{key}{_PARTIAL}{host}-*"):
        pid = int(folder.name.rsplit("-", 2)[1])
        if not _alive(pid):
          _warn(f"{folder} is a partial encoding left by a stopped run; removing it.")
          shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def encoded_views(
    cache: EncodedCache,
    split_fingerprint: str,
    examples: Callable[[], Iterator[Example]],
    tokenizer,
    max_length: int,
    swaps: Sequence[bool],
    with_match_ids: bool,
    tokenizer_print: str | None = None,
) -> tuple[list[tokenization.EncodedSplit], bool]:
  """One split's encodings, one per order in `swaps`, and whether they all
  came from the cache. Missing entries are built from one read of
  `examples()`.

  Args:
    split_fingerprint: what the split's pairs and labels depend on (its
      file's digest, the columns, the label names...), from `data.tasks`.
    examples: a fresh iterator over the split's pairs, in order.
    tokenizer_print: `tokenizer_fingerprint(tokenizer)`, if already known.
  """
  tokenizer_print = tokenizer_print or tokenizer_fingerprint(tokenizer)
  keys = [entry_key(split_fingerprint, tokenizer_print, max_length, swap, with_match_ids)
          for swap in swaps]
  found = {key: cache.get(key) for key in keys}
  missing = [(key, swap) for key, swap in zip(keys, swaps) if found[key] is None]
  if missing:
    about = {"split": split_fingerprint, "tokenizer": tokenizer_print, "max_length": max_length,
             "with_match_ids": with_match_ids}
    chunks = tokenization.encode_chunks(tokenizer, examples(), max_length,
                                        [swap for _, swap in missing], with_match_ids)
    built = cache.build([key for key, _ in missing], [swap for _, swap in missing], chunks,
                        about)
    found.update({key: split for (key, _), split in zip(missing, built)})
  return [found[key] for key in keys], not missing
