"""Files: reading audio, writing atomically, and what a system folder holds.

Audio read as 16 kHz mono, atomic writes, derived files kept only while their inputs are unchanged,
``skipped.csv``, checkpoints that a kill cannot leave half-written, the layout of a trained system's
folder (``system.json``, seed subfolder, posteriors) and where a pretrained model's files are.
Modules here import only the shared top-level modules (:mod:`ser.errors`, :mod:`ser.emotions`) and
each other, never :mod:`ser.nn`, :mod:`ser.training` or :mod:`ser.inference`.
"""

#: The one sample rate of the library: every waveform the encoders, Whisper and the VAD see.
SAMPLE_RATE = 16000
