"""What the command-line tools share: a quiet start and one-line errors.

Import this module before anything that imports transformers: it sets
`TRANSFORMERS_NO_ADVISORY_WARNINGS`, so transformers does not announce at
import that PyTorch is missing (these tools never use it). An explicit value
in the environment is kept.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

EXIT_USAGE = 2  # a bad flag or input file, as argparse exits


def report(error: Exception) -> int:
  """Prints `error: ...` on standard error (a line per problem of a
  `DataError`) and returns EXIT_USAGE."""
  for problem in getattr(error, "problems", None) or [str(error)]:
    print(f"error: {problem}", file=sys.stderr)
  return EXIT_USAGE
