"""Files -> examples -> token arrays -> batches.

`examples` (the `Example` every reader yields, `DataError`), `tsv` (line
checks), `mrpc` and `download` (MRPC's files), `sources` (MRPC from them,
TFDS or Hugging Face datasets), `corpus` (pretraining text),
`tokenization`, `batching`, `packing`, `masking`, and `epochs` (the batches
of every epoch).
"""
