"""The web page: upload, record or stream a clip and see its emotion (Gradio, the usual stack of model demos).

Usage::

    python -m ser.app --model my_model/                     # an exported package (python -m ser.export)
    python -m ser.app --systems results/demo/system_{a,d}/1993 [--fusion results/demo/fusion]

Serves http://127.0.0.1:7860 (``--host 0.0.0.0`` to open it to the network). The page says which
model is loaded, and whether it is a toy trained on the synthetic mini corpus. It has two tabs:

- **Clip**: upload a file, record one or pick an example, then Classify. The page plays the clip
  back and shows the predicted emotion, a bar chart of the 8 probabilities (the attributes too,
  when the model predicts them), the transcript for text systems and, for a clip longer than
  ``--long_clip`` seconds, a timeline with the class names on its strip: one row per speech
  segment that Silero VAD finds (:mod:`ser.inference.vad`; silence gets none), or fixed windows
  (``--window``, ``--hop``) as chosen on the page. Long work shows its progress.
- **Live microphone**: the microphone streams to the server, which classifies the last
  ``--live_window`` seconds every ``--live_hop`` seconds and draws a rolling timeline of the last
  ``--live_history`` seconds, with the time each update took.

Clips are limited by duration (``--max_seconds``), the limit the page states; a byte ceiling only
guards the disk (by default, what ``--max_seconds`` of 96 kHz stereo 32-bit audio takes). A file that
is not audio, an empty or corrupt WAV or a clip over the limit gets one line on the page; the
server keeps serving. Only the page's own assets, the uploads and the example clips are served (no
``allowed_paths``). Needs the ``app`` extra (``pip install -e '.[app]'``). See ``docs/web-page.md``.
"""

import importlib.resources
import io
import json
import logging
import math
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from ser.cli import ArgumentParser, exit_with
from ser.emotions import EMOTION_NAMES, EMOTIONS
from ser.errors import UserInputError
from ser.io.audio import SAMPLE_RATE, AudioError, as_mono_waveform, length_problem, load_waveform
from ser.io.system_folder import HPARAMS_FILE, SystemFolderError, run_folder

logger = logging.getLogger(__name__)

__all__ = ["Limits", "Analysis", "ModelInfo", "LiveTimeline", "analyse", "describe_model", "example_clips",
           "build_app", "main"]

#: The example clips the page offers: espeak-ng speech generated for this repository. (Found through
#: the package, not ``__file__``: ``python -m ser.app`` runs this code under an alias without one.)
EXAMPLES = Path(str(importlib.resources.files("ser.inference") / "examples"))
#: Bytes per second of the largest ordinary audio (96 kHz, 2 channels, 32-bit): the default byte
#: ceiling is ``max_seconds`` of it, so a file within the duration limit is never refused for its size.
CEILING_BYTES_PER_SECOND = 96_000 * 2 * 4
SEGMENTS = {"speech segments (VAD)": "vad", "fixed windows": "fixed"}
#: Timeline rows classified per progress step (and per forward pass group).
ROWS_PER_STEP = 8


@dataclass
class Limits:
    """What the page accepts, and how it draws timelines (seconds)."""

    max_seconds: float = 300.0
    long_clip: float = 12.0
    window: float = 3.0
    hop: float = 1.0
    #: Byte ceiling of an upload, MB; None: ``max_seconds`` of :data:`CEILING_BYTES_PER_SECOND`.
    max_mb: float | None = None
    live_window: float = 3.0
    live_hop: float = 1.0
    live_history: float = 30.0

    @property
    def upload_mb(self):
        """The byte ceiling of an upload, MB.

        Example
        -------
        >>> Limits().upload_mb, Limits(max_mb=5).upload_mb
        (230.4, 5)
        """
        return self.max_mb if self.max_mb is not None else self.max_seconds * CEILING_BYTES_PER_SECOND / 1e6


@dataclass
class Analysis:
    """What the page shows for one clip: a result or an error message."""

    label: str | None = None
    probabilities: dict = field(default_factory=dict)
    transcript: str | None = None
    attributes: dict = field(default_factory=dict)
    timeline: list = field(default_factory=list)
    #: How the timeline was cut ("12 speech segments (Silero VAD)"), empty without a timeline.
    timeline_note: str = ""
    duration: float = 0.0
    error: str | None = None

    @property
    def headline(self):
        if self.error:
            return f"**Error:** {self.error}"
        if self.label is None:  # a model of attributes only
            values = ", ".join(f"{name} {value:.2f}" for name, value in self.attributes.items())
            return f"**{values}**, {self.duration:.1f} s"
        confidence = self.probabilities[self.label]
        name = f"{EMOTION_NAMES[self.label]} ({self.label})"
        note = f"; timeline: {self.timeline_note}" if self.timeline_note else ""
        return f"**{name}**, probability {confidence:.2f}, {self.duration:.1f} s{note}"


@dataclass
class ModelInfo:
    """The line the page shows about the loaded model."""

    name: str
    systems: str
    toy: bool
    #: Where ``toy`` comes from (a manifest field, a card's text, the training data folder).
    toy_source: str = ""

    @property
    def line(self):
        text = f"Model: **{self.name}** ({self.systems})."
        if self.toy:
            text += (" **Demo toy:** its systems were trained on the synthetic mini corpus (espeak-ng "
                     "voices); its labels say nothing about real speech.")
        return text


def _toy_from_text(*paths):
    texts = [path.read_text(encoding="utf-8", errors="replace") for path in paths if path.is_file()]
    return any(re.search(r"\bsynthetic\b", text, re.IGNORECASE) for text in texts)


def describe_model(recognizer, model=None, systems=None):
    """Name the loaded model and say whether it is a toy trained on synthetic speech.

    A package says so in its manifest (``training_data`` of each system, written by
    ``python -m ser.export``); a package without that field is a toy when its manifest or model
    card mentions synthetic speech; ``train.py`` folders are toys when their ``data_folder`` is
    the mini corpus.

    Parameters
    ----------
    recognizer : ser.inference.EmotionRecognizer
    model : str or Path, optional
        The package folder (``--model``).
    systems : list of str or Path, optional
        The system folders (``--systems``).

    Returns
    -------
    ModelInfo

    Example
    -------
    >>> from types import SimpleNamespace
    >>> fake = SimpleNamespace(systems=[SimpleNamespace(name="system_a")], fusion=None)
    >>> describe_model(fake, systems=["/nowhere/system_a/1993"]).line
    'Model: **train.py folders** (system_a).'
    """
    names = ", ".join(s.name for s in recognizer.systems) + (" + fusion" if recognizer.fusion else "")
    if model is not None:
        from ser.inference.package import MANIFEST, resolve_package

        folder = resolve_package(model)
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        kinds = [entry.get("training_data") for entry in manifest.get("systems", [])]
        if any(kind is not None for kind in kinds):
            return ModelInfo(folder.name, names, "synthetic" in kinds, "manifest training_data")
        return ModelInfo(folder.name, names, _toy_from_text(folder / MANIFEST, folder / "README.md"),
                         "manifest or model card text")
    from ser.inference.model_card import SYNTHETIC, training_data_kind

    toy = False
    for folder in systems or ():
        hparams = Path(folder) / HPARAMS_FILE
        found = re.search(r"^data_folder:\s*(\S+)", hparams.read_text(encoding="utf-8"), re.MULTILINE) \
            if hparams.is_file() else None
        toy = toy or (found is not None and training_data_kind(found.group(1)) == SYNTHETIC)
    return ModelInfo("train.py folders", names, toy, "training data folder")


def example_clips(folder=EXAMPLES):
    """The example clips the page offers (sorted paths).

    Example
    -------
    >>> [p.name for p in example_clips()]
    ['angry_call.flac', 'happy_news.flac', 'sad_news.flac']
    """
    return sorted(Path(folder).glob("*.flac"))


def _waveform(upload, recording, limits):
    """16 kHz mono waveform of the upload (a path) or the recording (rate, samples)."""
    if upload:
        path = Path(upload)
        size = path.stat().st_size
        if size > limits.upload_mb * 1e6:
            raise AudioError(f"{path.name}: {size / 1e6:.1f} MB, over the {limits.upload_mb:g} MB "
                             "upload limit")
        try:
            info = soundfile.info(str(path))
        except (RuntimeError, soundfile.LibsndfileError, OSError) as error:
            raise AudioError(f"{path.name}: not an audio file this page can read (WAV, FLAC, OGG): "
                             f"{str(error).split(':')[-1].strip() or error}") from None
        # A header that declares no usable length (a streamed FLAC) says so, not "10^14 s".
        problem = length_problem(info.frames, info.samplerate)
        if problem:
            raise AudioError(f"{path.name}: {problem}")
        if info.duration > limits.max_seconds:
            raise AudioError(f"{path.name}: {info.duration:.0f} s, over the {limits.max_seconds:g} s limit")
        try:
            return load_waveform(path)
        except AudioError as error:
            raise AudioError(str(error).replace(str(path), path.name)) from None
    if recording is not None:
        rate, samples = recording
        if len(samples) > limits.max_seconds * rate:
            seconds = len(samples) / rate
            raise AudioError(f"recording: {seconds:.0f} s, over the {limits.max_seconds:g} s limit")
        return as_mono_waveform(samples, rate, name="recording")
    raise AudioError("no audio: upload a file, record a clip or pick an example first")


def _timeline_segments(wav, limits, segment):
    """``(start, end)`` seconds to classify, and how they were found."""
    from ser.inference.timeline import timeline_starts

    if segment == "vad":
        from ser.inference.vad import speech_segments

        found = speech_segments(wav)
        note = f"{len(found)} speech segments (Silero VAD)" if found else "no speech found (Silero VAD)"
        return found, note
    size, step = round(limits.window * SAMPLE_RATE), round(limits.hop * SAMPLE_RATE)
    starts = timeline_starts(len(wav), size, step)
    segments = [(start / SAMPLE_RATE, min(len(wav), start + size) / SAMPLE_RATE) for start in starts]
    return segments, f"{len(segments)} windows of {limits.window:g} s every {limits.hop:g} s"


def analyse(recognizer, upload=None, recording=None, limits=None, segment="vad", progress=None):
    """Classify an uploaded file or a recording for the page; errors become a message.

    Parameters
    ----------
    recognizer : ser.inference.EmotionRecognizer
    upload : str or Path, optional
        Path of the uploaded file.
    recording : (int, numpy.ndarray), optional
        Sample rate and samples from the microphone.
    limits : Limits, optional
    segment : {"vad", "fixed"}
        How a long clip's timeline is cut: speech segments (Silero VAD) or fixed windows.
    progress : callable, optional
        Called as ``progress(fraction, desc=...)`` while a long clip is classified (Gradio's
        ``gr.Progress``).

    Returns
    -------
    Analysis
    """
    limits = limits or Limits()
    report = progress or (lambda fraction, desc=None: None)
    try:
        wav = _waveform(upload, recording, limits)
        duration = len(wav) / SAMPLE_RATE
        long_clip = duration > limits.long_clip
        report(0.0, desc="classifying the clip")
        result = recognizer.classify_batch([wav], sample_rate=SAMPLE_RATE)[0]
        analysis = Analysis(result.label, result.probabilities, result.transcript,
                            dict(getattr(result, "attributes", None) or {}), duration=duration)
        if long_clip and recognizer.classes:
            report(0.3, desc="finding speech" if segment == "vad" else "timeline")
            segments, analysis.timeline_note = _timeline_segments(wav, limits, segment)
            for first in range(0, len(segments), ROWS_PER_STEP):
                report(0.35 + 0.65 * first / len(segments), desc=f"timeline {first}/{len(segments)}")
                step = segments[first : first + ROWS_PER_STEP]
                analysis.timeline += recognizer.classify_segments(wav, step, sample_rate=SAMPLE_RATE)
        report(1.0, desc="done")
        return analysis
    except (UserInputError, ValueError) as error:
        return Analysis(error=str(error))
    except Exception as error:  # noqa: BLE001 - the page must answer, whatever went wrong
        logger.exception("classification failed")
        return Analysis(error=f"the model failed on this clip ({type(error).__name__}: {error})")


def _figure(rows, title, xlim=None, time_label="time (s)"):
    from PIL import Image

    from ser.inference.timeline import plot_timeline

    buffer = io.BytesIO()
    plot_timeline(rows, buffer, title=title, xlim=xlim, time_label=time_label)
    buffer.seek(0)
    return Image.open(buffer)


class LiveTimeline:
    """The live microphone's state: the last seconds heard, the rows of the rolling timeline, timings.

    :meth:`add` takes each chunk the browser streams; once ``limits.live_hop`` seconds have
    arrived since the last update, it classifies the last ``limits.live_window`` seconds.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> fake = SimpleNamespace(classify_batch=lambda wavs, sample_rate: [SimpleNamespace(
    ...     label="N", probabilities={c: (0.9 if c == "N" else 0.0125) for c in EMOTIONS})])
    >>> live = LiveTimeline(Limits(live_window=2.0, live_hop=1.0))
    >>> [live.add(fake, 16000, np.zeros(8000, np.int16)) for _ in range(4)]
    [False, True, False, True]
    >>> [(row.start, row.end, row.label) for row in live.rows]
    [(0.0, 1.0, 'N'), (0.0, 2.0, 'N')]
    """

    def __init__(self, limits):
        self.limits = limits
        self.buffer = np.zeros(0, np.float32)
        self.heard = 0.0  # seconds received since the stream started
        self.pending = 0.0  # seconds received since the last update
        self.rows = []
        self.latencies = []  # seconds from a chunk's arrival to its update's result, per update
        self.model_seconds = []

    def add(self, recognizer, rate, samples):
        """Add one streamed chunk; classify when a hop is due. Returns whether it did."""
        from ser.inference.results import TimelineRow

        arrived = time.perf_counter()
        wav = as_mono_waveform(samples, rate, name="microphone chunk").numpy()
        keep = round(self.limits.live_window * SAMPLE_RATE)
        self.buffer = np.concatenate([self.buffer, wav])[-keep:]
        self.heard += len(wav) / SAMPLE_RATE
        self.pending += len(wav) / SAMPLE_RATE
        if self.pending + 1e-6 < self.limits.live_hop:
            return False
        self.pending = 0.0
        started = time.perf_counter()
        result = recognizer.classify_batch([self.buffer], sample_rate=SAMPLE_RATE)[0]
        self.model_seconds.append(time.perf_counter() - started)
        start = self.heard - len(self.buffer) / SAMPLE_RATE
        self.rows.append(TimelineRow(round(start, 3), round(self.heard, 3), result.label,
                                     result.probabilities))
        oldest = self.heard - self.limits.live_history
        self.rows = [row for row in self.rows if row.end > oldest]
        self.latencies.append(time.perf_counter() - arrived)
        return True

    def figure(self):
        """The rolling timeline: the last ``live_history`` seconds."""
        history = self.limits.live_history
        low = max(0.0, self.heard - history)
        return _figure(self.rows, f"Live: the last {history:g} s ({self.limits.live_window:g} s heard "
                                  f"every {self.limits.live_hop:g} s)", xlim=(low, low + history),
                       time_label="time since the microphone started (s)")

    def status(self, update_seconds):
        """The line under the live timeline: the latest label and how long updates take."""
        row = self.rows[-1]
        label = "no class"
        if row.label:
            label = (f"**{EMOTION_NAMES[row.label]} ({row.label})**, "
                     f"probability {row.probabilities[row.label]:.2f}")
        count = len(self.latencies)
        return (f"{label} at {self.heard:.1f} s. Update {count}: {update_seconds:.2f} s from the chunk's "
                f"arrival to this timeline (model {self.model_seconds[-1]:.2f} s); median "
                f"{statistics.median(self.latencies):.2f} s over {count} updates.")


def build_app(recognizer, limits=None, model_info=None, examples=None):
    """The Gradio Blocks page around ``recognizer``.

    Parameters
    ----------
    recognizer : ser.inference.EmotionRecognizer
    limits : Limits, optional
    model_info : ModelInfo, optional
        The model line (default: the systems' names).
    examples : list of Path, optional
        Example clips (default: :func:`example_clips`).
    """
    import gradio as gr

    from ser.inference.vad import vad_available

    limits = limits or Limits()
    text_systems = any(s.whisper for s in recognizer.systems)
    names = ", ".join(s.name for s in recognizer.systems) + (" + fusion" if recognizer.fusion else "")
    model_info = model_info or ModelInfo("model", names, False)
    examples = example_clips() if examples is None else examples
    segment_choices = list(SEGMENTS) if vad_available() else ["fixed windows"]
    hidden = gr.update(value=None, visible=False)

    def classify(upload, recording, segment_choice, progress=gr.Progress()):  # noqa: B008 - Gradio's idiom
        segment = SEGMENTS.get(segment_choice, "fixed")
        analysis = analyse(recognizer, upload, recording, limits, segment, progress)
        if analysis.error:
            return analysis.headline, None, "", hidden, hidden, hidden
        chart = {f"{EMOTION_NAMES[c]} ({c})": float(analysis.probabilities[c])
                 for c in EMOTIONS if c in (analysis.probabilities or {})}
        timeline = hidden
        if analysis.timeline_note:
            image = _figure(analysis.timeline, f"Emotion over time: {analysis.timeline_note}")
            timeline = gr.update(value=image, visible=True)
        attributes = gr.update(value=analysis.attributes, visible=True) if analysis.attributes else hidden
        # Plays back what was classified: the uploaded file itself, or the recording.
        player = gr.update(value=str(upload) if upload else recording, visible=True)
        return analysis.headline, chart, analysis.transcript or "", timeline, attributes, player

    lock = threading.Lock()  # one live update at a time: every visitor's stream shares the model

    def live_update(chunk, state):
        if chunk is None:
            return gr.skip(), gr.skip(), state
        state = state or LiveTimeline(limits)
        arrived = time.perf_counter()
        rate, samples = chunk
        try:
            with lock:
                updated = state.add(recognizer, rate, samples)
                if not updated:
                    return gr.skip(), gr.skip(), state
                image = state.figure()
        except (UserInputError, ValueError) as error:
            return f"**Error:** {error}", gr.skip(), state
        # The whole update, figure included, is what the user waits for.
        state.latencies[-1] = time.perf_counter() - arrived
        return state.status(state.latencies[-1]), image, state

    minutes = f" ({limits.max_seconds / 60:g} min)" if limits.max_seconds >= 60 else ""
    with gr.Blocks(title="Speech emotion recognition", analytics_enabled=False) as app:
        gr.Markdown("# Speech emotion recognition")
        gr.Markdown(model_info.line, elem_id="model")
        with gr.Tab("Clip", elem_id="clip_tab"):
            gr.Markdown(f"Upload a clip (WAV, FLAC, OGG; up to {limits.max_seconds:g} s{minutes}, any sample "
                        f"rate and channels), record one or pick an example, then press Classify. Clips over "
                        f"{limits.long_clip:g} s also get a timeline.")
            with gr.Row():
                upload = gr.File(label="Audio file", type="filepath", elem_id="upload")
                recording = gr.Audio(sources=["microphone"], type="numpy", label="or record",
                                     elem_id="recording")
            if examples:
                gr.Examples([[str(path)] for path in examples], inputs=[upload], label="Examples (synthetic "
                            "espeak-ng speech)", elem_id="examples")
            with gr.Row():
                segment = gr.Radio(segment_choices, value=segment_choices[0], label="Timeline of a long clip",
                                   elem_id="segment")
                button = gr.Button("Classify", variant="primary", elem_id="classify")
            status = gr.Markdown(elem_id="status")
            player = gr.Audio(label="Listen", interactive=False, visible=False, elem_id="player")
            chart = gr.Label(num_top_classes=len(EMOTIONS), label="Probabilities", elem_id="chart")
            attributes = gr.JSON(label="Attributes", visible=False, elem_id="attributes")
            transcript = gr.Textbox(label="Transcript (Whisper)", visible=text_systems, interactive=False,
                                    elem_id="transcript")
            timeline = gr.Image(label="Timeline", type="pil", visible=False, interactive=False,
                                elem_id="timeline")
        with gr.Tab("Live microphone", elem_id="live_tab"):
            gr.Markdown(f"Press Record: every {limits.live_hop:g} s the last {limits.live_window:g} s are "
                        f"classified and the timeline of the last {limits.live_history:g} s moves on. The "
                        "line under it says how long each update took on the server, from the chunk's "
                        "arrival to the new timeline.")
            live = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone",
                            elem_id="live")
            live_status = gr.Markdown(elem_id="live_status")
            live_timeline = gr.Image(label="Rolling timeline", type="pil", interactive=False,
                                     elem_id="live_timeline")
            live_state = gr.State(None)
        button.click(classify, [upload, recording, segment],
                     [status, chart, transcript, timeline, attributes, player],
                     api_name="classify", concurrency_limit=1)
        live.start_recording(lambda: None, None, live_state, api_name=False)
        live.stream(live_update, [live, live_state], [live_status, live_timeline, live_state],
                    stream_every=min(0.5, limits.live_hop), show_progress="hidden", api_name="live",
                    concurrency_limit=1)
    return app


def build_parser():
    parser = ArgumentParser(prog="ser.app", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="PACKAGE", help="package written by python -m ser.export")
    source.add_argument("--systems", nargs="+", metavar="DIR",
                        help="system folders written by train.py (or a parent holding one seed folder)")
    parser.add_argument("--fusion", metavar="DIR", help="fusion folder (with --systems)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: localhost only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max_seconds", type=float, default=Limits.max_seconds, help="longest clip, seconds")
    parser.add_argument("--max_mb", type=float, default=None,
                        help="byte ceiling of an upload, MB (default: --max_seconds of 96 kHz stereo 32-bit)")
    parser.add_argument("--long_clip", type=float, default=Limits.long_clip,
                        help="clips longer than this (seconds) also get a timeline")
    parser.add_argument("--window", type=float, default=Limits.window, help="fixed timeline window, seconds")
    parser.add_argument("--hop", type=float, default=Limits.hop, help="fixed timeline hop, seconds")
    parser.add_argument("--live_window", type=float, default=Limits.live_window,
                        help="live microphone: seconds classified at each update")
    parser.add_argument("--live_hop", type=float, default=Limits.live_hop,
                        help="live microphone: seconds between updates")
    parser.add_argument("--live_history", type=float, default=Limits.live_history,
                        help="live microphone: seconds the rolling timeline shows")
    parser.add_argument("--examples", metavar="DIR", help="folder of example clips (.flac) to offer instead "
                        "of the shipped ones")
    parser.add_argument("--device", default="cpu")
    return parser


def main(argv=None):
    """Load the model and serve the page until interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.fusion and not args.systems:
        parser.error("--fusion goes with --systems")
    try:  # a system's parent folder holding one seed folder stands for it, as in ser.predict
        args.systems = args.systems and [str(run_folder(given)) for given in args.systems]
    except SystemFolderError as error:
        parser.error(f"--systems {error}")
    sizes = [args.max_seconds, args.window, args.hop, args.live_window, args.live_hop, args.live_history]
    if min(sizes) <= 0 or (args.max_mb is not None and args.max_mb <= 0):
        parser.error("--max_seconds, --max_mb, --window, --hop and the --live_ options must be positive")
    try:
        import gradio  # noqa: F401
    except ModuleNotFoundError:
        parser.error("the web page needs Gradio: pip install -e '.[app]'")
    examples = None
    if args.examples:
        examples = example_clips(args.examples)
        if not examples:
            parser.error(f"--examples {args.examples}: no .flac clips in this folder")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    from ser.inference.recognizer import EmotionRecognizer

    try:
        if args.model:
            # A server runs for long: ONNX weights repacked for this CPU, for faster clips.
            recognizer = EmotionRecognizer.from_pretrained(args.model, args.device, pack_weights=True)
        else:
            recognizer = EmotionRecognizer.from_folders(args.systems, args.fusion, args.device)
        model_info = describe_model(recognizer, args.model, args.systems)
    except (OSError, UserInputError, ValueError) as error:
        parser.error(str(error))
    limits = Limits(args.max_seconds, args.long_clip, args.window, args.hop, args.max_mb, args.live_window,
                    args.live_hop, args.live_history)
    logger.info("%s (toy: %s, from the %s)", model_info.line, model_info.toy, model_info.toy_source)
    app = build_app(recognizer, limits, model_info, examples)
    app.queue(default_concurrency_limit=1, max_size=64)
    ceiling = f"{math.ceil(limits.upload_mb * 1000)}kb"  # Gradio reads whole units only
    app.launch(server_name=args.host, server_port=args.port, max_file_size=ceiling, show_error=True,
               share=False, inbrowser=False)
    return 0


if __name__ == "__main__":
    exit_with("ser.app", main, interrupted="the server stopped")
