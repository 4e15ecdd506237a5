"""A system's network as a package holds it: its YAML for inference and its encoders' configurations.

:func:`inference_yaml` keeps the network part of a system's ``hyperparams.yaml`` (``model`` and
the keys inference reads) with each encoder pointing into the package
(``<system_folder>/encoders/<name>``); :func:`copy_encoder_config` copies what builds an encoder
(configuration, preprocessor, tokenizer) without its weights, which the package's
``model.safetensors`` holds. :mod:`ser.inference.export` writes packages with them.
"""

import io
import json
import shutil
from pathlib import Path

import ruamel.yaml
from ruamel.yaml.comments import TaggedScalar

from ser.errors import UserInputError
from ser.inference.package import PACKAGE_KEY
from ser.io.model_source import resolve_model_source
from ser.nn.tiny_models import STAMP_NAME as TINY_MODEL_STAMP

__all__ = [
    "ENCODER_TAGS",
    "INFERENCE_KEYS",
    "ExportError",
    "copy_encoder_config",
    "encoder_nodes",
    "inference_yaml",
    "unique_folder_name",
]

ENCODER_TAGS = (
    "!new:ser.nn.encoders.SpeechEncoder",
    "!new:ser.nn.encoders.WhisperSpeechEncoder",
    "!new:ser.nn.encoders.TextEncoder",
)
# Weight files of a pretrained encoder's folder: the package's model.safetensors replaces them.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".ot")
# Keys of the training YAML that inference reads besides the network.
INFERENCE_KEYS = ("eval_max_duration", "n_classes", "classes", "attributes", "attribute_scale")
class ExportError(UserInputError, ValueError):
    """Systems or a fusion that cannot be exported (names the folder and the problem)."""


def _tagged(value, tag):
    return TaggedScalar(value=value, tag=tag)


def encoder_nodes(node):
    """Every mapping of ``node`` (a loaded YAML, recursively) that builds an encoder, once each.

    Example
    -------
    >>> document = ruamel.yaml.YAML().load("{a: !new:ser.nn.encoders.TextEncoder {source: x}, b: 1}")
    >>> [dict(node) for node in encoder_nodes(document)]
    [{'source': 'x'}]
    """
    found = []
    if isinstance(node, dict):
        tag = getattr(getattr(node, "tag", None), "value", None)
        if tag in ENCODER_TAGS:
            found.append(node)
        for value in node.values():
            found.extend(encoder_nodes(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(encoder_nodes(value))
    unique = {id(n): n for n in found}  # an encoder shared by two branches appears twice
    return list(unique.values())


def inference_yaml(yaml_text, encoder_names):
    """The network part of a system's ``hyperparams.yaml``, encoders pointing into the package.

    Keeps ``model`` (with everything it builds) and :data:`INFERENCE_KEYS`; each encoder gets
    ``source: !ref <system_folder>/encoders/<name>`` and ``pretrained: False`` (its weights
    come from ``model.safetensors``).

    Parameters
    ----------
    yaml_text : str
        The ``hyperparams.yaml`` train.py saved (references resolved, objects anchored).
    encoder_names : list of str
        One folder name per encoder, in the order they appear in the YAML.

    Returns
    -------
    (str, list of str)
        The YAML text and the original ``source`` of each encoder.

    Example
    -------
    >>> text = '''
    ... data_folder: /data/msp
    ... eval_max_duration: 30.0
    ... enc: &id1 !new:ser.nn.encoders.TextEncoder
    ...   source: /home/me/roberta
    ...   save_path: /home/me/cache
    ... model: !new:ser.nn.model.EmotionClassifier
    ...   head: !new:torch.nn.Linear
    ...     in_features: 4
    ...     out_features: 8
    ...   text_branches:
    ...   - !new:ser.nn.model.TextBranch
    ...     encoder: *id1
    ...     pooling: !new:ser.nn.pooling.MeanPooling
    ... '''
    >>> out, sources = inference_yaml(text, ["roberta"])
    >>> sources, "/home" in out, "/data" in out
    (['/home/me/roberta'], False, False)
    >>> print(out.split("model:")[1].split("head:")[0].strip())
    !new:ser.nn.model.EmotionClassifier
    >>> "source: !ref <system_folder>/encoders/roberta" in out
    True
    """
    yaml = ruamel.yaml.YAML()
    document = yaml.load(yaml_text)
    if "model" not in document:
        raise ExportError("the hyperparameters define no 'model'")
    encoders = encoder_nodes(document["model"])
    if len(encoders) != len(encoder_names):
        raise ExportError(f"{len(encoders)} encoders in the model, {len(encoder_names)} names given")
    sources = []
    for node, name in zip(encoders, encoder_names, strict=True):
        sources.append(str(node["source"]))
        node["source"] = _tagged(f"<{PACKAGE_KEY}>/encoders/{name}", "!ref")
        node["save_path"] = _tagged(f"<{PACKAGE_KEY}>/encoders", "!ref")
        node["pretrained"] = False
    kept = ruamel.yaml.comments.CommentedMap()
    kept[PACKAGE_KEY] = _tagged("", "!PLACEHOLDER")
    for key in INFERENCE_KEYS:
        if key in document:
            kept[key] = document[key]
    kept["model"] = document["model"]
    stream = io.StringIO()
    yaml.dump(kept, stream)
    # The training file's comments land in odd places once keys are dropped: leave them out.
    lines = stream.getvalue().splitlines()
    body = [line for line in lines if line.strip() and not line.strip().startswith("#")]
    header = ["# Inference hyperparameters of an exported system (python -m ser.export).",
              f"# <{PACKAGE_KEY}> is set by the loader to this system's folder in the package."]
    return "\n".join(header + body) + "\n", sources


def unique_folder_name(source, taken):
    """The last part of ``source`` (a path or Hub id), made unique among ``taken`` (which it joins).

    Example
    -------
    >>> taken = {"wavlm"}
    >>> unique_folder_name("/models/wavlm/", taken), unique_folder_name("microsoft/wavlm", taken)
    ('wavlm_2', 'wavlm_3')
    """
    base = Path(str(source).rstrip("/")).name or "encoder"
    name, index = base, 2
    while name in taken:
        name, index = f"{base}_{index}", index + 1
    taken.add(name)
    return name


def copy_encoder_config(source, cache, target):
    """Copy what builds an encoder (config, preprocessor, tokenizer) into ``target``, not its weights.

    ``source`` is resolved as the encoder resolves it (a folder, or a Hub id in ``cache``);
    JSON files lose the entries that record where they were built.
    """
    local = Path(resolve_model_source(source, cache))
    target.mkdir(parents=True)
    for path in sorted(local.iterdir()):
        # The tiny models' build stamp records the inputs they were made from, not how to build one.
        if path.is_file() and not path.name.endswith(_WEIGHT_SUFFIXES) and path.name != TINY_MODEL_STAMP:
            if path.suffix == ".json":
                _write_clean_json(path, target / path.name)
            else:
                shutil.copy2(path, target / path.name)


def _write_clean_json(source, target):
    """Copy a JSON file, dropping the ``_name_or_path`` entries that record where it was built."""
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        shutil.copy2(source, target)
        return
    if isinstance(data, dict):
        for key in ("_name_or_path", "name_or_path"):
            data.pop(key, None)
    target.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
