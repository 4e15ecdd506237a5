"""A web demo: upload or record a clip, see its emotion (Gradio, the usual stack of model demos).

Usage::

    python -m ser.app --model my_model/                     # an exported package (python -m ser.export)
    python -m ser.app --systems results/demo/system_{a,d}/1993 [--fusion results/demo/fusion]

Serves http://127.0.0.1:7860 (``--host 0.0.0.0`` to open it to the network): upload a file or
record one, and the page shows the predicted emotion, a bar chart of the 8 probabilities (the
attributes too, when the model predicts them), the transcript for text systems and, for a clip
longer than ``--long_clip`` seconds, the timeline of windows (``--window``, ``--hop``).
A file that is not audio, an empty or corrupt WAV, a file over ``--max_mb`` or a clip over
``--max_seconds`` gets a message on the page; the server keeps serving. Only the page's own
assets and the uploads are served (no ``allowed_paths``). Needs the ``app`` extra
(``pip install -e '.[app]'``).
"""

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import soundfile

from ser.cli import ArgumentParser, exit_with
from ser.emotions import EMOTION_NAMES, EMOTIONS
from ser.errors import UserInputError
from ser.io.audio import SAMPLE_RATE, AudioError, as_mono_waveform, load_waveform

logger = logging.getLogger(__name__)

__all__ = ["Limits", "Analysis", "analyse", "build_app", "main"]


@dataclass
class Limits:
    """What the demo accepts, and when it draws a timeline."""

    max_mb: float = 20.0
    max_seconds: float = 300.0
    long_clip: float = 12.0
    window: float = 3.0
    hop: float = 1.0


@dataclass
class Analysis:
    """What the page shows for one clip: a result or an error message."""

    label: str | None = None
    probabilities: dict = field(default_factory=dict)
    transcript: str | None = None
    attributes: dict = field(default_factory=dict)
    timeline: list = field(default_factory=list)
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
        return f"**{name}**, probability {confidence:.2f}, {self.duration:.1f} s"


def _waveform(upload, recording, limits):
    """16 kHz mono waveform of the upload (a path) or the recording (rate, samples)."""
    if upload:
        path = Path(upload)
        size = path.stat().st_size
        if size > limits.max_mb * 1e6:
            raise AudioError(f"{path.name}: {size / 1e6:.1f} MB, over the {limits.max_mb:g} MB limit")
        try:
            info = soundfile.info(str(path))
        except (RuntimeError, soundfile.LibsndfileError, OSError) as error:
            raise AudioError(f"{path.name}: not an audio file this demo can read (WAV, FLAC, OGG): "
                             f"{str(error).split(':')[-1].strip() or error}") from None
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
    raise AudioError("no audio: upload a file or record a clip first")


def analyse(recognizer, upload=None, recording=None, limits=None):
    """Classify an uploaded file or a recording for the page; errors become a message.

    Parameters
    ----------
    recognizer : ser.inference.EmotionRecognizer
    upload : str or Path, optional
        Path of the uploaded file.
    recording : (int, numpy.ndarray), optional
        Sample rate and samples from the microphone.
    limits : Limits, optional

    Returns
    -------
    Analysis
    """
    limits = limits or Limits()
    try:
        wav = _waveform(upload, recording, limits)
        result = recognizer.classify_batch([wav], sample_rate=SAMPLE_RATE)[0]
        analysis = Analysis(result.label, result.probabilities, result.transcript,
                            dict(getattr(result, "attributes", None) or {}), duration=len(wav) / SAMPLE_RATE)
        if analysis.duration > limits.long_clip:
            analysis.timeline = recognizer.classify_timeline(wav, SAMPLE_RATE, limits.window, limits.hop)
        return analysis
    except (UserInputError, ValueError) as error:
        return Analysis(error=str(error))
    except Exception as error:  # noqa: BLE001 - the page must answer, whatever went wrong
        logger.exception("classification failed")
        return Analysis(error=f"the model failed on this clip ({type(error).__name__}: {error})")


def _timeline_image(rows, window, hop):
    from PIL import Image

    from ser.inference.timeline import plot_timeline

    buffer = io.BytesIO()
    plot_timeline(rows, buffer, title=f"Emotion over time ({window:g} s windows every {hop:g} s)")
    buffer.seek(0)
    return Image.open(buffer)


def build_app(recognizer, limits=None):
    """The Gradio Blocks page around ``recognizer``."""
    import gradio as gr

    limits = limits or Limits()
    text_systems = any(s.whisper for s in recognizer.systems)

    def classify(upload, recording):
        analysis = analyse(recognizer, upload, recording, limits)
        if analysis.error:
            return (analysis.headline, None, "", gr.update(value=None, visible=False),
                    gr.update(value=None, visible=False))
        chart = {f"{EMOTION_NAMES[c]} ({c})": float(analysis.probabilities[c])
                 for c in EMOTIONS if c in (analysis.probabilities or {})}
        timeline = gr.update(value=None, visible=False)
        if analysis.timeline:
            image = _timeline_image(analysis.timeline, limits.window, limits.hop)
            timeline = gr.update(value=image, visible=True)
        attributes = (gr.update(value=analysis.attributes, visible=True) if analysis.attributes
                      else gr.update(value=None, visible=False))
        return analysis.headline, chart, analysis.transcript or "", timeline, attributes

    names = ", ".join(s.name for s in recognizer.systems) + (" + fusion" if recognizer.fusion else "")
    with gr.Blocks(title="Speech emotion recognition", analytics_enabled=False) as app:
        gr.Markdown(f"# Speech emotion recognition\nSystems: {names}. Upload a clip (WAV, FLAC, OGG; at most "
                    f"{limits.max_mb:g} MB and {limits.max_seconds:g} s) or record one, then press Classify.")
        with gr.Row():
            upload = gr.File(label="Audio file", type="filepath", elem_id="upload")
            recording = gr.Audio(sources=["microphone"], type="numpy", label="or record", elem_id="recording")
        button = gr.Button("Classify", variant="primary", elem_id="classify")
        status = gr.Markdown(elem_id="status")
        chart = gr.Label(num_top_classes=len(EMOTIONS), label="Probabilities", elem_id="chart")
        attributes = gr.JSON(label="Attributes", visible=False, elem_id="attributes")
        transcript = gr.Textbox(label="Transcript (Whisper)", visible=text_systems, interactive=False,
                                elem_id="transcript")
        timeline = gr.Image(label="Timeline", type="pil", visible=False, interactive=False,
                            elem_id="timeline")
        button.click(classify, [upload, recording], [status, chart, transcript, timeline, attributes],
                     api_name="classify", concurrency_limit=1)
    return app


def build_parser():
    parser = ArgumentParser(prog="ser.app", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="PACKAGE", help="package written by python -m ser.export")
    source.add_argument("--systems", nargs="+", metavar="DIR", help="system folders written by train.py")
    parser.add_argument("--fusion", metavar="DIR", help="fusion folder (with --systems)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: localhost only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max_mb", type=float, default=Limits.max_mb, help="largest upload, MB")
    parser.add_argument("--max_seconds", type=float, default=Limits.max_seconds, help="longest clip, seconds")
    parser.add_argument("--long_clip", type=float, default=Limits.long_clip,
                        help="clips longer than this (seconds) also get a timeline")
    parser.add_argument("--window", type=float, default=Limits.window, help="timeline window, seconds")
    parser.add_argument("--hop", type=float, default=Limits.hop, help="timeline hop, seconds")
    parser.add_argument("--device", default="cpu")
    return parser


def main(argv=None):
    """Load the model and serve the page until interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.fusion and not args.systems:
        parser.error("--fusion goes with --systems")
    if min(args.max_mb, args.max_seconds, args.window, args.hop) <= 0:
        parser.error("--max_mb, --max_seconds, --window and --hop must be positive")
    try:
        import gradio  # noqa: F401
    except ModuleNotFoundError:
        parser.error("the web demo needs Gradio: pip install -e '.[app]'")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    from ser.inference.recognizer import EmotionRecognizer

    try:
        if args.model:
            recognizer = EmotionRecognizer.from_pretrained(args.model, args.device)
        else:
            recognizer = EmotionRecognizer.from_folders(args.systems, args.fusion, args.device)
    except (OSError, UserInputError, ValueError) as error:
        parser.error(str(error))
    limits = Limits(args.max_mb, args.max_seconds, args.long_clip, args.window, args.hop)
    app = build_app(recognizer, limits)
    app.queue(default_concurrency_limit=1, max_size=64)
    app.launch(server_name=args.host, server_port=args.port, max_file_size=f"{args.max_mb:g}mb",
               show_error=True, share=False, inbrowser=False)
    return 0


if __name__ == "__main__":
    exit_with("ser.app", main, interrupted="the server stopped")
