"""Turning batches into trained parameters, and reading them back.

`steps` (the pure train and eval steps), `parallel` (one device, a mesh or
pmap), `optimizer`, `loop` (epochs, evaluation, resume, preemption),
`checkpoint`, `workdir` (lock, creation, finished runs), `metrics`,
`scoring` (probabilities of encoded pairs), `memory`, `tensorboard`,
`pretraining` (masked-LM pretraining) and `pretrained_encoder` (its
workdir as the start of fine-tuning).
"""
