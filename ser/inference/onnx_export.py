"""Export a packaged system's network to ONNX (fp32 or int8), and check it against PyTorch.

``python -m ser.export ... --onnx`` (or ``--int8``) writes, beside each system's PyTorch weights, a
folder of ONNX graphs that :mod:`ser.inference.onnx_runtime` runs with onnxruntime on the CPU::

    systems/system_a/onnx/           (onnx_int8/ with --int8)
      graphs.json                    which graph does what; what inference needs of the YAML
      speech_0.onnx                  speech branch 0: (wav, wav_lens) -> pooled (batch, dim)
      speech_0.onnx.data             its weights (mapped into memory by onnxruntime)
      text_0.onnx, text_0.onnx.data  text branch 0: (input_ids, attention_mask) -> pooled
      head.onnx                      pooled (batch, dim) -> log_probs and/or attributes

One graph per branch, not one per system: each stays under protobuf's 2 GB limit (system C holds
two large encoders, 2.5 GB in fp32), and a branch that cannot be exported stays in PyTorch while
the others run in onnxruntime (``graphs.json`` records which and why). Graphs come from
``torch.onnx``'s TorchScript tracer (``torch.export`` refuses the encoders' checks of their inputs,
which depend on the data): batch and length axes are dynamic. A tracer can freeze a length that
the code computed as a Python number; every graph is therefore run on three other batch shapes
against PyTorch right after its export, and kept only when it matches (to
:data:`GRAPH_TOLERANCE`). Whisper's encoder computes its log-mel spectrogram with a complex STFT,
which the tracer cannot export: a Whisper speech branch stays in PyTorch.

Each branch's graph is saved with onnxruntime's basic and extended optimizations applied (node
fusions: attention, GELU, layer norm, quantized matrix products), and its weights in a file of
their own that onnxruntime maps into memory: a session skips the fusions and the parsing, and
starts on the mapped weights (WavLM-large int8: 1.0 s to 0.1 s on a 2-core CPU; see
``pack_weights`` in :class:`ser.inference.onnx_runtime.OnnxEmotionModel`). These levels are the
portable ones; the layout optimizations tuned to the CPU (onnxruntime's "all" level) are left to
the machine that loads the graph. ``graphs.json`` records which onnxruntime wrote them
(``optimized_by``).

``--int8`` quantizes the linear layers of the encoders' graphs dynamically (onnxruntime's
``quantize_dynamic``: int8 weights per output channel, activations quantized on the fly, matrix
products whose both sides are activations stay float); the CNN, the layer norms, the softmax and
the head stay float32. A head is a few thousand multiply-adds per turn: quantizing it would only
add error.

Then :func:`add_onnx_runtime` has the package classify a set of clips in PyTorch and in ONNX
(:mod:`ser.inference.onnx_parity`) and refuses the export when the label agreement of any system
(or of the ensemble) is below ``min_agreement``.
"""

import logging
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from ser.inference.onnx_parity import (
    DEFAULT_MIN_AGREEMENT,
    PARITY_FILE,
    ParityError,
    check_parity,
    parity_set,
)
from ser.io import SAMPLE_RATE
from ser.io.atomic import write_json_atomic

logger = logging.getLogger(__name__)

__all__ = [
    "RUNTIMES",
    "ONNX_FOLDERS",
    "GRAPHS_FILE",
    "export_onnx_model",
    "add_onnx_runtime",
]

#: The runtimes a packaged system may use (``runtime`` of its manifest row; PyTorch when absent).
RUNTIMES = ("pytorch", "onnx", "onnx-int8")
#: The folder of each ONNX runtime's graphs inside a system's folder.
ONNX_FOLDERS = {"onnx": "onnx", "onnx-int8": "onnx_int8"}
GRAPHS_FILE = "graphs.json"
#: Largest difference between a fp32 graph's output and PyTorch's on the export's own check.
GRAPH_TOLERANCE = 1e-3
#: Keys of a system's YAML that inference reads besides the network (written into graphs.json).
_INFERENCE_KEYS = ("eval_max_duration", "classes", "attributes", "attribute_scale", "n_classes")
_OPSET = 17


class _SpeechGraph(torch.nn.Module):
    """A speech branch as one graph: ``(wav, wav_lens)`` -> pooled ``(batch, dim)``."""

    def __init__(self, branch):
        super().__init__()
        self.branch = branch

    def forward(self, wav, wav_lens):
        return self.branch(wav, wav_lens)


class _TextGraph(torch.nn.Module):
    """A :class:`ser.nn.encoders.TextEncoder` branch from its tokens on (the tokenizer stays Python).

    The same computation as ``TextEncoder.forward`` after its tokenizer: the transformer, the
    optional ``output_norm`` over valid tokens, zeroed padding, relative lengths, the pooling.
    """

    def __init__(self, branch):
        super().__init__()
        self.branch = branch

    def forward(self, input_ids, attention_mask):
        from ser.nn.encoder_inputs import masked_standardize

        encoder = self.branch.encoder
        hidden = encoder.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1)
        if encoder.output_norm:
            hidden = masked_standardize(hidden, mask, dims=(-2, -1), eps=1e-5)
        hidden = hidden * mask.to(hidden.dtype)
        lengths = attention_mask.sum(dim=1).to(hidden.dtype) / attention_mask.shape[1]
        return self.branch.pooling(hidden, lengths)


class _HeadGraph(torch.nn.Module):
    """The target heads as one graph: pooled -> the outputs named in ``names``."""

    def __init__(self, head, names):
        super().__init__()
        self.head, self.names = head, names

    def forward(self, pooled):
        out = self.head(pooled)
        return tuple(out[name] for name in self.names)


def _trace_to_onnx(module, inputs, path, input_names, output_names, dynamic_axes):
    with warnings.catch_warnings():
        # The tracer warns at every Python number it records; the check after export is what
        # tells whether one of them froze a shape.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            inputs,
            str(path),
            dynamo=False,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=_OPSET,
            do_constant_folding=True,
        )


def _session(path, threads=1):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _largest_difference(module, session, batches):
    """Largest |ONNX - PyTorch| over ``batches`` (tuples of tensors, in the graph's input order)."""
    names = [i.name for i in session.get_inputs()]
    worst = 0.0
    with torch.inference_mode():
        for batch in batches:
            expected = module(*batch)
            expected = expected if isinstance(expected, tuple) else (expected,)
            got = session.run(None, {n: t.numpy() for n, t in zip(names, batch, strict=True)})
            for e, g in zip(expected, got, strict=True):
                if e.shape != g.shape:
                    return math.inf
                worst = max(worst, float(np.abs(e.float().numpy() - g).max()))
    return worst


def _speech_batches(seed=0):
    """Batches unlike the tracing one: other sizes, lengths and padding."""
    generator = torch.Generator().manual_seed(seed)
    shapes = ((3, 53_123, [1.0, 0.41, 0.83]), (1, 11_200, [1.0]), (5, 30_411, [0.2, 1.0, 0.66, 0.05, 0.9]))
    return [
        (0.1 * torch.randn(n, samples, generator=generator), torch.tensor(lens))
        for n, samples, lens in shapes
    ]


def _text_batches(tokenizer, max_length):
    texts = (
        ["well", "i really think that it was not what we wanted at all you know", "yes it is"],
        ["oh no"],
        ["the show was great " * 4, "", "maybe", "i love it", "no"],
    )
    out = []
    for batch in texts:
        tokens = tokenizer(
            list(batch), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        out.append((tokens["input_ids"], tokens["attention_mask"]))
    return out


def _export_speech(branch, path):
    example = (0.1 * torch.randn(2, 2 * SAMPLE_RATE), torch.tensor([1.0, 0.55]))
    graph = _SpeechGraph(branch).eval()
    _trace_to_onnx(
        graph,
        example,
        path,
        ["wav", "wav_lens"],
        ["pooled"],
        {"wav": {0: "batch", 1: "samples"}, "wav_lens": {0: "batch"}, "pooled": {0: "batch"}},
    )
    return graph, _speech_batches()


def _export_text(branch, path):
    encoder = branch.encoder
    tokens = encoder.tokenizer(["i really think so", "yes"], padding=True, return_tensors="pt")
    graph = _TextGraph(branch).eval()
    _trace_to_onnx(
        graph,
        (tokens["input_ids"], tokens["attention_mask"]),
        path,
        ["input_ids", "attention_mask"],
        ["pooled"],
        {
            "input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"},
            "pooled": {0: "batch"},
        },
    )
    return graph, _text_batches(encoder.tokenizer, encoder.max_length)


def _quantize(fp32_path, int8_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32_path),
        str(int8_path),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gemm"],
        extra_options={"MatMulConstBOnly": True},
    )


def weights_file(graph):
    """The file beside ``graph`` that holds its weights (``speech_0.onnx`` -> ``speech_0.onnx.data``)."""
    return graph.with_name(f"{graph.name}.data")


def _optimize(path):
    """Replace the graph at ``path`` by itself with onnxruntime's portable optimizations applied.

    Its weights go to :func:`weights_file`: onnxruntime maps such a file into memory instead of
    parsing and copying the weights out of the graph, which halves a session's start-up, and lets
    sessions start without copying them at all (``pack_weights=False`` in
    :class:`ser.inference.onnx_runtime.OnnxEmotionModel`).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # "Extended" and below are independent of the CPU; onnxruntime itself warns that a graph saved
    # at a higher level holds optimizations for the machine that saved it.
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    optimized = path.with_name(f"{path.stem}.optimized.onnx")
    options.optimized_model_filepath = str(optimized)
    # The graph records the weights' file by name, relative to its own folder: the final name.
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", weights_file(path).name)
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    optimized.replace(path)


def optimized_by():
    """What ``graphs.json`` records of the onnxruntime that optimized the graphs."""
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__} (basic and extended optimizations)"


def _export_branch(kind, branch, folder, index, int8):
    """Export one branch; its ``graphs.json`` row (``graph`` or, when it stays PyTorch, ``reason``)."""
    name = f"{kind}_{index}.onnx"
    path = folder / name
    exporter = _export_speech if kind == "speech" else _export_text
    if kind == "text" and not hasattr(branch.encoder, "tokenizer"):
        return {"pytorch": True, "reason": f"{type(branch.encoder).__name__} has no tokenizer to run apart"}
    try:
        graph, batches = exporter(branch, path)
        difference = _largest_difference(graph, _session(path), batches)
    except Exception as error:  # noqa: BLE001 - any exporter failure leaves the branch in PyTorch
        path.unlink(missing_ok=True)
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
        logger.warning(
            "%s branch %d (%s) stays in PyTorch: %s", kind, index, type(branch.encoder).__name__, reason
        )
        return {"pytorch": True, "reason": reason}
    if not difference <= GRAPH_TOLERANCE:
        path.unlink()
        reason = (
            f"the traced graph differs from PyTorch by {difference:.3g} on other batch shapes "
            "(a shape frozen by the tracer)"
        )
        logger.warning(
            "%s branch %d (%s) stays in PyTorch: %s", kind, index, type(branch.encoder).__name__, reason
        )
        return {"pytorch": True, "reason": reason}
    row = {"graph": name, "fp32_check": difference}
    if int8:
        quantized = folder / f"{kind}_{index}.int8.onnx"
        _quantize(path, quantized)
        path.unlink()
        quantized.rename(path)
    _optimize(path)
    return row


def export_onnx_model(model, folder, int8=False, hparams=None, system_folder=None):
    """Write the ONNX graphs of an :class:`ser.nn.model.EmotionClassifier` and their ``graphs.json``.

    Parameters
    ----------
    model : ser.nn.model.EmotionClassifier
        In eval mode, on the CPU.
    folder : str or Path
        Created; receives the graphs.
    int8 : bool
        Quantize the encoders' linear layers (see the module's docstring).
    hparams : dict, optional
        The system's hyperparameters: :data:`_INFERENCE_KEYS` are copied into ``graphs.json``.
    system_folder : Path, optional
        The packaged system's folder: a text encoder's tokenizer is recorded relative to it.

    Returns
    -------
    dict
        The ``graphs.json`` content.

    Example
    -------
    >>> import tempfile
    >>> from ser.nn.model import EmotionClassifier, SpeechBranch, TargetHeads
    >>> from ser.nn.pooling import MeanPooling
    >>> class Framer(torch.nn.Module):
    ...     def forward(self, wavs, lens):
    ...         return wavs.unfold(1, 320, 320)
    >>> model = EmotionClassifier(TargetHeads(320, classes="ACN"), [SpeechBranch(Framer(), MeanPooling())])
    >>> spec = export_onnx_model(model.eval(), Path(tempfile.mkdtemp()) / "onnx")
    >>> spec["head"]["outputs"], spec["speech"][0]["pytorch"]  # unfold has no ONNX export: stays PyTorch
    (['log_probs'], True)
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    speech = [_export_branch("speech", b, folder, i, int8) for i, b in enumerate(model.speech_branches)]
    text = [_export_branch("text", b, folder, i, int8) for i, b in enumerate(model.text_branches)]
    for row, branch in zip(text, model.text_branches, strict=True):
        if "graph" in row:
            source = Path(branch.encoder.source)
            tokenizer = source.relative_to(system_folder) if system_folder is not None else source
            row.update({"tokenizer": str(tokenizer), "max_length": branch.encoder.max_length})
    names = [n for n, on in (("log_probs", model.head.classes), ("attributes", model.head.attributes)) if on]
    dim = model.head.classifier.in_features if model.head.classes else model.head.regressor.in_features
    head = _HeadGraph(model.head, names).eval()
    _trace_to_onnx(
        head,
        (torch.randn(2, dim),),
        folder / "head.onnx",
        ["pooled"],
        names,
        {"pooled": {0: "batch"}, **{n: {0: "batch"} for n in names}},
    )
    spec = {
        "runtime": "onnx-int8" if int8 else "onnx",
        "quantization": (
            "dynamic int8 (onnxruntime quantize_dynamic: MatMul/Gemm weights per channel, "
            "activations per batch); CNN, norms and head in float32"
        )
        if int8
        else None,
        "optimized_by": optimized_by(),
        "speech": speech,
        "text": text,
        "head": {"graph": "head.onnx", "outputs": names, "in_features": dim},
        "hparams": {k: _plain(hparams[k]) for k in _INFERENCE_KEYS if hparams and k in hparams},
    }
    write_json_atomic(folder / GRAPHS_FILE, spec)
    return spec


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def add_onnx_runtime(
    package, runtime, min_agreement=None, parity_audio=None, parity_labels=None, parity_clips=24
):
    """Export every system of a written package to ``runtime``, check parity, record it.

    Writes each system's graphs (:func:`export_onnx_model`), compares the package in PyTorch
    and in ``runtime`` (:func:`check_parity`), writes ``parity.json`` and sets each manifest row's
    ``runtime``.

    Parameters
    ----------
    package : Path
        A package folder written by :func:`ser.inference.export.export_package`.
    runtime : str
        ``onnx`` or ``onnx-int8``.
    min_agreement : float, optional
        Label agreement (%) under which the export is refused; :data:`DEFAULT_MIN_AGREEMENT`.
    parity_audio : Path, optional
        A folder of recorded turns (e.g. the corpus's development turns); else
        :func:`synthetic_clips`.
    parity_labels : Path, optional
        A CSV with ``FileName`` and ``EmoClass`` (the corpus's ``labels_consensus.csv``).
    parity_clips : int
        How many clips (synthetic, or at most from ``parity_audio``).

    Returns
    -------
    dict
        The parity report (see :func:`check_parity`), with ``runtime`` and ``min_agreement``.

    Raises
    ------
    ParityError
        If a system or the ensemble agrees with PyTorch on fewer labels than ``min_agreement``.
    """
    from ser.inference.loading import load_packaged
    from ser.inference.package import MANIFEST, load_packaged_system, read_manifest
    from ser.inference.recognizer import EmotionRecognizer

    if runtime not in ONNX_FOLDERS:
        raise ValueError(f"runtime must be one of {sorted(ONNX_FOLDERS)}, got {runtime!r}")
    package = Path(package)
    threshold = DEFAULT_MIN_AGREEMENT[runtime] if min_agreement is None else float(min_agreement)
    manifest = read_manifest(package)
    for entry in manifest["systems"]:
        system_folder = package / entry["folder"]
        hparams, model, _ = load_packaged_system(system_folder)
        logger.info("exporting %s to %s", entry["name"], runtime)
        export_onnx_model(
            model,
            system_folder / ONNX_FOLDERS[runtime],
            int8=runtime == "onnx-int8",
            hparams=hparams,
            system_folder=system_folder,
        )
        del model
    clips, labels = parity_set(parity_audio, parity_labels, parity_clips)
    reference = EmotionRecognizer.from_pretrained(package)
    systems = [load_packaged(package, {**entry, "runtime": runtime}) for entry in manifest["systems"]]
    exported = EmotionRecognizer(systems, reference.transcribers, reference.fusion)
    report = {
        "runtime": runtime,
        "min_agreement": threshold,
        **check_parity(reference, exported, clips, labels),
    }
    write_json_atomic(package / PARITY_FILE, report)
    rows = list(report["systems"].items()) + (
        [("ensemble", report["ensemble"])] if "ensemble" in report else []
    )
    for name, row in rows:
        if row["agreement"] < threshold:
            # Named by the threshold, not by the parity file: a refused package is not written.
            raise ParityError(
                f"--min_agreement {threshold:g}: {runtime} agrees with PyTorch on {row['agreement']:.1f} % "
                f"of the labels of {name} (max probability difference {row['max_abs_diff']:.2g}): not "
                "exported; lower --min_agreement only knowingly"
            )
    for entry in manifest["systems"]:
        entry["runtime"] = runtime
    write_json_atomic(package / MANIFEST, manifest)
    return report
