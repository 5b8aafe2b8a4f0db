"""Weights entering a model from elsewhere (a Hugging Face checkpoint, a
pretraining workdir): arrays set into a module's parameters by path, after a
shape check that names every mismatch."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

Path = tuple[Any, ...]  # a parameter's path in `nnx.to_flat_state`, e.g. ("encoder", "layers", 0, ...)


def mismatches(module: nnx.Module, arrays: dict[Path, Any]) -> dict[Path, tuple | None]:
  """{path: the shape `module` has there, or None when it has no such
  parameter} for every array of `arrays` that `assign` would refuse."""
  flat = dict(nnx.to_flat_state(nnx.state(module, nnx.Param)))
  return {path: (flat[path].get_value().shape if path in flat else None)
          for path, array in arrays.items()
          if path not in flat or flat[path].get_value().shape != array.shape}


def assign(module: nnx.Module, arrays: dict[Path, Any]) -> None:
  """Sets `module`'s parameter at each path of `arrays` to that array, cast
  to the parameter's dtype, in place. Raises ValueError if any path is
  missing or mis-shaped (check with `mismatches` first to name them)."""
  flat = dict(nnx.to_flat_state(nnx.state(module, nnx.Param)))
  wrong = [path for path, array in arrays.items()
           if path not in flat or flat[path].get_value().shape != array.shape]
  if wrong:
    raise ValueError(f"no parameter of that shape at: {sorted(map(str, wrong))}")
  for path, array in arrays.items():
    flat[path].set_value(jnp.asarray(array, flat[path].get_value().dtype))
  nnx.update(module, nnx.from_flat_state(flat))
