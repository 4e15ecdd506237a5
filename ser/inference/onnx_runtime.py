"""Run a packaged system's ONNX graphs (:mod:`ser.inference.onnx_export`) with onnxruntime on the CPU.

:class:`OnnxEmotionModel` offers what :class:`ser.inference.recognizer.EmotionRecognizer` calls
on a network, ``embed(wavs, wav_lens, texts)`` and ``classify(pooled)``, so a package whose
manifest row says ``"runtime": "onnx"`` (or ``"onnx-int8"``) is loaded by
``EmotionRecognizer.from_pretrained`` and ``python -m ser.predict --model`` with no other change.
A branch the export left in PyTorch (``graphs.json``: ``pytorch: true``, with the reason) runs in
PyTorch: only then is the PyTorch network built, and only that branch of it is kept.

onnxruntime is an optional dependency (``pip install 'msp-ser[onnx]'``); training never uses it.
"""

import json
from pathlib import Path

import numpy as np
import torch

__all__ = ["OnnxEmotionModel", "load_onnx_system"]


def _session(path, threads, written_by=None, pack_weights=False):
    from ser.inference.package import PackageError

    try:
        import onnxruntime
    except ImportError:
        raise PackageError(f"{path}: an ONNX graph needs onnxruntime: pip install 'msp-ser[onnx]'") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # The graphs hold the portable optimizations already; "all" adds those tuned to this CPU.
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not pack_weights:
        # The weights stay where onnxruntime mapped them from the graph's weights file.
        options.add_session_config_entry("session.disable_prepacking", "1")
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime's errors share no base class
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        made = ""
        if written_by:
            made = f"; it was written by {written_by}: install that onnxruntime or a newer one"
        raise PackageError(f"{path}: onnxruntime {onnxruntime.__version__} cannot load this graph "
                           f"({first_line}){made}, or export the package again") from None


class OnnxEmotionModel(torch.nn.Module):
    """A system's network as onnxruntime sessions, with the interface of ``EmotionClassifier``.

    Parameters
    ----------
    folder : str or Path
        The graphs' folder (``systems/<name>/onnx`` or ``onnx_int8``), holding ``graphs.json``.
    pytorch_model : ser.nn.model.EmotionClassifier, optional
        The system's PyTorch network, needed only for branches ``graphs.json`` leaves in PyTorch.
    threads : int, optional
        onnxruntime's threads per graph; PyTorch's (``torch.get_num_threads()``) by default, so
        ``OMP_NUM_THREADS`` and ``torch.set_num_threads`` bound both runtimes alike.
    pack_weights : bool
        Whether onnxruntime copies the weight matrices into the layout of this CPU's kernels when
        the sessions start ("prepacking"). Without it (the default) a session starts at once on
        the weights mapped from the graph's weights file, and each clip takes a little longer.
        Measured on WavLM-large with a 2-core AVX-512 CPU, side by side: packing adds 1.1 s to
        the start-up in fp32 (0.3 s in int8) and saves 0-12 % of each clip's time, so it pays
        from a few minutes of audio on (``python -m ser.predict`` packs from
        :data:`ser.inference.predict.PACK_FROM_SECONDS` of audio).
    """

    def __init__(self, folder, pytorch_model=None, threads=None, pack_weights=False):
        super().__init__()
        folder = Path(folder)
        self.folder = folder
        self.spec = json.loads((folder / "graphs.json").read_text(encoding="utf-8"))
        self.runtime = self.spec["runtime"]
        threads = int(threads or torch.get_num_threads())
        written_by = self.spec.get("optimized_by")
        # Sessions are plain attributes (not modules); the PyTorch branches kept are submodules.
        self._speech, self._text = [], []
        self.pytorch_branches = torch.nn.ModuleList()
        for kind, rows, kept in (
            ("speech", self.spec["speech"], self._speech),
            ("text", self.spec["text"], self._text),
        ):
            for index, row in enumerate(rows):
                if row.get("pytorch"):
                    if pytorch_model is None:
                        raise ValueError(
                            f"{folder}: {kind} branch {index} runs in PyTorch: give pytorch_model"
                        )
                    branches = (
                        pytorch_model.speech_branches if kind == "speech" else pytorch_model.text_branches
                    )
                    self.pytorch_branches.append(branches[index])
                    kept.append(("pytorch", branches[index]))
                elif kind == "text":
                    from transformers import AutoTokenizer

                    tokenizer = AutoTokenizer.from_pretrained(folder.parent / row["tokenizer"])
                    session = _session(folder / row["graph"], threads, written_by, pack_weights)
                    kept.append(("onnx", (session, tokenizer, row["max_length"])))
                else:
                    session = _session(folder / row["graph"], threads, written_by, pack_weights)
                    kept.append(("onnx", session))
        self._head = _session(folder / self.spec["head"]["graph"], threads, written_by, pack_weights)
        self._head_outputs = list(self.spec["head"]["outputs"])

    @property
    def uses_text(self):
        """Whether the model needs transcripts."""
        return bool(self._text)

    def _speech_pooled(self, how, what, wavs, wav_lens):
        if how == "pytorch":
            return what(wavs, wav_lens)
        device = wavs.device
        wav_lens = torch.ones(wavs.shape[0]) if wav_lens is None else torch.as_tensor(wav_lens)
        feeds = {
            "wav": wavs.detach().float().cpu().numpy(),
            "wav_lens": wav_lens.detach().float().cpu().numpy(),
        }
        return torch.from_numpy(what.run(None, feeds)[0]).to(device)

    def _text_pooled(self, how, what, texts):
        if how == "pytorch":
            return what(list(texts))
        session, tokenizer, max_length = what
        tokens = tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np"
        )
        feeds = {
            "input_ids": tokens["input_ids"].astype(np.int64),
            "attention_mask": tokens["attention_mask"].astype(np.int64),
        }
        return torch.from_numpy(session.run(None, feeds)[0])

    def embed(self, wavs=None, wav_lens=None, texts=None):
        """All branches' pooled vectors, concatenated ``(batch, dim)``, as ``EmotionClassifier.embed``."""
        pooled = [self._speech_pooled(how, what, wavs, wav_lens) for how, what in self._speech]
        if self.uses_text:
            if texts is None:
                raise ValueError("this model has a text branch: transcripts are required")
            device = pooled[0].device if pooled else "cpu"
            pooled += [self._text_pooled(how, what, texts).to(device) for how, what in self._text]
        return torch.cat(pooled, dim=-1)

    def classify(self, embeddings):
        """The head's outputs (``log_probs`` and/or ``attributes``) for :meth:`embed`'s vectors."""
        out = self._head.run(None, {"pooled": embeddings.detach().float().cpu().numpy()})
        return {
            name: torch.from_numpy(value).to(embeddings.device)
            for name, value in zip(self._head_outputs, out, strict=True)
        }

    def forward(self, wavs=None, wav_lens=None, texts=None):
        """``classify(embed(...))``, as ``EmotionClassifier.forward``."""
        return self.classify(self.embed(wavs, wav_lens, texts))


def load_onnx_system(folder, runtime, device="cpu", pack_weights=False):
    """A packaged system's hyperparameters, its :class:`OnnxEmotionModel` and its Whisper settings.

    The same triple as :func:`ser.inference.package.load_packaged_system`; the PyTorch network is
    built only when a branch stays in PyTorch.

    Parameters
    ----------
    folder : Path
        ``<package>/systems/<name>``.
    runtime : str
        ``onnx`` or ``onnx-int8`` (its graphs' folder must exist).
    device : str
        Where a PyTorch branch runs; the graphs run on the CPU.
    pack_weights : bool
        As in :class:`OnnxEmotionModel`.
    """
    from ser.inference.onnx_export import GRAPHS_FILE, ONNX_FOLDERS
    from ser.inference.package import PackageError, load_packaged_system, read_transcriber

    folder = Path(folder)
    if runtime not in ONNX_FOLDERS:
        raise PackageError(
            f"{folder}: runtime {runtime!r} unknown (known: pytorch, {', '.join(ONNX_FOLDERS)})"
        )
    graphs = folder / ONNX_FOLDERS[runtime]
    if not (graphs / GRAPHS_FILE).is_file():
        raise PackageError(f"{graphs / GRAPHS_FILE}: missing, but the manifest says runtime {runtime}")
    spec = json.loads((graphs / GRAPHS_FILE).read_text(encoding="utf-8"))
    pytorch_model = None
    if any(row.get("pytorch") for row in spec["speech"] + spec["text"]):
        _, pytorch_model, _ = load_packaged_system(folder, device)
    model = OnnxEmotionModel(graphs, pytorch_model, pack_weights=pack_weights)
    return spec["hparams"], model, read_transcriber(folder)
