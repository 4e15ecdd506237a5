"""Where a pretrained model's files are: a local folder, the Hugging Face cache, or a download.

Resolved before any model is built, so that a model that cannot be reached (offline, typo in
the id, folder without ``config.json``) fails at once with one clear message saying that it
must be cached or given as a local folder.
"""

import logging
import os
from pathlib import Path

from ser.errors import UserInputError

logger = logging.getLogger(__name__)

__all__ = ["ModelNotAvailableError", "resolve_model_source"]

# Files a Hub download may skip: weights for other frameworks.
_IGNORED_DOWNLOADS = ["*.h5", "*.msgpack", "*.onnx", "*.ot", "*.tflite", "flax_*", "tf_*"]


class ModelNotAvailableError(UserInputError, FileNotFoundError):
    """A pretrained model is neither a local folder nor available from the Hugging Face cache."""


def _hub_offline():
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on") for name in names)


def _looks_like_path(source):
    # Hub ids are "name" or "owner/name"; anything else is meant as a folder.
    return os.path.isabs(source) or source.startswith((".", "~")) or source.count("/") > 1


def resolve_model_source(source, cache_dir=None, marker="config.json", kind="a Hugging Face model folder"):
    """Return a local folder holding the model ``source`` (a Hub id or a local folder).

    A Hub id is looked up in ``cache_dir`` and then in the default Hugging Face cache; it is
    downloaded into ``cache_dir`` only when downloads are allowed (``HF_HUB_OFFLINE`` unset).

    Parameters
    ----------
    source : str or Path
        Hub id such as ``"microsoft/wavlm-large"``, or a folder with ``config.json``.
    cache_dir : str or Path, optional
        Hugging Face cache folder to look in and download to.
    marker, kind : str
        The file that makes a folder a model of the expected kind, and that kind in words
        (``config.json`` for a Hugging Face model; an exported package has its own).

    Returns
    -------
    str
        Path of a folder with the model's ``config.json`` and weights.

    Raises
    ------
    ModelNotAvailableError
        If the folder does not exist or has no ``config.json``, or if the Hub id is not cached
        and cannot be downloaded.

    Example
    -------
    >>> import tempfile
    >>> resolve_model_source(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.io.model_source.ModelNotAvailableError: model folder /... has no config.json...
    """
    source = str(source)
    folder = Path(source).expanduser()
    if folder.is_dir():
        if not (folder / marker).is_file():
            raise ModelNotAvailableError(f"model folder {folder} has no {marker}: it is not {kind}")
        return str(folder)
    if _looks_like_path(source) or folder.exists():
        raise ModelNotAvailableError(f"model folder {source} does not exist (or is not a folder)")
    # Imported for Hub ids only: it takes a quarter of an ONNX package's start-up.
    from huggingface_hub import snapshot_download

    for cache in dict.fromkeys([cache_dir, None]):  # the given cache first, then the default one
        try:
            local = snapshot_download(
                source, cache_dir=None if cache is None else str(cache), local_files_only=True
            )
        except Exception:  # noqa: BLE001 - any lookup failure just means "not cached here"
            continue
        if (Path(local) / marker).is_file():
            return local

    not_cached = (
        f"model {source!r} is not in the Hugging Face cache "
        f"({'cache_dir ' + str(cache_dir) + ' or ' if cache_dir else ''}the default cache)"
    )
    if _hub_offline():
        raise ModelNotAvailableError(
            f"{not_cached} and downloads are off (HF_HUB_OFFLINE=1): it must be cached or given "
            "as a local folder (download it once while online, or pass the folder as source)"
        )
    try:
        logger.info("downloading %s into %s", source, cache_dir or "the default cache")
        return snapshot_download(
            source,
            cache_dir=None if cache_dir is None else str(cache_dir),
            ignore_patterns=_IGNORED_DOWNLOADS,
        )
    except Exception as error:
        raise ModelNotAvailableError(
            f"{not_cached} and could not be downloaded ({type(error).__name__}: {error}): it must "
            "be cached or given as a local folder"
        ) from error
