"""A quiet console: library chatter goes to a log file, the command's own lines stay on screen.

Loading a SpeechBrain system prints INFO lines (seeds, checkpoints), Hugging Face weight-loading
progress bars and deprecation warnings; a command that loads five of them buries its own output.
:func:`chatter_to_log` sends all of that to one log file while it is active:

- every ``logging`` record at INFO or above, of any logger, is written to the log file;
- on the console (stderr) remain only the warnings of this project's own packages (a resampled
  file, a skipped turn: things the user should know) and errors of any origin;
- Python ``warnings`` (``FutureWarning`` and the like from torch or transformers) become log
  records, so they land in the file;
- Hugging Face's progress bars (``Loading weights``, downloads) are switched off: the bars of
  the command's own long stages (``tqdm`` in this project's code) still show.

- the warnings of files read at another sample rate or with several channels (one per file, two
  for a 44.1 kHz stereo file) go to the log only; when the block ends, one line on the console
  sums them up (``WARNING: 3 audio files were converted to 16 kHz mono: ...``).

Progress bars belong on a terminal: :func:`progress_wanted` says whether to draw one (piped or
redirected output gets the stage lines only, not a bar redrawn into a file).

What a command prints itself (its stage lines, results, ``<command>: error: ...`` lines) and
``KeyboardInterrupt`` are untouched. Everything is restored on exit, so stages can each have their
own log file (``recipes/demo.py``).
"""

import contextlib
import importlib.util
import logging
import sys
import warnings
from pathlib import Path

#: Top-level packages whose warnings the user sees on the console (the rest goes to the log).
OWN_PACKAGES = ("ser", "data_prep", "fusion", "recipes", "bench", "__main__")
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


class _ChatterFile(logging.FileHandler):
    """The log of library chatter: a disk that fills up or goes read-only loses the chatter silently.

    logging's default ``handleError`` prints a traceback per record; the command's own write fails
    on the same disk and says so in one line.
    """

    def handleError(self, record):
        pass

    def close(self):
        try:
            super().close()
        except OSError:
            pass


class _OwnRecordsAndAllErrors(logging.Filter):
    def __init__(self, own_level):
        super().__init__()
        self.own_level = own_level

    def filter(self, record):
        if record.levelno >= logging.ERROR:
            return True
        return record.levelno >= self.own_level and record.name.split(".")[0] in OWN_PACKAGES


#: The logger whose conversion warnings (:func:`ser.io.audio.as_mono_waveform`) are summed up.
AUDIO_LOGGER = "ser.io.audio"


class AudioConversions(logging.Filter):
    """Keeps the per-file "resampled" and "down-mixed" warnings off the console, counting them.

    Example
    -------
    >>> conversions = AudioConversions()
    >>> record = logging.LogRecord(AUDIO_LOGGER, logging.WARNING, "", 0, "%s: %d Hz, resampled to %d Hz",
    ...                            ("a.wav", 44100, 16000), None)
    >>> conversions.filter(record), conversions.summary()
    (False, '1 audio file was converted to 16 kHz mono: 1 resampled (44100 Hz: 1)')
    """

    def __init__(self):
        super().__init__()
        self.rates, self.files, self.downmixed = {}, set(), 0

    def filter(self, record):
        if record.name != AUDIO_LOGGER or record.levelno != logging.WARNING:
            return True
        message = str(record.msg)
        if "resampled to" in message:
            rate = int(record.args[1])
            self.rates[rate] = self.rates.get(rate, 0) + 1
        elif "down-mixed" in message:
            self.downmixed += 1
        else:
            return True
        self.files.add(str(record.args[0]))
        return False

    def summary(self):
        """One line on what was converted, or None when nothing was."""
        if not self.files:
            return None
        parts = []
        if self.rates:
            rates = ", ".join(f"{rate} Hz: {n}" for rate, n in sorted(self.rates.items()))
            parts.append(f"{sum(self.rates.values())} resampled ({rates})")
        if self.downmixed:
            parts.append(f"{self.downmixed} down-mixed to mono")
        n = len(self.files)
        return f"{n} audio file{'s were' if n > 1 else ' was'} converted to 16 kHz mono: {'; '.join(parts)}"


def progress_wanted(requested=True, stream=None):
    """Whether to draw a progress bar: asked for, and ``stream`` (stderr) is a terminal.

    Example
    -------
    >>> import io
    >>> progress_wanted(True, io.StringIO()), progress_wanted(False)
    (False, False)
    """
    stream = sys.stderr if stream is None else stream
    return bool(requested) and hasattr(stream, "isatty") and stream.isatty()


@contextlib.contextmanager
def _hugging_face_quiet():
    """Transformers' records propagate to the root logger (not its own stderr handler), no bars."""
    if importlib.util.find_spec("transformers") is None:
        yield
        return
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # also Hugging Face Hub's bars
    hf_logging.disable_default_handler()
    hf_logging.enable_propagation()
    try:
        yield
    finally:
        hf_logging.disable_propagation()
        hf_logging.enable_default_handler()
        if bars_were_on:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def chatter_to_log(log_file, mode="w", own_level=logging.WARNING):
    """Route library logging, warnings and Hugging Face progress bars to ``log_file``.

    Parameters
    ----------
    log_file : str or Path
        The file that receives every log record at INFO or above (its folder is created).
    mode : {"w", "a"}
        Start the file afresh, or append to it.
    own_level : int
        The least level of this project's own records shown on the console too (``logging.INFO``
        for a command whose stages are logged as they start).

    Yields
    ------
    Path
        The log file.

    Example
    -------
    >>> import tempfile, os
    >>> log = os.path.join(tempfile.mkdtemp(), "stage.log")
    >>> with chatter_to_log(log):
    ...     logging.getLogger("speechbrain.core").info("Beginning experiment!")
    ...     warnings.warn("deprecated", FutureWarning)
    >>> text = open(log).read()
    >>> "speechbrain.core INFO: Beginning experiment!" in text, "FutureWarning: deprecated" in text
    (True, True)
    """
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    to_file = _ChatterFile(log_file, mode=mode, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(LOG_FORMAT))
    to_console = logging.StreamHandler(sys.stderr)
    to_console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    to_console.addFilter(_OwnRecordsAndAllErrors(own_level))
    conversions = AudioConversions()
    to_console.addFilter(conversions)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers = [to_file, to_console]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings(), _hugging_face_quiet():
            # "default": each warning once per place, as Python shows them (some libraries
            # install "always" or "ignore" filters of their own).
            warnings.simplefilter("default")
            yield log_file
    finally:
        logging.captureWarnings(False)
        summary = conversions.summary()
        if summary is not None:
            print(f"WARNING: {summary}; each file is named in {log_file}", file=sys.stderr)
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        to_file.close()
