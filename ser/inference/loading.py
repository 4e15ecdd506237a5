"""Loading trained systems for inference: ``train.py`` folders, exported packages, the fusion.

A :class:`LoadedSystem` is one network in eval mode with what inference needs to feed it: its
window length, its Whisper settings (text systems), what it predicts and who it is. Folders are
checked against their ``system.json`` (the checkpoint about to be loaded is the one it names,
byte for byte), and a fusion only takes the systems it was trained on
(:func:`ser.io.system_folder.match_identities`).
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hyperpyyaml import load_hyperpyyaml
from ruamel.yaml import YAMLError

from ser.asr import WhisperSettings
from ser.emotions import EMOTIONS
from ser.fusion_model import load_fusion, load_fusion_identities
from ser.inference.package import WEIGHTS, PackageError, load_packaged_system
from ser.io.audio import SAMPLE_RATE
from ser.io.system_folder import (
    CHECKPOINTS_DIR,
    HPARAMS_FILE,
    IDENTITY_FILE,
    MODEL_FILE,
    SystemFolderError,
    SystemIdentity,
    SystemIdentityError,
    fingerprint_file,
    match_identities,
    read_identity,
)
from ser.targets import Targets

logger = logging.getLogger(__name__)

__all__ = ["LoadedSystem", "load_system", "load_packaged", "load_checked_fusion", "OrderedFusion"]

# Objects of a training run that inference must not build: they point to the training paths
# (which may have moved) and would create folders and files there.
_TRAINING_ONLY = {"checkpointer": None, "train_logger": None}
#: The file a transcription writes beside its transcripts: the Whisper settings it decoded with.
TRANSCRIPTS_OPTIONS = "transcripts_options.json"


@dataclass
class LoadedSystem:
    """One trained sub-system, ready for inference."""

    name: str
    folder: Path
    model: torch.nn.Module
    window_samples: int | None
    #: The Whisper that transcribes its audio, None for speech-only systems.
    whisper: WhisperSettings | None = None
    #: What it predicts (classes and/or attributes), from its YAML.
    targets: Targets = field(default_factory=lambda: Targets(classes=EMOTIONS))
    #: The corpus scale its attributes are clipped to.
    attribute_scale: tuple = (1.0, 7.0)
    #: Who it is (``system.json``); None for a folder trained before identities were written.
    identity: SystemIdentity | None = None
    #: Its name in the fusion model (``Sub-System D``), when known from a package.
    label: str | None = None


def load_system(folder, name=None, device="cpu"):
    """Rebuild a trained sub-system from its ``train.py`` folder, with its best checkpoint.

    Parameters
    ----------
    folder : str or Path
        Holds ``hyperparams.yaml``, ``save/CKPT+*`` and (written by ``train.py``) ``system.json``.
    name : str, optional
        Defaults to the folder name.
    device : str

    Returns
    -------
    LoadedSystem
        The model in eval mode on ``device``; ``identity`` is the folder's
        :class:`ser.io.system_folder.SystemIdentity` (None for a folder trained before they were
        written).

    Raises
    ------
    SystemFolderError
        If the folder has no ``hyperparams.yaml`` or no checkpoint, or its checkpoint is not the
        one its ``system.json`` names (:class:`ser.io.system_folder.SystemIdentityError`); a damaged
        checkpoint is a :class:`ser.io.checkpoints.CheckpointError` naming it.
    """
    folder = Path(folder)
    yaml_path = folder / HPARAMS_FILE
    if not yaml_path.is_file():
        raise SystemFolderError(f"{folder}: no hyperparams.yaml (not a system folder written by train.py)")
    # Here, not at the top: SpeechBrain's checkpointer (and its import of SpeechBrain, 0.6 s) is for
    # train.py folders only, so a program loading an ONNX package never imports it.
    from ser.io.checkpoints import AtomicCheckpointer, dev_score_rank

    identity = read_identity(folder, required=False)
    with open(yaml_path, encoding="utf-8") as stream:
        try:
            hparams = load_hyperpyyaml(stream, _TRAINING_ONLY)
        except YAMLError as error:
            reason = " ".join(str(error).split())[:200]
            raise SystemFolderError(f"{yaml_path}: not valid YAML ({reason}); damaged: restore it from a "
                                    "copy of this run") from None
    model = hparams["model"]
    # The checkpoint folder is found next to the YAML, so a moved results folder still loads.
    checkpointer = AtomicCheckpointer(folder / CHECKPOINTS_DIR, recoverables={"model": model})
    checkpoint = checkpointer.find_checkpoint(importance_key=dev_score_rank)
    if checkpoint is None:
        raise SystemFolderError(
            f"{folder / CHECKPOINTS_DIR}: no checkpoint "
            "(a --debug run keeps them only with --debug_persistently)"
        )
    if identity is not None:
        _check_checkpoint(identity, checkpoint.path, folder)
    checkpointer.load_checkpoint(checkpoint)
    score = checkpoint.meta.get("score", checkpoint.meta.get("macro_f1"))
    logger.info("%s: loaded %s (dev score %s)", folder, checkpoint.path.name, score)
    model.to(device).eval()
    whisper = None
    if model.uses_text:
        whisper = _training_whisper(hparams)
    return _loaded_system(name or folder.name, folder, hparams, model, whisper, identity=identity)


def load_packaged(folder, entry, device="cpu", pack_weights=False):
    """A system of an exported package (:mod:`ser.inference.package`), ``entry`` being its manifest row.

    The row's ``runtime`` (``onnx``, ``onnx-int8``; PyTorch when absent) picks the network that runs;
    ``pack_weights`` is :class:`ser.inference.onnx_runtime.OnnxEmotionModel`'s (ONNX only).
    """
    runtime = entry.get("runtime", "pytorch")
    if runtime != "pytorch":
        from ser.inference.onnx_runtime import load_onnx_system

        hparams, model, transcriber = load_onnx_system(Path(folder) / entry["folder"], runtime, device,
                                                          pack_weights)
    else:
        from safetensors import SafetensorError

        try:
            hparams, model, transcriber = load_packaged_system(Path(folder) / entry["folder"], device)
        except SafetensorError as error:
            # Damaged after its fingerprint was taken (or its fingerprints rewritten to fit).
            reason = " ".join(str(error).split())[:200]
            raise PackageError(f"{Path(folder) / entry['folder'] / WEIGHTS}: unreadable weights ({reason}); "
                               "damaged: restore it or export the package again") from None
    whisper = WhisperSettings.from_dict(transcriber) if transcriber is not None else None
    # Its identity (system.json) is what the package's fusion checks, as for folders.
    identity = read_identity(Path(folder) / entry["folder"], required=True)
    return _loaded_system(entry["name"], Path(folder) / entry["folder"], hparams, model, whisper,
                          label=entry.get("label"), identity=identity)


def _loaded_system(name, folder, hparams, model, whisper, label=None, identity=None):
    limit = hparams.get("eval_max_duration")
    window = int(limit * SAMPLE_RATE) if limit else None
    scale = tuple(hparams.get("attribute_scale") or (1.0, 7.0))
    return LoadedSystem(name, Path(folder), model, window, whisper, Targets.from_hparams(hparams), scale,
                        identity, label)


def _check_checkpoint(identity, checkpoint_dir, folder):
    """The checkpoint about to be loaded is the one ``system.json`` describes (same bytes)."""
    where = folder / IDENTITY_FILE
    if checkpoint_dir.name != identity.checkpoint:
        raise SystemIdentityError(
            f"{where}: names checkpoint {identity.checkpoint}, but the best one in {checkpoint_dir.parent} "
            f"is {checkpoint_dir.name}: re-run train.py on this folder to evaluate it again"
        )
    model_file = checkpoint_dir / MODEL_FILE
    if model_file.is_file() and fingerprint_file(model_file) != identity.fingerprint:
        raise SystemIdentityError(
            f"{model_file}: not the checkpoint {where} describes (its fingerprint differs): "
            "replaced or damaged; restore it or re-run train.py"
        )


def _training_whisper(hparams):
    """The Whisper of a text system's YAML, decoding as its training transcripts were decoded."""
    folder = hparams.get("whisper_folder")
    path = Path(folder) / TRANSCRIPTS_OPTIONS if folder else None
    settings = {"backend": hparams["whisper_backend"], "model": str(hparams["whisper_model"])}
    if path is None or not path.is_file():
        logger.warning("no %s: Whisper decodes with its default options", path)
        return WhisperSettings.from_dict(settings)
    # The options file also names the backend and model (as the transcription resolved them):
    # the YAML's are the ones to load here, the file's decoding options the ones to use.
    return WhisperSettings.from_dict({**settings, "options": json.loads(path.read_text())})


def load_checked_fusion(fusion_dir, systems):
    """The fused model of ``fusion_dir``, fed the loaded systems' posteriors in its own order.

    The fusion records the identities (``system.json``) of the systems it was trained on; the
    loaded systems must be exactly those (:func:`ser.io.system_folder.match_identities`), wherever
    their folders are.
    """
    model = load_fusion(fusion_dir)
    expected = load_fusion_identities(fusion_dir)
    unknown = [s.folder for s in systems if s.identity is None]
    if unknown:
        raise SystemIdentityError(
            f"{Path(unknown[0]) / IDENTITY_FILE}: missing, so this system cannot be checked against the "
            f"fusion {fusion_dir}; re-run the same train.py command on it (it only evaluates and writes it)"
        )
    order = match_identities(expected, [(str(s.folder), s.identity) for s in systems], str(fusion_dir))
    return OrderedFusion(model, order)


class OrderedFusion:
    """Feeds a fusion model the systems' posteriors in the order it was trained with."""

    def __init__(self, model, order):
        self.model, self.order = model, order

    def predict_proba(self, blocks):
        return self.model.predict_proba([blocks[i] for i in self.order])

    def predict(self, blocks):
        """A Task 2 fusion's values (:class:`ser.fusion_model.AttributeFusion`), its inputs reordered."""
        return self.model.predict([blocks[i] for i in self.order])
