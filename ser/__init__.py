"""msp-ser: speech emotion recognition on MSP-Podcast with SpeechBrain.

``ser`` is the library (encoders, pooling, losses, the Brain); it never
imports from ``data_prep``, ``fusion`` or ``recipes``.
"""

__version__ = "0.1.0"
