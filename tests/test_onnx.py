"""ONNX export: graphs run by the real onnxruntime give PyTorch's answers; packages record their runtime.

The model-level tests build tiny random-init encoders of every family (WavLM, HuBERT, RoBERTa);
the package tests export the session's debug-trained systems A-E and their fusion.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ser.inference.onnx_export import GRAPHS_FILE, export_onnx_model
from ser.inference.onnx_parity import DEFAULT_MIN_AGREEMENT, PARITY_FILE, synthetic_clips
from ser.inference.onnx_runtime import OnnxEmotionModel
from ser.nn.encoders import SpeechEncoder, TextEncoder
from ser.nn.model import EmotionClassifier, SpeechBranch, TargetHeads, TextBranch
from ser.nn.pooling import AttentionPooling, MeanPooling
from tests.conftest import ROOT, SYSTEMS, THREADS

onnxruntime = pytest.importorskip("onnxruntime")

RATE = 16000
TEXTS = [
    "i really think that it was not what we wanted at all",
    "",
    "yes",
    "oh no the show was great",
    "well",
    "maybe next time",
    "i love it",
    "no",
]


@pytest.fixture(scope="module")
def tiny_model(tiny_models):
    """WavLM (mean pooling) + HuBERT (attention pooling) + RoBERTa (attention pooling), two heads."""
    torch.manual_seed(0)
    model = EmotionClassifier(
        TargetHeads(64 * 3, classes="ACDFHNSU", attributes=["EmoAct", "EmoVal"]),
        speech_branches=[
            SpeechBranch(SpeechEncoder(tiny_models / "wavlm", save_path=None), MeanPooling()),
            SpeechBranch(SpeechEncoder(tiny_models / "hubert", save_path=None), AttentionPooling(64)),
        ],
        text_branches=[
            TextBranch(TextEncoder(tiny_models / "roberta", output_norm=True), AttentionPooling(64))
        ],
    )
    return model.eval()


@pytest.fixture(scope="module", params=[False, True], ids=["fp32", "int8"])
def exported(request, tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx") / "graphs"
    spec = export_onnx_model(tiny_model, folder, int8=request.param)
    return request.param, spec, OnnxEmotionModel(folder)


def _batch(lengths_s, seed=0):
    generator = torch.Generator().manual_seed(seed)
    wavs = [0.1 * torch.randn(int(s * RATE), generator=generator) for s in lengths_s]
    lens = torch.tensor([len(w) for w in wavs], dtype=torch.float32)
    return torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True), lens / lens.max()


@pytest.mark.parametrize(
    "lengths_s",
    [[3.0], [0.5, 7.3, 2.2], [20.0, 0.5, 1.1, 9.9, 4.0, 0.8, 13.0, 2.5]],
    ids=["batch1", "batch3", "batch8"],
)
def test_onnx_outputs_match_pytorch(tiny_model, exported, lengths_s):
    int8, spec, onnx_model = exported
    assert [row.get("graph") for row in spec["speech"] + spec["text"]] == [
        "speech_0.onnx",
        "speech_1.onnx",
        "text_0.onnx",
    ]
    wavs, lens = _batch(lengths_s)
    texts = TEXTS[: len(lengths_s)]
    with torch.inference_mode():
        expected = tiny_model(wavs, lens, texts)
        got = onnx_model(wavs, lens, texts)
    probs, onnx_probs = expected["log_probs"].exp(), got["log_probs"].exp()
    if not int8:  # fp32: the same computation up to float rounding
        torch.testing.assert_close(onnx_probs, probs, atol=1e-4, rtol=0)
        torch.testing.assert_close(got["attributes"], expected["attributes"], atol=1e-4, rtol=0)
    else:  # int8 weights move the outputs a little, never far
        assert float((onnx_probs - probs).abs().max()) < 0.02
        assert float((got["attributes"] - expected["attributes"]).abs().max()) < 0.05


def test_onnx_batched_equals_one_by_one(exported):
    int8, _, onnx_model = exported
    lengths_s = [20.0, 0.5, 1.1, 9.9, 4.0, 0.8, 13.0, 2.5]
    wavs, lens = _batch(lengths_s, seed=3)
    with torch.inference_mode():
        batched = onnx_model(wavs, lens, TEXTS)["log_probs"].exp()
        alone = torch.cat(
            [
                onnx_model(wavs[i : i + 1, : int(s * RATE)], torch.ones(1), TEXTS[i : i + 1])["log_probs"]
                for i, s in enumerate(lengths_s)
            ]
        ).exp()
    # Dynamic int8 quantizes each matrix product's activations with one scale for the whole batch,
    # so a turn's neighbours move its probabilities slightly (measured: 2.5e-4); fp32 does not.
    torch.testing.assert_close(batched, alone, atol=1e-3 if int8 else 1e-5, rtol=0)


def test_graph_weights_are_mapped_from_their_own_file_and_packing_changes_no_answer(exported):
    import onnx

    int8, spec, onnx_model = exported
    folder = onnx_model.folder
    for row in spec["speech"] + spec["text"]:
        graph = folder / row["graph"]
        weights = folder / f"{row['graph']}.data"
        # Every weight but the smallest (under 1 kB) lives beside the graph.
        structure = onnx.load(str(graph), load_external_data=False)
        inline = [t for t in structure.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
        external = [t for t in structure.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        assert external and all(len(t.raw_data) < 1024 for t in inline)
        assert weights.stat().st_size >= 1024 * len(external)
    packed = OnnxEmotionModel(folder, pack_weights=True)
    wavs, lens = _batch([0.5, 7.3, 2.2], seed=5)
    with torch.inference_mode():
        mapped_out = onnx_model(wavs, lens, TEXTS[:3])
        packed_out = packed(wavs, lens, TEXTS[:3])
    for name in ("log_probs", "attributes"):
        torch.testing.assert_close(packed_out[name], mapped_out[name], atol=1e-5, rtol=0)


def test_synthetic_clips_span_half_a_second_to_twenty():
    clips = synthetic_clips(6)
    assert [round(len(c) / RATE, 1) for c in clips][::5] == [0.5, 20.0]
    assert all(float(c.abs().max()) <= 0.31 and float(c.std()) > 0.01 for c in clips)


@pytest.fixture(scope="module")
def onnx_package(demo_package, tmp_path_factory):
    """The debug systems A-E and their fusion exported with --onnx (fp32)."""
    from ser.inference.export import export_package

    _, training = demo_package
    folders = [training / f"system_{s}" / "1993" for s in SYSTEMS]
    out = tmp_path_factory.mktemp("onnx_package") / "my_model"
    export_package(folders, out, training / "fusion", runtime="onnx", parity={"parity_clips": 6})
    return out


def test_onnx_package_records_runtime_and_parity(onnx_package, demo_package):
    from ser.inference.recognizer import EmotionRecognizer

    manifest = json.loads((onnx_package / "ser_package.json").read_text())
    assert {entry["runtime"] for entry in manifest["systems"]} == {"onnx"}
    for entry in manifest["systems"]:
        spec = json.loads((onnx_package / entry["folder"] / "onnx" / GRAPHS_FILE).read_text())
        assert (onnx_package / entry["folder"] / "onnx" / spec["head"]["graph"]).is_file()
        for row in spec["speech"] + spec["text"]:  # each branch is a checked graph, or says why not
            assert ("graph" in row and row["fp32_check"] <= 1e-3) or row["reason"]
    report = json.loads((onnx_package / PARITY_FILE).read_text())
    assert report["clips"] == 6 and report["min_agreement"] == DEFAULT_MIN_AGREEMENT["onnx"]
    for row in [*report["systems"].values(), report["ensemble"]]:
        assert row["agreement"] == 100.0 and row["max_abs_diff"] < 1e-4
    onnx = EmotionRecognizer.from_pretrained(onnx_package)
    pytorch = EmotionRecognizer.from_pretrained(demo_package[0])
    assert all(type(s.model).__name__ == "OnnxEmotionModel" for s in onnx.systems)
    clips = synthetic_clips(4, seed=5)
    exported, reference = (r.classify_batch(clips, sample_rate=16000) for r in (onnx, pytorch))
    for a, b in zip(exported, reference, strict=True):
        assert a.label == b.label
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in a.probabilities) < 1e-4


def test_predict_packs_weights_on_request_with_the_same_answers(onnx_package, mini_corpus, tmp_path):
    """``ser.predict --pack_weights yes`` and ``no`` on an ONNX package: the same predictions."""
    import csv

    clips = [str(p) for p in sorted((mini_corpus / "Audios").glob("*.wav"))[:3]]
    env = {**os.environ, "OMP_NUM_THREADS": THREADS, "HF_HUB_OFFLINE": "1"}
    tables = {}
    for choice in ("yes", "no"):
        out = tmp_path / f"{choice}.csv"
        done = subprocess.run([sys.executable, "-m", "ser.predict", *clips, "--model", str(onnx_package),
                               "--out", str(out), "--pack_weights", choice, "--no_progress"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        with open(out, newline="") as stream:
            tables[choice] = list(csv.DictReader(stream))
    assert len(tables["yes"]) == 3
    assert [row["EmoClass"] for row in tables["yes"]] == [row["EmoClass"] for row in tables["no"]]
    for packed, mapped in zip(tables["yes"], tables["no"], strict=True):
        for letter in "ACDFHNSU":
            assert abs(float(packed[letter]) - float(mapped[letter])) < 1e-4, (letter, packed, mapped)


def _export_command(demo_package, out, *extra):
    _, training = demo_package
    return [
        sys.executable,
        "-m",
        "ser.export",
        *(str(training / f"system_{s}" / "1993") for s in "ab"),
        "--out",
        str(out),
        "--parity_clips",
        "4",
        *extra,
    ]


def test_int8_export_prints_parity_table(demo_package, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": THREADS, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        _export_command(demo_package, tmp_path / "int8", "--int8", "--log", str(tmp_path / "export.log")),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Parity of onnx-int8 against PyTorch on 4 clips:" in done.stdout
    assert "| ensemble |" in done.stdout
    # The console keeps the stage lines and this project's warnings (the demo's Whisper branch stays
    # in PyTorch); the libraries' messages (SpeechBrain's seeds and checkpoints) go to the log.
    assert "exporting system_a to onnx-int8" in done.stderr
    assert "stays in PyTorch" in done.stderr
    assert not [line for line in done.stderr.splitlines() if "speechbrain" in line]
    log = done.stdout.split("Messages of the libraries: ")[1].splitlines()[0]
    assert log == str(tmp_path / "export.log")
    assert "speechbrain.utils.checkpoints INFO" in Path(log).read_text()
    manifest = json.loads((tmp_path / "int8" / "ser_package.json").read_text())
    assert {entry["runtime"] for entry in manifest["systems"]} == {"onnx-int8"}


def test_export_refuses_below_the_agreement_threshold(demo_package, tmp_path, monkeypatch):
    # No runtime agrees on more than 100 % of the labels, and --min_agreement stops at 100: a
    # default threshold above it takes the refusal path, with real graphs, through the command's
    # own main and edge (in this process, where the default can be changed).
    import contextlib
    import io

    from ser.cli import run_command
    from ser.inference.export import main
    from ser.inference.onnx_parity import DEFAULT_MIN_AGREEMENT

    monkeypatch.setitem(DEFAULT_MIN_AGREEMENT, "onnx", 100.5)
    argv = _export_command(demo_package, tmp_path / "refused", "--onnx")[3:]  # after python -m ser.export
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = run_command("ser.export", main, argv)
    assert code == 2, stderr.getvalue()[-3000:]
    errors = [line for line in stderr.getvalue().splitlines() if line.startswith("ser.export: error:")]
    assert len(errors) == 1 and "--min_agreement 100.5: onnx agrees with PyTorch on 100.0 % of the labels" \
        in errors[0], errors
    assert not (tmp_path / "refused").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # nor its staging folder


def test_onnx_runtime_without_its_graphs_is_one_clear_error(demo_package, tmp_path):
    import shutil

    from ser.inference.package import PackageError
    from ser.inference.recognizer import EmotionRecognizer

    package = tmp_path / "pkg"
    shutil.copytree(demo_package[0], package)
    manifest = json.loads((package / "ser_package.json").read_text())
    manifest["systems"][0]["runtime"] = "onnx"
    (package / "ser_package.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match=r"onnx/graphs.json: missing, but the manifest says runtime onnx"):
        EmotionRecognizer.from_pretrained(package)


def test_graphs_are_saved_optimized_and_a_graph_onnxruntime_cannot_load_is_named(exported, tmp_path):
    """The branches' graphs hold onnxruntime's portable fusions; one it cannot read is one line."""
    import shutil

    import onnx

    from ser.inference.package import PackageError

    _, spec, model = exported
    assert spec["optimized_by"].startswith("onnxruntime ")
    folder = tmp_path / "graphs"
    shutil.copytree(model.folder, folder)
    graph = onnx.load(str(folder / spec["speech"][0]["graph"]))
    # Saved after the fusions: onnxruntime's fused operators (GELU, fused and quantized MatMul).
    assert any(node.domain == "com.microsoft" for node in graph.graph.node)
    (folder / spec["speech"][0]["graph"]).write_bytes(b"not a graph")
    expected = r"speech_0.onnx: onnxruntime .* cannot load this graph .*written by onnxruntime .*, or export"
    with pytest.raises(PackageError, match=expected):
        OnnxEmotionModel(folder)
