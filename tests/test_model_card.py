"""The package's model card is a Hugging Face card: ``huggingface_hub`` parses it and its metadata.

A card is rendered for the debug package (trained on the synthetic mini corpus: a toy) and for the
manifest of a package trained on MSP-Podcast from Hub encoders (what a real export records).
"""

import json

import pytest
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard_data import eval_results_to_model_index

from ser.inference.model_card import (
    MINI_CORPUS_MARKER,
    MSP_PODCAST,
    TOY_WARNING,
    render_model_card,
    training_data_kind,
)
from ser.inference.package import MANIFEST
from ser.metrics import attribute_report, classification_report


def _load(path):
    card = ModelCard.load(path)
    # The metadata goes back into ModelCardData and a model-index without loss: it validates.
    again = ModelCardData(**card.data.to_dict())
    assert again.eval_results == card.data.eval_results
    assert eval_results_to_model_index(card.data.model_name, card.data.eval_results)
    return card


def test_debug_package_card_is_a_toy_card_hugging_face_reads(demo_package):
    package = demo_package[0]
    card = _load(package / "README.md")
    data = card.data
    assert data.library_name == "speechbrain" and data.pipeline_tag == "audio-classification"
    assert data.datasets is None and "toy-model" in data.tags
    # The demo's encoders are local folders (tiny models, the bundled Whisper encoder): no Hub id.
    assert data.base_model is None
    manifest = json.loads((package / MANIFEST).read_text())
    labels = {f"Macro-F1 ({entry['label']})" for entry in manifest["systems"]} | {"Macro-F1 (Fusion)"}
    assert {r.metric_name for r in data.eval_results} == labels
    assert {r.dataset_type for r in data.eval_results} == {"synthetic"}
    assert all(0 <= r.metric_value <= 1 and r.metric_value == round(r.metric_value, 4)
               for r in data.eval_results)
    text = card.text
    assert TOY_WARNING in text and "trained on MSP-Podcast" not in text
    assert "hal-04628187" in text and "Duret" in text and "foreign_class(" in text
    assert "HfApi().upload_folder(" in text and "pip install" in text


def test_real_training_card_names_its_corpus_and_base_models(tmp_path):
    manifest = {
        "systems": [
            {"name": "system_d", "label": "Sub-System D", "folder": "systems/system_d", "uses_text": True,
             "base_models": ["microsoft/wavlm-large", "FacebookAI/roberta-base"],
             "training_data": MSP_PODCAST},
            {"name": "task2_d", "label": "task2_d", "folder": "systems/task2_d", "uses_text": True,
             "base_models": ["microsoft/wavlm-large"], "training_data": MSP_PODCAST},
        ],
        "fusion": None, "attribute_fusion": None,
    }
    classes = {**classification_report(list("AHNN"), list("AHNS")), "n_turns": 4}
    attributes = attribute_report([[1.0], [2.0], [4.0]], [[1.0], [3.0], [4.0]], ["EmoAct"])
    for entry, metrics in zip(manifest["systems"], (classes, attributes), strict=True):
        (tmp_path / entry["folder"]).mkdir(parents=True)
        (tmp_path / entry["folder"] / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "README.md").write_text(render_model_card(tmp_path, manifest))
    data = _load(tmp_path / "README.md").data
    assert data.base_model == ["microsoft/wavlm-large", "FacebookAI/roberta-base"]
    assert data.datasets == ["MSP-Podcast"] and data.license == "other"
    by_name = {r.metric_name: r for r in data.eval_results}
    assert by_name["Macro-F1 (Sub-System D)"].metric_value == pytest.approx(classes["macro_f1"], abs=1e-4)
    assert by_name["Mean CCC (task2_d)"].metric_value == pytest.approx(attributes["mean_ccc"], abs=1e-4)
    assert by_name["Mean CCC (task2_d)"].metric_type == "ccc"
    assert TOY_WARNING not in (tmp_path / "README.md").read_text()


def test_mini_corpus_is_recognised_by_the_file_it_writes(mini_corpus, tmp_path):
    from data_prep.mini_corpus import OPTIONS_FILE

    assert MINI_CORPUS_MARKER == OPTIONS_FILE
    assert training_data_kind(mini_corpus) == "synthetic"
    (tmp_path / "Labels").mkdir()
    assert training_data_kind(tmp_path) == MSP_PODCAST
    assert training_data_kind(tmp_path / "moved") == "unknown"
