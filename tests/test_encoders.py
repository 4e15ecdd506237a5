"""Speech and text encoders on real (tiny, local) Hugging Face models, fully offline."""

import json

import pytest
import torch
from transformers import HubertModel, WavLMModel

from ser.io.model_source import ModelNotAvailableError
from ser.nn.encoders import SpeechEncoder, TextEncoder
from ser.nn.tiny_models import STAMP_NAME, build_tiny_models, minilm_path

SAMPLE_RATE = 16000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("hf_cache")


def _speech(seconds, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(int(seconds * SAMPLE_RATE), generator=generator)


def _random_projection_loss(features):
    # A fixed random projection: unlike sum(features ** 2), it is not constant after output_norm.
    weights = torch.randn(features.shape, generator=torch.Generator().manual_seed(0))
    return (features * weights).sum()


def test_wavlm_output_shape_frame_rate_and_padding(tiny, cache_dir):
    encoder = SpeechEncoder(tiny["wavlm"], save_path=cache_dir).eval()
    assert isinstance(encoder.model, WavLMModel)
    assert encoder.output_size == 64
    wavs = torch.stack([torch.cat([_speech(1.0, 1), torch.zeros(2 * SAMPLE_RATE)]), _speech(3.0, 2)])
    with torch.no_grad():
        feats = encoder(wavs, torch.tensor([1 / 3, 1.0]))
    assert feats.shape[0] == 2 and feats.shape[2] == 64
    assert abs(feats.shape[1] / 3.0 - 50.0) < 1.0  # one frame every 20 ms
    valid = int(encoder.frame_lengths(torch.tensor(SAMPLE_RATE)))
    assert abs(valid - round(feats.shape[1] / 3)) <= 1  # relative length convention, +-1 frame
    assert torch.all(feats[0, valid:] == 0) and torch.all(feats[0, :valid].abs().sum(-1) > 0)
    # output_norm: each turn standardised over its valid frames only
    assert feats[0, :valid].mean().abs() < 1e-4 and (feats[0, :valid].std() - 1).abs() < 1e-2


def test_short_turn_is_nearly_unchanged_when_batched_with_a_longer_one(tiny, cache_dir):
    encoder = SpeechEncoder(tiny["wavlm"], save_path=cache_dir).eval()
    short, long = _speech(0.7, 3), _speech(2.0, 4)
    # Pad with noise, not zeros: whatever is in the padding must not reach the valid frames.
    padded = torch.cat([short, 5 * torch.randn(len(long) - len(short))])
    with torch.no_grad():
        alone = encoder(short[None], torch.tensor([1.0]))[0]
        batched = encoder(torch.stack([padded, long]), torch.tensor([len(short) / len(long), 1.0]))
    assert alone.shape[0] == int(encoder.frame_lengths(torch.tensor(len(short))))
    assert torch.allclose(batched[0, : alone.shape[0]], alone, atol=1e-4)
    assert torch.all(batched[0, alone.shape[0] :] == 0)


def test_frozen_feature_extractor_gets_no_gradient_but_transformer_does(tiny, cache_dir):
    encoder = SpeechEncoder(tiny["wavlm"], save_path=cache_dir, freeze_feature_extractor=True)
    encoder.train()
    assert not encoder.model.feature_extractor.training and encoder.model.encoder.training
    cnn_outputs = []
    encoder.model.feature_extractor.register_forward_hook(
        lambda module, inputs, output: cnn_outputs.append(output)
    )
    feats = encoder(torch.stack([_speech(0.5, 5), _speech(0.5, 6)]), torch.tensor([0.6, 1.0]))
    assert not cnn_outputs[0].requires_grad  # the CNN built no autograd graph at all
    _random_projection_loss(feats).backward()
    cnn = list(encoder.model.feature_extractor.parameters())
    assert cnn and all(p.grad is None and not p.requires_grad for p in cnn)
    transformer = list(encoder.model.encoder.parameters())
    assert all(p.grad is not None for p in transformer)
    assert sum(p.grad.abs().sum() for p in transformer) > 0


@pytest.mark.parametrize("kind, model_class", [("wavlm", WavLMModel), ("hubert", HubertModel)])
def test_trained_cnn_runs_contiguous_with_the_same_outputs_gradients_and_checkpoint(tiny, cache_dir, kind,
                                                                                 model_class):
    from ser.nn.cnn_layout import ContiguousLayerNormConv

    encoder = SpeechEncoder(tiny[kind], save_path=cache_dir, freeze_feature_extractor=False)
    reference = model_class.from_pretrained(tiny[kind])  # Hugging Face's own layers
    layers = encoder.model.feature_extractor.conv_layers
    assert all(isinstance(layer, ContiguousLayerNormConv) for layer in layers)
    assert encoder.model.state_dict().keys() == reference.state_dict().keys()
    wav = torch.stack([_speech(1.0, 11), _speech(1.0, 12)])
    ours, theirs = encoder.model.feature_extractor(wav), reference.feature_extractor(wav)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    _random_projection_loss(ours).backward()
    _random_projection_loss(theirs).backward()
    for (name, mine), (_, real) in zip(encoder.model.feature_extractor.named_parameters(),
                                       reference.feature_extractor.named_parameters(), strict=True):
        torch.testing.assert_close(mine.grad, real.grad, atol=1e-3, rtol=1e-3, msg=name)
    frozen = SpeechEncoder(tiny[kind], save_path=cache_dir, freeze_feature_extractor=True)
    assert not any(isinstance(layer, ContiguousLayerNormConv)
                   for layer in frozen.model.feature_extractor.conv_layers)


def test_fully_frozen_encoder_gets_no_gradient(tiny, cache_dir):
    encoder = SpeechEncoder(tiny["wavlm"], save_path=cache_dir, freeze=True)
    encoder.train()
    assert not encoder.model.training  # frozen layers keep dropout off
    head = torch.nn.Linear(encoder.output_size, 8)
    feats = encoder(_speech(0.5, 7)[None], torch.tensor([1.0]))
    assert not feats.requires_grad
    head(feats.mean(dim=1)).sum().backward()
    assert head.weight.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in encoder.parameters())


def test_all_hidden_states_in_train_mode_keep_every_layer(tiny, cache_dir):
    # The tiny model keeps wavlm-large's layerdrop of 0.1, so layers would be skipped here.
    saved = json.loads((tiny["wavlm"] / "config.json").read_text())
    assert saved["layerdrop"] > 0
    encoder = SpeechEncoder(tiny["wavlm"], save_path=cache_dir, output_all_hiddens=True)
    encoder.train()
    assert encoder.model.config.layerdrop == 0.0
    counts = set()
    with torch.no_grad():
        for seed in range(40):  # P(no layer skipped in 40) = 0.9**40
            hidden = encoder(_speech(0.3, seed)[None], torch.tensor([1.0]))
            counts.add(hidden.shape[0])
    assert counts == {saved["num_hidden_layers"] + 1}
    assert hidden.shape[1:] == (1, int(encoder.frame_lengths(torch.tensor(4800))), 64)


def test_hubert_tiny_model_loads_and_runs(tiny, cache_dir):
    encoder = SpeechEncoder(
        tiny["hubert"], save_path=cache_dir, freeze_feature_extractor=True, output_norm=False
    ).eval()
    assert isinstance(encoder.model, HubertModel)
    with torch.no_grad():
        feats = encoder(torch.stack([_speech(1.0, 8), _speech(1.0, 9)]), torch.tensor([0.5, 1.0]))
    assert feats.shape == (2, 49, 64)
    assert torch.isfinite(feats).all()
    assert torch.all(feats[0, 25:] == 0) and feats[0, :24].abs().sum() > 0


def test_text_encoder_on_pretrained_minilm_offline():
    encoder = TextEncoder(minilm_path(), freeze=True)
    assert encoder.output_size == 384
    texts = ["I am so happy to be here today!", "", "What?"]
    hidden, lengths = encoder(texts)
    n_tokens = [len(encoder.tokenizer(text)["input_ids"]) for text in texts]
    assert hidden.shape == (3, max(n_tokens), 384)
    assert torch.allclose(lengths, torch.tensor(n_tokens) / max(n_tokens))
    assert n_tokens[1] == 2  # the empty transcript is just [CLS] [SEP]
    assert torch.all(hidden[1, 2:] == 0) and hidden[1, :2].abs().sum() > 0
    assert not hidden.requires_grad
    # Pretrained, not random: the same sentence gives the same features alone or batched.
    alone, _ = encoder([texts[2]])
    assert torch.allclose(alone[0], hidden[2, : n_tokens[2]], atol=1e-5)


def test_text_encoder_on_tiny_roberta_trains_and_truncates(tiny):
    encoder = TextEncoder(tiny["roberta"], max_length=12).train()
    texts = ["", "We talked about the news.", "word " * 50]
    hidden, lengths = encoder(texts)
    assert hidden.shape == (3, 12, 64)
    n_tokens = len(encoder.tokenizer(texts[1])["input_ids"])
    assert 2 < n_tokens < 12
    assert lengths.tolist() == pytest.approx([2 / 12, n_tokens / 12, 1.0])  # "<s></s>"; truncated
    assert torch.all(hidden[1, n_tokens:] == 0)
    _random_projection_loss(hidden).backward()
    assert all(p.grad is not None for p in encoder.model.encoder.parameters())
    assert encoder.model.pooler is None  # the unused pooler is dropped


def test_missing_model_id_offline_gives_a_clear_error(cache_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="must be cached or given as a local folder"):
        SpeechEncoder("nobody-here/not-a-wavlm", save_path=cache_dir)
    with pytest.raises(ModelNotAvailableError, match="'nobody-here/not-a-roberta'"):
        TextEncoder("nobody-here/not-a-roberta")
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        TextEncoder(str(tmp_path / "no" / "such" / "model"))
    with pytest.raises(ModelNotAvailableError, match="has no config.json"):
        SpeechEncoder(tmp_path, save_path=cache_dir)


def test_tiny_models_are_cached_deterministic_and_rebuilt_when_stale(tiny, tmp_path):
    weights = tiny["wavlm"] / "model.safetensors"
    built_at = weights.stat().st_mtime_ns
    again = build_tiny_models(tiny["wavlm"].parent)
    assert again == tiny and weights.stat().st_mtime_ns == built_at  # cached: not rebuilt
    elsewhere = build_tiny_models(tmp_path)
    for name in tiny:
        assert (elsewhere[name] / "model.safetensors").read_bytes() == (
            tiny[name] / "model.safetensors"
        ).read_bytes()
    stamp = elsewhere["hubert"] / STAMP_NAME
    stamp.write_text(json.dumps({"stale": True}))
    build_tiny_models(tmp_path)
    assert json.loads(stamp.read_text())["options"]["model"] == "hubert"  # a ser.derived record
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_bad_input_gives_clear_errors(tiny, cache_dir):
    speech = SpeechEncoder(tiny["wavlm"], save_path=cache_dir)
    with pytest.raises(ValueError, match=r"shape \(batch, samples\)"):
        speech(torch.zeros(1, 1, 8000))
    with pytest.raises(ValueError, match="200 samples are too short"):
        speech(torch.zeros(2, 200))
    with pytest.raises(ValueError, match=r"relative lengths in \(0, 1\]"):
        speech(torch.zeros(2, 8000), torch.tensor([0.0, 1.0]))
    text = TextEncoder(tiny["roberta"])
    with pytest.raises(TypeError, match="transcript 1 is NoneType"):
        text(["fine", None])
    with pytest.raises(ValueError, match="non-empty list of strings"):
        text("a bare string")


def test_speech_encoder_keeps_its_class_for_ssl_models_and_copies(tiny, cache_dir):
    """SpeechEncoder picks the Whisper encoder only for Whisper sources; copies stay SpeechEncoders."""
    import copy

    encoder = SpeechEncoder(tiny["hubert"], save_path=cache_dir).eval()
    assert type(encoder) is SpeechEncoder and isinstance(encoder.model, HubertModel)
    twin = copy.deepcopy(encoder)
    assert type(twin) is SpeechEncoder
    wav = _speech(0.5, 9)[None]
    with torch.no_grad():
        assert torch.equal(twin(wav), encoder(wav))
