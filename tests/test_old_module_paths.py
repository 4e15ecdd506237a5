"""Old module paths keep working: YAMLs and packages that name ``ser.encoders``, ``ser.model`` ...

Before the library had sub-packages its modules sat side by side (``ser.encoders``,
``ser.pooling``, ``ser.predict`` ...). A system YAML or an exported package's ``hyperparams.yaml``
names those paths in its ``!new:`` tags; :mod:`ser.module_aliases` maps each onto its new module.
A package from before differs from a new one only in those tags and in the manifest's format: a
package of format 1 recorded no fingerprints of its files, so it is refused in one line naming the
command that upgrades it (which vouches for its files).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hyperpyyaml import load_hyperpyyaml

from ser.inference.package import FORMAT_WITHOUT_FINGERPRINTS, MANIFEST
from ser.inference.recognizer import EmotionRecognizer
from ser.module_aliases import MODULE_ALIASES
from ser.nn.model import EmotionClassifier
from ser.training.overrides import top_level_keys

ROOT = Path(__file__).resolve().parents[1]
YAMLS = sorted((ROOT / "hparams").glob("*.yaml"))


def with_old_paths(text):
    """``text`` with every new module path written as it was before the sub-packages."""
    for old, new in sorted(MODULE_ALIASES.items(), key=lambda item: -len(item[1])):
        text = text.replace(new + ".", old + ".")
    return text


def test_every_old_path_is_the_new_module_itself():
    import importlib

    for old, new in MODULE_ALIASES.items():
        assert importlib.import_module(old) is importlib.import_module(new), old


@pytest.mark.parametrize("path", YAMLS, ids=[p.stem for p in YAMLS])
def test_a_system_yaml_naming_the_old_paths_still_builds_its_model(path, tiny_models, tmp_path):
    text = with_old_paths(path.read_text(encoding="utf-8"))
    assert "!new:ser.model.EmotionClassifier" in text  # the old paths are really there
    overrides = {"data_folder": str(tmp_path), "results_folder": str(tmp_path / "results"),
                 "wavlm_hub": str(tiny_models / "wavlm"), "hubert_hub": str(tiny_models / "hubert"),
                 "text_hub": str(tiny_models / "roberta"), "speech_dim": 64, "hubert_dim": 64, "text_dim": 64}
    keys = top_level_keys(text)
    hparams = load_hyperpyyaml(text, {k: v for k, v in overrides.items() if k in keys})
    assert isinstance(hparams["model"], EmotionClassifier)


def test_a_package_from_before_is_upgraded_in_one_line_and_predicts_the_same(demo_package, tmp_path):
    """A format-1 package (old module paths, no fingerprints): refused in one line naming the upgrade,
    upgraded by that command, then it predicts what the package it came from predicts."""
    package, _ = demo_package
    old = tmp_path / "old_package"
    shutil.copytree(package, old)
    for yaml_path in old.glob("systems/*/hyperparams.yaml"):
        text = yaml_path.read_text(encoding="utf-8")
        assert with_old_paths(text) != text
        yaml_path.write_text(with_old_paths(text), encoding="utf-8")
    manifest = json.loads((old / MANIFEST).read_text(encoding="utf-8"))
    del manifest["files"]
    (old / MANIFEST).write_text(json.dumps({**manifest, "format": FORMAT_WITHOUT_FINGERPRINTS}))
    clip = tmp_path / "clip.wav"
    wave = np.sin(np.linspace(0, 800, 32000)) * 0.1 + np.random.default_rng(0).normal(0, 0.01, 32000)
    soundfile.write(clip, wave, 16000)

    refused = subprocess.run([sys.executable, "-m", "ser.predict", "--model", str(old), str(clip)], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2, refused.stderr[-2000:]
    errors = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and f"python -m ser.inference.package {old}" in errors[0], errors

    upgraded = subprocess.run([sys.executable, "-m", "ser.inference.package", str(old)], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
    assert upgraded.returncode == 0 and "upgraded to" in upgraded.stdout, upgraded.stderr[-2000:]
    new_result = EmotionRecognizer.from_pretrained(package).classify_file(clip)
    old_result = EmotionRecognizer.from_pretrained(old).classify_file(clip)
    assert old_result.label == new_result.label
    for letter, value in new_result.probabilities.items():
        assert abs(old_result.probabilities[letter] - value) < 1e-6


@pytest.mark.parametrize("command", ["ser.predict", "ser.export", "ser.app"])
def test_the_short_commands_run_the_moved_modules(command):
    done = subprocess.run([sys.executable, "-m", command, "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"usage: {command}")
