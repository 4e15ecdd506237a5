"""msp-ser: speech emotion recognition on MSP-Podcast with SpeechBrain.

``ser`` is the library; it never imports ``data_prep``, ``fusion`` or ``recipes``. Its layers, bottom
to top (each may import the ones before it, never one after it):

- the shared modules at the top: :mod:`ser.errors`, :mod:`ser.emotions`, :mod:`ser.targets`,
  :mod:`ser.metrics`, :mod:`ser.bootstrap` (confidence intervals, paired tests),
  :mod:`ser.calibration` (calibrated probabilities), :mod:`ser.asr` (Whisper),
  :mod:`ser.fusion_model`, :mod:`ser.cli` and :mod:`ser.console` (the edge of every command);
- :mod:`ser.io`: files (audio, atomic writes, derived files, checkpoints, a system folder's layout);
- :mod:`ser.nn`: what the system YAML's ``!new:`` tags build (encoders, pooling, model, losses);
- :mod:`ser.training` and :mod:`ser.inference`, side by side: neither imports the other.

Old module paths (``ser.encoders``, ``ser.model``, ``ser.predict`` ...) still import, through the
alias table in :mod:`ser.module_aliases`, so YAML files and packages written before the library
had sub-packages load unchanged, and ``python -m ser.predict`` stays the short form of
``python -m ser.inference.predict``.
"""

from ser.module_aliases import install as _install_module_aliases

__version__ = "0.1.0"

_install_module_aliases()
