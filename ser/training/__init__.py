"""Training a sub-system: the one SpeechBrain Brain and what it needs around it.

The Brain, datasets and batching, the command line's profiles and overrides, optimizer groups,
pre-emption, the run summary printed before training, the files each evaluated split gets and the
training curves. Modules here may import :mod:`ser.nn`, :mod:`ser.io` and the shared top-level
modules, never :mod:`ser.inference`.
"""
