"""The exported model package: its layout, and how a system is rebuilt from it.

``python -m ser.export`` writes one self-contained folder (see :mod:`ser.inference.export`)::

    my_model/
      ser_package.json           what is inside: systems (name, fusion label, folder), fusion, classes
      README.md                  model card (Hugging Face format)
      systems/system_d/
        hyperparams.yaml         the network only, paths relative to <system_folder>
        model.safetensors        the best checkpoint's weights (no optimizer, scheduler or loader state)
        encoders/<name>/         config.json, preprocessor and tokenizer files (no weights)
        transcriber.json         text systems: Whisper backend, model, decoding options
        metrics.json             dev results of train.py
      whisper/<name>/            the Whisper model, when training used a local folder
      fusion/fusion_model.joblib the fitted fusion (optional)

Nothing in it names a path of the machine that trained it: ``hyperparams.yaml`` refers to
``<system_folder>``, which :func:`load_packaged_system` sets to wherever the package lies now.
"""

import json
from pathlib import Path

from ser.errors import UserInputError
from ser.io.model_source import resolve_model_source

__all__ = [
    "MANIFEST",
    "FORMAT",
    "PackageError",
    "resolve_package",
    "read_manifest",
    "load_packaged_system",
]

#: The file that makes a folder a package (and names what it holds).
MANIFEST = "ser_package.json"
FORMAT = "msp-ser-package/1"
WEIGHTS = "model.safetensors"
HPARAMS = "hyperparams.yaml"
TRANSCRIBER = "transcriber.json"
#: The placeholder of a packaged system's own folder in its ``hyperparams.yaml``.
PACKAGE_KEY = "system_folder"


class PackageError(UserInputError, ValueError):
    """A folder that is not a usable exported package (names the file and the problem)."""


def resolve_package(source, cache_dir=None):
    """A local folder holding the package ``source``: a folder, or a Hugging Face id (cached).

    Raises
    ------
    ser.io.model_source.ModelNotAvailableError
        If the folder has no ``ser_package.json``, or the id is neither cached nor downloadable
        (offline: it must be cached or given as a local folder).

    Example
    -------
    >>> import tempfile
    >>> resolve_package(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.io.model_source.ModelNotAvailableError: model folder /... has no ser_package.json: ...
    """
    return Path(resolve_model_source(source, cache_dir, marker=MANIFEST,
                                     kind="a model package written by python -m ser.export"))


def read_manifest(folder):
    """The package's ``ser_package.json``, checked.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / MANIFEST).write_text('{"format": "other/9"}')
    >>> read_manifest(folder)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.inference.package.PackageError: .../ser_package.json: format 'other/9', this version reads ...
    """
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise PackageError(f"{path}: unreadable package manifest ({error})") from None
    if manifest.get("format") != FORMAT:
        raise PackageError(f"{path}: format {manifest.get('format')!r}, this version reads {FORMAT}")
    for entry in manifest.get("systems") or []:
        if not (Path(folder) / entry["folder"] / WEIGHTS).is_file():
            raise PackageError(f"{Path(folder) / entry['folder'] / WEIGHTS}: missing from the package")
    if not manifest.get("systems"):
        raise PackageError(f"{path}: the package lists no system")
    return manifest


def load_packaged_system(folder, device="cpu"):
    """Rebuild a packaged system's network and load its weights.

    Parameters
    ----------
    folder : Path
        ``<package>/systems/<name>``.
    device : str

    Returns
    -------
    (dict, torch.nn.Module, dict or None)
        The hyperparameters, the model (eval mode, on ``device``) and the Whisper settings
        (``transcriber.json``, with the model path made absolute) for text systems.
    """
    from hyperpyyaml import load_hyperpyyaml
    from safetensors.torch import load_file

    folder = Path(folder)
    package = folder.parent.parent
    with open(folder / HPARAMS, encoding="utf-8") as stream:
        hparams = load_hyperpyyaml(stream, {PACKAGE_KEY: str(folder)})
    model = hparams["model"]
    try:
        model.load_state_dict(load_file(folder / WEIGHTS), strict=True)
    except RuntimeError as error:
        raise PackageError(f"{folder / WEIGHTS}: does not fit {folder / HPARAMS} ({error})") from None
    model.to(device).eval()
    transcriber = None
    if (folder / TRANSCRIBER).is_file():
        transcriber = json.loads((folder / TRANSCRIBER).read_text(encoding="utf-8"))
        if transcriber.get("packaged"):
            transcriber["model"] = str(package / transcriber["model"])
    return hparams, model, transcriber
