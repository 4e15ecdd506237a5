"""Using trained systems: the recognizer, packages, and the commands that serve them.

:class:`EmotionRecognizer` (loading ``train.py`` folders or an exported package), the timeline of a
long recording, the package layout, its export and model card, and the two user commands
``python -m ser.predict`` and ``python -m ser.app`` (the web page). Modules here may import
:mod:`ser.nn`, :mod:`ser.io` and the shared top-level modules, never :mod:`ser.training`.

``from ser.inference import EmotionRecognizer`` works as before; the recognizer module loads on
first use, so importing a light module of this package (its package layout, say) stays fast.
"""

_RECOGNIZER_NAMES = ("EmotionRecognizer", "Result", "TimelineRow", "LoadedSystem", "SystemFolderError",
                     "FLAGS", "load_system", "load_packaged", "system_names", "timeline_starts",
                     "window_starts", "audio_flag")


def __getattr__(name):
    if name in _RECOGNIZER_NAMES:
        from ser.inference import recognizer
        return getattr(recognizer, name)
    raise AttributeError(f"module 'ser.inference' has no attribute {name!r}")
