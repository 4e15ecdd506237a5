"""The networks a system YAML builds with ``!new:`` and ``!name:`` tags.

Speech and text encoders (paper §5.1), pooling over time (§5.2), the sub-system network and its
heads (§5.3, Figures 1-3), the losses (§6.1-6.2), the tools against class imbalance, and the tiny
random-init models the demo and the tests build. Modules here may import :mod:`ser.io` and the shared
top-level modules, never :mod:`ser.training` or :mod:`ser.inference`.
"""
