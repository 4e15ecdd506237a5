"""Emotion recognition on new audio files with trained sub-systems (and their fusion).

:class:`EmotionRecognizer` loads the folders ``train.py`` wrote (``hyperparams.yaml`` rebuilds the
network, the checkpoint train.py evaluated, the best by its ``selection_metric``, fills it) and
classifies any audio file:

- any sample rate and channel count: files are read as 16 kHz mono (:func:`ser.io.audio.load_waveform`);
- any length: a turn longer than a system's ``eval_max_duration`` is cut into windows of that length
  (:func:`window_starts`; the last one overlaps back so that none is a sliver) and the windows'
  posteriors are averaged; a turn that fits is classified whole, exactly as ``train.py`` evaluated
  its dev turns, so its posteriors match ``posteriors/valid.csv``;
- very short files: a waveform shorter than the encoders' receptive field (400 samples, 25 ms) is
  zero-padded to it;
- text systems (D, E) get a Whisper transcript of the whole file, decoded with the options their
  training transcripts used; each file is transcribed once for all systems sharing a recogniser;
- an unreadable or empty file gets an error in its :class:`Result`; the others are still classified;
- systems that predict the Task 2 attributes (``attributes`` in their YAML) give each file's
  arousal, valence and dominance (1-7), averaged over those systems;
- a file that cannot carry an answer — under 400 samples, or digital silence — is classified but
  flagged (:data:`FLAGS`, with a warning): its label says nothing about the speaker.

Whisper (:mod:`ser.asr`) and the fitted fusion model (:mod:`ser.fusion_model`) belong to the
library. :meth:`EmotionRecognizer.from_pretrained` loads an exported package (:mod:`ser.inference.package`)
with nothing of the training at hand; :meth:`EmotionRecognizer.from_folders` loads ``train.py``
folders and the fusion folder ``python -m fusion.fuse`` wrote.
"""

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ser.fusion_model import FusionFolderError, load_attribute_fusion
from ser.inference.loading import OrderedFusion, load_checked_fusion, load_packaged, load_system
from ser.inference.package import files_checked_meanwhile, resolve_package
from ser.inference.results import FLAGS, Result, TimelineRow, audio_flag
from ser.inference.timeline import timeline_starts, window_starts
from ser.io.audio import (
    MIN_SAMPLES,
    SAMPLE_RATE,
    AudioError,
    as_mono_waveform,
    duration_seconds,
    load_waveform,
)
from ser.io.system_folder import display_name, folder_system_name, short_names

logger = logging.getLogger(__name__)

#: Files read, transcribed and classified together (bounds memory on large folders).
FILES_PER_CHUNK = 32

#: Most padding a batch may hold, as a fraction of its shortest window: a batch of a 1.5 s and a
#: 6 s clip computes 12 s for 7.5 s of audio, and on a CPU a real-size encoder gains nothing from
#: batching to pay that back (bench/rtf.py: batches of mixed lengths ran at half the speed of one
#: clip per pass); small models still gain from batches of similar lengths.
MAX_PADDING = 0.25


def length_batches(lengths, batch_size, max_padding=MAX_PADDING):
    """``(first, last)`` slices of length-sorted items: at most ``batch_size`` each, and none whose
    longest item exceeds its shortest by more than ``max_padding`` (a fraction).

    Example
    -------
    >>> length_batches([10, 11, 12, 20, 21, 60], batch_size=2)
    [(0, 2), (2, 3), (3, 5), (5, 6)]
    >>> length_batches([10, 11, 12, 13], batch_size=8)  # 13 > 1.25 x 10
    [(0, 3), (3, 4)]
    """
    bounds, first = [], 0
    for index in range(1, len(lengths) + 1):
        if index == len(lengths) or index - first == batch_size or \
                lengths[index] > (1 + max_padding) * lengths[first]:
            bounds.append((first, index))
            first = index
    return bounds


class EmotionRecognizer:
    """Classify audio files with one or more trained sub-systems, optionally fused.

    Parameters
    ----------
    systems : list of LoadedSystem
    transcribers : dict, optional
        :class:`ser.asr.WhisperSettings` → Whisper backend (``transcribe_many(audios, batch_size)``).
    fusion : object, optional
        Fused model with ``predict_proba(blocks)`` → ``(n, 8)``, ``blocks`` being the list of the
        systems' ``(n, 8)`` posteriors in the order of ``systems``.
    attribute_fusion : object, optional
        Task 2 fusion with ``predict(blocks)`` → ``(n, 3)``, ``blocks`` being the attribute
        systems' ``(n, 3)`` predictions in the order of ``systems``; without it the attribute
        systems' values are averaged.
    device : str
    batch_size : int
        Windows per forward pass (and turns per Whisper call).

    Use :meth:`from_folders` to build one from ``train.py`` output folders.
    """

    def __init__(self, systems, transcribers=None, fusion=None, device="cpu", batch_size=8,
                 attribute_fusion=None):
        if not systems:
            raise ValueError("EmotionRecognizer needs at least one system")
        self.systems = list(systems)
        self.transcribers = dict(transcribers or {})
        missing = {s.whisper for s in self.systems if s.whisper} - set(self.transcribers)
        if missing:
            raise ValueError(f"no transcriber for {sorted(missing)}")
        self.fusion = fusion
        self.attribute_fusion = attribute_fusion
        self.device = device
        self.batch_size = int(batch_size)
        class_sets = {s.targets.classes for s in self.systems if s.targets.classes}
        if len(class_sets) > 1:
            raise ValueError(f"the systems predict different class sets: {sorted(class_sets)}")
        #: The class order of ``Result.probabilities`` (empty when no system predicts classes).
        self.classes = class_sets.pop() if class_sets else ()
        attribute_sets = {s.targets.attributes for s in self.systems if s.targets.attributes}
        if len(attribute_sets) > 1:
            raise ValueError(f"the systems predict different attributes: {sorted(attribute_sets)}")
        #: The attributes of ``Result.attributes`` (empty when no system predicts them).
        self.attributes = attribute_sets.pop() if attribute_sets else ()

    @classmethod
    def from_folders(cls, system_dirs, fusion_dir=None, device="cpu", batch_size=8,
                     attribute_fusion_dir=None):
        """Load each system once, one Whisper per distinct recogniser, and the fusion if given.

        Parameters
        ----------
        system_dirs : list of str or Path
            Folders written by ``train.py`` (e.g. ``results/demo/system_d/1993``).
        fusion_dir : str or Path, optional
            Folder written by ``python -m fusion.fuse``; the systems of ``system_dirs`` that predict
            classes must be the fused systems (in any order).
        device : str
        batch_size : int
        attribute_fusion_dir : str or Path, optional
            Folder written by ``python -m fusion.attributes`` on the attribute systems given
            (named by their ``system.json``, as that command names them).
        """
        names = short_names(system_dirs)
        systems = [load_system(folder, name, device) for folder, name in zip(system_dirs, names, strict=True)]
        # A system is named by its identity (system.json), by its folder only when it has none or
        # when two runs of one system are given together.
        named = [s.identity.name if s.identity else s.name for s in systems]
        if len(set(named)) == len(named):
            for system, name in zip(systems, named, strict=True):
                system.name = name
        transcribers = {settings: settings.load(device)
                        for settings in dict.fromkeys(s.whisper for s in systems if s.whisper)}
        class_systems = [s for s in systems if s.targets.classes]
        fusion = load_checked_fusion(fusion_dir, class_systems) if fusion_dir is not None else None
        attribute_fusion = None
        if attribute_fusion_dir is not None:
            model = load_attribute_fusion(attribute_fusion_dir)
            names = [display_name(s.identity.name if s.identity else folder_system_name(s.folder))
                     for s in systems if s.targets.attributes]
            if sorted(set(names) & set(model.systems)) != sorted(model.systems):
                raise FusionFolderError(f"{attribute_fusion_dir}: fuses {', '.join(model.systems)}; the "
                                        f"attribute systems given are {', '.join(names) or 'none'}: pass "
                                        "exactly the fused systems' folders")
            attribute_fusion = OrderedFusion(model, [names.index(name) for name in model.systems])
        return cls(systems, transcribers, fusion, device, batch_size, attribute_fusion)

    @classmethod
    def from_pretrained(cls, source, device="cpu", batch_size=8, cache_dir=None, pack_weights=False):
        """Load an exported package (``python -m ser.export``): a folder or a Hugging Face id.

        Parameters
        ----------
        source : str or Path
            The package folder, or a Hub id (downloaded once into the Hugging Face cache; offline
            it must be cached or given as a local folder).
        device : str
        batch_size : int
        cache_dir : str or Path, optional
            Hugging Face cache folder for Hub ids.
        pack_weights : bool
            For ONNX systems: start at once on the graphs' mapped weights (False), or repack them
            for this CPU first, for slightly faster clips over long jobs
            (:class:`ser.inference.onnx_runtime.OnnxEmotionModel`). PyTorch systems ignore it.
        """
        folder = resolve_package(source, cache_dir)
        with files_checked_meanwhile(folder) as manifest:
            systems = [load_packaged(folder, entry, device, pack_weights) for entry in manifest["systems"]]
            transcribers = {settings: settings.load(device)
                            for settings in dict.fromkeys(s.whisper for s in systems if s.whisper)}
        fusion = None
        if manifest.get("fusion"):
            # The fusion takes exactly the systems it recorded (identities), as from folders.
            class_systems = [s for s in systems if s.targets.classes]
            fusion = load_checked_fusion(folder / manifest["fusion"], class_systems)
        attribute_fusion = None
        if manifest.get("attribute_fusion"):
            model = load_attribute_fusion(folder / manifest["attribute_fusion"])
            # A system in both fusions may carry another name in the Task 2 one.
            labels = [entry.get("attribute_label", entry.get("label"))
                      for entry, s in zip(manifest["systems"], systems, strict=True) if s.targets.attributes]
            attribute_fusion = OrderedFusion(model, [labels.index(name) for name in model.systems])
        return cls(systems, transcribers, fusion, device, batch_size, attribute_fusion)

    @torch.inference_mode()
    def classify_files(self, paths, progress=False, embeddings=False):
        """Classify audio files; one :class:`Result` per path, in the order given.

        Files are processed in chunks sorted by duration, so a batch holds turns of similar
        lengths (little padding). A file that cannot be read gets its ``error`` set. With
        ``embeddings``, each result also holds every system's pooled vectors.
        """
        paths = [str(p) for p in paths]
        results = [None] * len(paths)
        order = sorted(range(len(paths)), key=lambda i: duration_seconds(paths[i]))
        with tqdm(total=len(paths), desc="classifying", unit="file", disable=not progress) as bar:
            for start in range(0, len(order), FILES_PER_CHUNK):
                chunk = order[start : start + FILES_PER_CHUNK]
                chunk_results = self._classify_chunk([paths[i] for i in chunk], embeddings)
                for index, result in zip(chunk, chunk_results, strict=True):
                    results[index] = result
                bar.update(len(chunk))
        return results

    def classify_file(self, path, embeddings=False):
        """Classify one audio file (SpeechBrain's name); its :class:`Result` (``error`` set if unreadable)."""
        return self.classify_files([path], embeddings=embeddings)[0]

    @torch.inference_mode()
    def classify_batch(self, wavs, sample_rate=None, wav_lens=None, embeddings=False):
        """Classify waveforms held in memory (SpeechBrain's name); one :class:`Result` each.

        Parameters
        ----------
        wavs : array-like, torch.Tensor or list of them
            One waveform ``(samples,)``, a padded batch ``(batch, samples)``, or a list of
            waveforms of any lengths; floats in [-1, 1] or integer PCM.
        sample_rate : int
            Their sample rate (resampled to 16 kHz when it differs). Required: an array does not
            say its rate, and a guessed one would give confident answers on a stretched signal.
        wav_lens : sequence of float, optional
            Relative lengths of a padded batch (SpeechBrain's convention); all 1 if not given.
        embeddings : bool

        Raises
        ------
        ser.io.audio.AudioError
            If a waveform is empty, not finite or of more than two dimensions, or no
            ``sample_rate`` is given.
        """
        if sample_rate is None:
            raise AudioError(f"classify_batch: give sample_rate= (the rate of these waveforms; the "
                             f"systems take {SAMPLE_RATE} Hz and resample others)")
        waveforms = _as_waveform_list(wavs, wav_lens)
        wavs = [as_mono_waveform(w, sample_rate, name=f"waveform {i}") for i, w in enumerate(waveforms)]
        results = [Result(file=f"waveform {i}", flag=audio_flag(wav)) for i, wav in enumerate(wavs)]
        for start in range(0, len(wavs), FILES_PER_CHUNK):
            self._classify_waveforms(results[start : start + FILES_PER_CHUNK],
                                     wavs[start : start + FILES_PER_CHUNK], embeddings)
        return results

    @torch.inference_mode()
    def classify_timeline(self, audio, sample_rate=None, window=3.0, hop=1.0, segment="fixed", vad=None):
        """Emotion over time: classify windows of ``window`` seconds every ``hop`` seconds, or the
        speech segments that a voice activity detector finds (``segment="vad"``).

        Parameters
        ----------
        audio : str, Path, array-like or torch.Tensor
            A file, or a waveform (then give ``sample_rate``).
        sample_rate : int, optional
        window, hop : float
            Seconds, for fixed windows; the last window ends at the end of the audio (a clip
            shorter than ``window`` is one window).
        segment : {"fixed", "vad"}
            ``"vad"``: one row per speech segment of :func:`ser.inference.vad.speech_segments`
            (Silero VAD; the ``vad`` extra), silence gets no row; ``window`` and ``hop`` are unused.
        vad : ser.inference.vad.VadOptions, optional
            Threshold, shortest speech, longest segment, padding (``segment="vad"``).

        Returns
        -------
        list of TimelineRow
            Empty when ``segment="vad"`` finds no speech.
        """
        if segment not in ("fixed", "vad"):
            raise ValueError(f"segment must be 'fixed' or 'vad', got {segment!r}")
        if window <= 0 or hop <= 0:
            raise ValueError(f"window and hop must be positive seconds, got {window} and {hop}")
        if isinstance(audio, (str, Path)):
            wav = load_waveform(audio)
        elif sample_rate is None:
            raise AudioError("classify_timeline: give sample_rate= with a waveform (a file says its own)")
        else:
            wav = as_mono_waveform(audio, sample_rate)
        if segment == "vad":
            from ser.inference.vad import speech_segments

            return self.classify_segments(wav, speech_segments(wav, vad), sample_rate=SAMPLE_RATE)
        size, step = max(1, round(window * SAMPLE_RATE)), max(1, round(hop * SAMPLE_RATE))
        starts = timeline_starts(len(wav), size, step)
        pieces = [wav[start : start + size] for start in starts]
        results = [Result(file=f"{start / SAMPLE_RATE:.2f}s") for start in starts]
        for first in range(0, len(pieces), FILES_PER_CHUNK):
            self._classify_waveforms(results[first : first + FILES_PER_CHUNK],
                                     pieces[first : first + FILES_PER_CHUNK])
        return [
            TimelineRow(start / SAMPLE_RATE, (start + len(piece)) / SAMPLE_RATE, r.label, r.probabilities,
                        r.transcript, r.attributes)
            for start, piece, r in zip(starts, pieces, results, strict=True)
        ]

    @torch.inference_mode()
    def classify_segments(self, audio, segments, sample_rate=None):
        """Classify given stretches of one recording: one :class:`TimelineRow` per ``(start, end)``.

        For segments found elsewhere (a VAD, a diarization, a transcript's turns); each segment
        is classified as a turn of its own (a long one in the systems' windows, averaged).

        Parameters
        ----------
        audio : str, Path, array-like or torch.Tensor
            A file, or a waveform (then give ``sample_rate``).
        segments : sequence of (float, float)
            Start and end seconds; an end past the audio is clipped to it.
        sample_rate : int, optional
            The waveform's rate (required for a waveform; a file says its own).

        Raises
        ------
        ValueError
            If a segment is empty or starts after the end of the audio.
        """
        if isinstance(audio, (str, Path)):
            wav = load_waveform(audio)
        elif sample_rate is None:
            raise AudioError("classify_segments: give sample_rate= with a waveform (a file says its own)")
        else:
            wav = as_mono_waveform(audio, sample_rate)
        bounds = []
        for start, end in segments:
            first, last = round(start * SAMPLE_RATE), min(len(wav), round(end * SAMPLE_RATE))
            if first < 0 or last <= first:
                raise ValueError(f"segment {start:.2f}-{end:.2f} s is empty or outside the audio "
                                 f"({len(wav) / SAMPLE_RATE:.2f} s)")
            bounds.append((first, last))
        pieces = [wav[first:last] for first, last in bounds]
        results = [Result(file=f"{first / SAMPLE_RATE:.2f}s") for first, _ in bounds]
        for index in range(0, len(pieces), FILES_PER_CHUNK):
            self._classify_waveforms(results[index : index + FILES_PER_CHUNK],
                                     pieces[index : index + FILES_PER_CHUNK])
        return [TimelineRow(first / SAMPLE_RATE, last / SAMPLE_RATE, r.label, r.probabilities, r.transcript,
                            r.attributes)
                for (first, last), r in zip(bounds, results, strict=True)]

    def _classify_chunk(self, paths, embeddings=False):
        results = [Result(file=path) for path in paths]
        waveforms = {}
        for index, path in enumerate(paths):
            try:
                waveforms[index] = load_waveform(path)
            except AudioError as error:
                results[index].error = str(error)
                logger.warning("%s", error)
                continue
            flag = results[index].flag = audio_flag(waveforms[index])
            if flag:
                logger.warning("%s: %s; its label is not meaningful (flagged %s)", path, FLAGS[flag], flag)
        if waveforms:
            self._classify_waveforms([results[i] for i in waveforms], list(waveforms.values()), embeddings)
        return results

    def _classify_waveforms(self, results, wavs, embeddings=False):
        """Fill ``results`` (one per 16 kHz mono tensor of ``wavs``): labels, probabilities, attributes."""
        transcripts = {
            key: backend.transcribe_many([w.numpy() for w in wavs], self.batch_size)
            for key, backend in self.transcribers.items()
        }
        per_system, attributes_per_system, vectors = [], [], []
        class_systems = [s for s in self.systems if s.targets.classes]
        attribute_systems = [s for s in self.systems if s.targets.attributes]
        for system in self.systems:
            texts = transcripts[system.whisper] if system.whisper else None
            probs, attributes, pooled = self._outputs(system, wavs, texts, embeddings)
            vectors.append(pooled)
            if system.targets.classes:
                per_system.append(probs)
            if system.targets.attributes:
                attributes_per_system.append(attributes)
        combined = None
        if self.fusion is not None:
            combined = np.asarray(self.fusion.predict_proba(per_system))
        elif per_system:
            combined = np.mean(per_system, axis=0)
        mean_attributes = np.mean(attributes_per_system, axis=0) if attributes_per_system else None
        if self.attribute_fusion is not None:
            mean_attributes = np.asarray(self.attribute_fusion.predict(attributes_per_system))
        for row, result in enumerate(results):
            if combined is not None:
                result.probabilities = self._as_dict(self.classes, combined[row])
                result.label = self.classes[int(np.argmax(combined[row]))]
                result.system_probabilities = {
                    s.name: self._as_dict(self.classes, p[row])
                    for s, p in zip(class_systems, per_system, strict=True)
                }
            if mean_attributes is not None:
                result.attributes = self._as_dict(self.attributes, mean_attributes[row])
                result.system_attributes = {
                    s.name: self._as_dict(self.attributes, a[row])
                    for s, a in zip(attribute_systems, attributes_per_system, strict=True)
                }
            texts = [transcripts[s.whisper][row] for s in self.systems if s.whisper]
            result.transcript = texts[0] if texts else None
            if embeddings:
                result.embeddings = {s.name: v[row] for s, v in zip(self.systems, vectors, strict=True)}
        return results


    @staticmethod
    def _as_dict(names, values):
        return {name: float(v) for name, v in zip(names, values, strict=True)}

    def _outputs(self, system, wavs, texts, embeddings=False):
        """Posteriors ``(n_files, K)`` and attributes ``(n_files, A)`` of one system (None where
        it predicts none), each file's windows averaged; with ``embeddings``, each file's pooled
        vectors ``(n_windows, dim)`` in time order (else None)."""
        items = []  # (file row, window start, window)
        for row, wav in enumerate(wavs):
            for start in window_starts(len(wav), system.window_samples):
                window = wav[start : start + system.window_samples] if system.window_samples else wav
                if len(window) < MIN_SAMPLES:
                    window = torch.nn.functional.pad(window, (0, MIN_SAMPLES - len(window)))
                items.append((row, start, window))
        items.sort(key=lambda item: len(item[2]))
        sums = {"log_probs": torch.zeros(len(wavs), system.targets.n_classes, dtype=torch.float64),
                "attributes": torch.zeros(len(wavs), len(system.targets.attributes), dtype=torch.float64)}
        counts = torch.zeros(len(wavs), dtype=torch.float64)
        pooled = [[] for _ in wavs]
        for first, last in length_batches([len(window) for _, _, window in items], self.batch_size):
            batch = items[first:last]
            rows = torch.tensor([row for row, _, _ in batch])
            lengths = torch.tensor([len(window) for _, _, window in batch], dtype=torch.float32)
            padded = torch.nn.utils.rnn.pad_sequence([w for _, _, w in batch], batch_first=True)
            batch_texts = [texts[row] for row, _, _ in batch] if texts is not None else None
            wav_lens = (lengths / lengths.max()).to(self.device)
            pooled_vectors = system.model.embed(padded.to(self.device), wav_lens, batch_texts)
            outputs = system.model.classify(pooled_vectors)
            if embeddings:
                vectors = pooled_vectors.float().cpu().numpy()
                for (row, window_start, _), vector in zip(batch, vectors, strict=True):
                    pooled[row].append((window_start, vector))
            if "log_probs" in outputs:
                sums["log_probs"].index_add_(0, rows, outputs["log_probs"].exp().double().cpu())
            if "attributes" in outputs:
                sums["attributes"].index_add_(0, rows, outputs["attributes"].double().cpu())
            counts.index_add_(0, rows, torch.ones(len(batch), dtype=torch.float64))
        probs = (sums["log_probs"] / counts[:, None]).numpy() if system.targets.classes else None
        attributes = None
        if system.targets.attributes:
            # The attribute files are clipped to the corpus scale: so is what prediction returns.
            attributes = (sums["attributes"] / counts[:, None]).clamp(*system.attribute_scale).numpy()
        stacked = None
        if embeddings:
            stacked = [np.stack([v for _, v in sorted(p, key=lambda item: item[0])]) for p in pooled]
        return probs, attributes, stacked


def _as_waveform_list(wavs, wav_lens=None):
    """One waveform, a padded batch (with relative lengths) or a list → list of 1-D arrays."""
    if isinstance(wavs, (list, tuple)):
        if wav_lens is not None:
            raise ValueError("wav_lens goes with a padded batch (batch, samples), not a list of waveforms")
        return list(wavs)
    array = wavs.detach().cpu().numpy() if isinstance(wavs, torch.Tensor) else np.asarray(wavs)
    if array.ndim == 1:
        return [array]
    if array.ndim != 2:
        raise AudioError(f"waveforms of shape {array.shape}: expected (samples,) or (batch, samples)")
    if array.shape[1] < MIN_SAMPLES <= array.shape[0]:
        # Rows too short for any encoder: one multichannel clip as soundfile.read returns it.
        raise AudioError(f"waveforms of shape {array.shape}: a 2-D array is a padded batch (batch, samples); "
                         "for one clip of several channels (samples, channels) pass it in a list: [clip]")
    lens = np.ones(len(array)) if wav_lens is None else np.asarray(wav_lens, dtype=np.float64)
    if lens.shape != (len(array),) or ((lens <= 0) | (lens > 1 + 1e-6)).any():
        raise ValueError(f"wav_lens must be {len(array)} relative lengths in (0, 1], got {lens.tolist()}")
    return [row[: max(1, round(length * array.shape[1]))] for row, length in zip(array, lens, strict=True)]


