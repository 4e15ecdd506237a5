"""The five system YAMLs as they are (no profile) follow the paper, then the authors' recipe.

Each YAML is loaded with its own values; only the model sources point at the tiny local
models (nothing can be downloaded) and the dimensions follow them. Checked: optimizer steps per
epoch on MSP-like durations, the frozen CNN of every speech encoder, layer drop left active.
"""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataset import DynamicItemDataset

from bench.padding import msp_like_durations
from ser.nn.encoders import SpeechEncoder
from ser.training.batching import loader_options
from ser.training.overrides import top_level_keys
from tests.conftest import SYSTEMS

ROOT = Path(__file__).resolve().parents[1]
# Turns per optimizer step: the paper's 16 for A (§6.1; B is A, C takes A's), the authors' 8 for D, E.
GLOBAL_BATCH = {"a": 16, "b": 16, "c": 16, "d": 8, "e": 8}


@pytest.fixture(scope="module")
def systems(tiny_models, tmp_path_factory):
    """Each system's hparams, loaded from its YAML with the tiny models as sources."""
    loaded = {}
    for system in SYSTEMS:
        path = ROOT / "hparams" / f"system_{system}.yaml"
        text = path.read_text()
        keys = top_level_keys(text)
        overrides = {
            "data_folder": str(tmp_path_factory.mktemp("no_corpus")),
            "results_folder": str(tmp_path_factory.mktemp(f"results_{system}")),
            "wavlm_hub": str(tiny_models / "wavlm"),
            "hubert_hub": str(tiny_models / "hubert"),
            "text_hub": str(tiny_models / "roberta"),
            "speech_dim": 64,
            "hubert_dim": 64,
            "text_dim": 64,
        }
        loaded[system] = load_hyperpyyaml(text, {k: v for k, v in overrides.items() if k in keys})
    return loaded


def speech_encoders(hparams):
    return [module for module in hparams["model"].modules() if isinstance(module, SpeechEncoder)]


@pytest.mark.parametrize("system", SYSTEMS)
def test_default_batches_give_the_papers_steps_per_epoch(system, systems):
    hparams = systems[system]
    n_turns = 5000
    durations = msp_like_durations(n_turns, seed=3)
    dataset = DynamicItemDataset({f"t{i:05d}": {"duration": float(d)} for i, d in enumerate(durations)})
    options = loader_options(dataset, hparams, train=True)
    sampler = options["batch_sampler"]
    sampler.set_epoch(1)
    batches = list(sampler)
    accumulation = hparams.get("grad_accumulation_factor", 1)
    assert hparams["batch_size"] * accumulation == GLOBAL_BATCH[system]
    steps = math.ceil(len(batches) / accumulation)
    expected = math.ceil(n_turns / GLOBAL_BATCH[system])
    assert abs(steps - expected) <= 0.02 * expected, (steps, expected)
    assert np.mean([len(batch) for batch in batches]) == pytest.approx(hparams["batch_size"], rel=0.02)


@pytest.mark.parametrize("system", SYSTEMS)
def test_frozen_cnn_gets_no_gradient_and_the_rest_trains(system, systems):
    hparams = systems[system]
    model = hparams["model"].train()
    encoders = speech_encoders(hparams)
    assert encoders and all(encoder.freeze_feature_extractor for encoder in encoders)
    torch.manual_seed(0)
    wavs = 0.1 * torch.randn(2, 16000)
    texts = ["what a day", "no"] if model.uses_text else None
    log_probs = model(wavs, torch.tensor([0.7, 1.0]), texts)["log_probs"]
    torch.nn.functional.nll_loss(log_probs, torch.tensor([0, 5])).backward()
    for encoder in encoders:
        cnn = list(encoder.model.feature_extractor.parameters())
        assert cnn and all(p.grad is None and not p.requires_grad for p in cnn)
        transformer = [p for p in encoder.model.encoder.parameters() if p.grad is not None]
        assert transformer and sum(float(p.grad.abs().sum()) for p in transformer) > 0
    assert hparams["head"].classifier.weight.grad.abs().sum() > 0
    # Every trainable parameter is in an optimizer group; no frozen one is.
    groups = hparams["optimizers"].values()
    grouped = {id(p) for group in groups for module in group["modules"] for p in module.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(id(p) in grouped for p in trainable)


def layers_run_per_forward(encoder, n_forwards):
    """How many transformer layers ran in each of ``n_forwards`` forwards of a short input."""
    ran = []
    hooks = [layer.register_forward_hook(lambda *_: ran.append(1)) for layer in encoder.model.encoder.layers]
    counts = []
    try:
        with torch.no_grad():
            for _ in range(n_forwards):
                ran.clear()
                encoder(0.1 * torch.randn(1, 3200), torch.tensor([1.0]))
                counts.append(len(ran))
    finally:
        for hook in hooks:
            hook.remove()
    return counts


@pytest.mark.parametrize("system", SYSTEMS)
def test_layerdrop_stays_active_when_only_the_last_layer_is_used(system, systems, tiny_models):
    configured = SpeechEncoder(tiny_models / "wavlm", save_path=systems[system]["model_cache"]).layerdrop
    assert configured == pytest.approx(0.1)  # the tiny models keep wavlm-large's value
    for encoder in speech_encoders(systems[system]):
        assert not encoder.output_all_hiddens and encoder.layerdrop == pytest.approx(configured)
        n_layers = len(encoder.model.encoder.layers)
        torch.manual_seed(1)
        # P(no layer skipped in 60 training forwards) = 0.9**60 = 0.2 %; seeded, so deterministic.
        counts = layers_run_per_forward(encoder.train(), 60)
        assert max(counts) == n_layers and min(counts) < n_layers
        assert layers_run_per_forward(encoder.eval(), 3) == [n_layers] * 3  # none dropped in evaluation


def test_text_output_is_normalised_in_the_text_systems(systems):
    for system in ("d", "e"):
        encoder = systems[system]["text_encoder"].eval()
        assert encoder.output_norm
        with torch.no_grad():
            hidden, lengths = encoder(["a fairly long transcript of a turn", "short"])
        valid = int(round(float(lengths[1]) * hidden.shape[1]))
        short = hidden[1, :valid]
        assert abs(float(short.mean())) < 1e-4
        assert float(short.std(unbiased=False)) == pytest.approx(1.0, abs=1e-3)
        assert torch.all(hidden[1, valid:] == 0)
