"""Real-size dry run on a CPU: systems A-E with WavLM-large, HuBERT-large and RoBERTa-base.

Nothing can be downloaded here, so the three encoders are built locally, randomly
initialised, from the published configurations of ``microsoft/wavlm-large``,
``facebook/hubert-large-ll60k`` and ``FacebookAI/roberta-base`` (key values written
below). Each system then runs a few real training steps through its own YAML
(``hparams/system_X.yaml``, with the demo profile only for what the YAML leaves to a
corpus: folders, Whisper), the real :class:`ser.training.brain.EmotionBrain` and its
optimizers, on a handful of synthetic turns, and prints:

- parameters per optimizer group (trainable / in the group's modules) and frozen ones;
- whether the frozen parts are really frozen: every parameter with
  ``requires_grad=False`` is bit-identical after the steps, every trainable one moved
  (a layer that layerdrop skipped in every step is named instead: it had no gradient);
- the size of a saved checkpoint (``save/CKPT+*``);
- peak memory: the process's peak RSS, and the part added by training over the loaded
  model, less gradients and Adam's moments (the activations), per second of audio;
- an **estimate** (not a measurement) of GPU memory for the paper's batch
  (16 turns x 12 s), from the parameter counts (fp32 weights, gradients, Adam's two
  moments) and the CPU's activation memory per second of audio.

Each system runs in its own process, so each peak is its own. Not part of the test
suite (it needs ~10 GB of memory for system C); ``tests/test_real_size.py`` runs it
on tiny encoders.

Usage::

    python bench/real_size.py [--systems a b c d e] [--turns 4] [--seconds 2] [--batch_size 2]
    python bench/real_size.py --size tiny          # the smoke test's configuration
"""

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
from hyperpyyaml import load_hyperpyyaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.padding import yaml_scalars  # noqa: E402
from bench.train_step import WAVLM_LARGE_CONFIG, build_wavlm_large, without_bundled_models  # noqa: E402
from ser.emotions import EMOTIONS  # noqa: E402
from ser.training.overrides import merge_overrides, plain_values  # noqa: E402

SAMPLE_RATE = 16000
PROFILE = ROOT / "hparams" / "profiles" / "demo.yaml"
# facebook/hubert-large-ll60k's configuration (transformers' HubertConfig names).
HUBERT_LARGE_CONFIG = {**WAVLM_LARGE_CONFIG, "conv_bias": True}
for _key in ("num_buckets", "max_bucket_distance"):  # WavLM's relative position buckets
    HUBERT_LARGE_CONFIG.pop(_key)
# FacebookAI/roberta-base's configuration (its tokenizer is replaced by a small BPE one: the
# token ids stay below vocab_size, the embedding matrix keeps its real size).
ROBERTA_BASE_CONFIG = {
    "vocab_size": 50265,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
}
WORDS = "well i really think that it was not what we wanted at all you know".split()
PAPER_BATCH_SECONDS = 16 * 12.0  # paper §6.1: 16 turns, 12 s crops


def build_hubert_large(folder):
    """A random-init HuBERT-large in Hugging Face format."""
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    HubertModel(HubertConfig(**HUBERT_LARGE_CONFIG)).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "padding_side": "right",
        "padding_value": 0.0, "return_attention_mask": True, "do_normalize": True,
        "sampling_rate": SAMPLE_RATE}))
    return folder


def build_roberta_base(folder):
    """A random-init RoBERTa-base (real size) with a small byte-level BPE tokenizer."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    from ser.nn.tiny_models import training_sentences

    bpe = ByteLevelBPETokenizer()
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(training_sentences(200), vocab_size=600, min_frequency=2, special_tokens=special,
                            show_progress=False)
    trained = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tokenizer = RobertaTokenizer(vocab=trained["vocab"], merges=merges)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = RobertaConfig(**ROBERTA_BASE_CONFIG, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    RobertaModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


def build_models(folder):
    """The three real-size encoders under ``folder`` (built once)."""
    folder.mkdir(parents=True, exist_ok=True)
    built = {}
    for name, build in (("wavlm", build_wavlm_large), ("hubert", build_hubert_large),
                        ("roberta", build_roberta_base)):
        target = folder / name
        if not (target / "config.json").is_file():
            target.mkdir(exist_ok=True)
            build(target)
        built[name] = target
    return built


def write_turns(folder, n_turns, seconds, seed=0):
    """``n_turns`` WAVs of ``seconds`` s with transcripts, and their training manifest."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for index in range(n_turns):
        n = int(seconds * SAMPLE_RATE)
        pitch = 120 + 40 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * np.arange(n) / SAMPLE_RATE)
        signal = 0.3 * np.sin(2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE) + 0.05 * rng.standard_normal(n)
        path = folder / f"turn_{index:03d}.wav"
        soundfile.write(path, signal.astype(np.float32), SAMPLE_RATE)
        manifest[path.stem] = {"wav": str(path), "duration": seconds, "emotion": EMOTIONS[index % 8],
                               "transcript": " ".join(rng.choice(WORDS, 12))}
    path = folder / "train.json"
    path.write_text(json.dumps(manifest))
    return path


def load_system(system, work, models, args):
    """The system's YAML with real-size local encoders (tiny ones with ``--size tiny``)."""
    yaml_path = ROOT / "hparams" / f"system_{system}.yaml"
    text = yaml_path.read_text()
    overrides = {"results_folder": str(work / "results"), "data_folder": str(work),
                 "tiny_models_folder": str(work / "tiny_models"), "batch_size": args.batch_size,
                 "max_duration": float(args.seconds), "num_workers": 0, "number_of_epochs": 1}
    # The YAML's own training choices, not the demo profile's (which trains the random-init
    # tiny encoders' CNN and turns their layerdrop off).
    own = plain_values(text)
    for key in ("freeze_feature_extractor", "layerdrop"):
        if key in own:
            overrides[key] = own[key]
    # The YAML's own text length, not the demo profile's.
    if "\ntext_max_length:" in text:
        overrides["text_max_length"] = int(yaml_scalars(yaml_path, ["text_max_length"])["text_max_length"])
    if models:
        for key, name, dim_key, dim in (("wavlm_hub", "wavlm", "speech_dim", 1024),
                                        ("hubert_hub", "hubert", "hubert_dim", 1024),
                                        ("text_hub", "roberta", "text_dim", 768)):
            if f"\n{key}:" in text:
                overrides.update({key: str(models[name]), dim_key: dim})
        overrides.update(without_bundled_models(text, models["wavlm"], models["roberta"]))
    return load_hyperpyyaml(text, merge_overrides(str(yaml_path), str(PROFILE), overrides))



def _fingerprint(parameter):
    flat = parameter.detach().reshape(-1)
    return flat.double().sum().item(), flat[:32].clone()


def _layer_of(module_name):
    """``...encoder.layers.1.attention.k_proj`` -> ``...encoder.layers.1`` (the unit layerdrop skips)."""
    parts = module_name.split(".")
    for index in range(len(parts) - 1, 0, -1):
        if parts[index - 1] == "layers" and parts[index].isdigit():
            return ".".join(parts[: index + 1])
    return module_name


def _rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def dry_run(system, work, models, args):
    """A few training steps of one system; returns its figures (dict)."""
    from speechbrain.utils.epoch_loop import EpochCounter

    from ser.training.batching import loader_options
    from ser.training.brain import EmotionBrain
    from ser.training.datasets import make_dataset

    torch.manual_seed(0)
    hparams = load_system(system, work, models, args)
    model = hparams["modules"]["model"]
    manifest = write_turns(work / "turns", args.turns, args.seconds)
    dataset = make_dataset(manifest, train=True, max_duration=args.seconds, with_text=model.uses_text)
    brain = EmotionBrain(modules=hparams["modules"], hparams=hparams, run_opts={"device": "cpu"},
                         checkpointer=hparams["checkpointer"])
    before = {name: _fingerprint(p) for name, p in model.named_parameters()}
    # Modules whose forward ran at least once: a transformer layer skipped by layerdrop in every
    # step of a short dry run gets no gradient, and its parameters rightly stay where they were.
    ran = set()
    hooks = [module.register_forward_hook(lambda m, i, o, name=name: ran.add(name))
             for name, module in model.named_modules()]
    loaded_gb = _rss_gb()
    start = time.perf_counter()
    options = loader_options(dataset, hparams, train=True)
    brain.fit(EpochCounter(1), dataset, train_loader_kwargs=options, progressbar=False)
    seconds = time.perf_counter() - start
    for hook in hooks:
        hook.remove()
    peak_gb = _rss_gb()
    groups = {}
    for name, optimizer in brain.optimizers_dict.items():
        trainable = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
        in_modules = sum(p.numel() for m in hparams["optimizers"][name]["modules"] for p in m.parameters())
        groups[name] = {"trainable_M": round(trainable / 1e6, 2), "in_modules_M": round(in_modules / 1e6, 2)}
    frozen_moved, trainable_still, frozen, frozen_names, skipped = [], [], 0, set(), set()
    for name, parameter in model.named_parameters():
        total, head = _fingerprint(parameter)
        moved = total != before[name][0] or not torch.equal(head, before[name][1])
        owner = name.rsplit(".", 1)[0]
        if parameter.requires_grad and not moved and owner not in ran:
            skipped.add(_layer_of(owner))  # never run in these steps (layerdrop), so no gradient
        elif parameter.requires_grad:
            trainable_still += [] if moved else [name]
        else:
            frozen += parameter.numel()
            frozen_names.add(name.split(".feature_extractor.")[0] + ".feature_extractor"
                             if ".feature_extractor." in name else name.rsplit(".", 1)[0])
            frozen_moved += [name] if moved or parameter.grad is not None else []
    brain.checkpointer.save_checkpoint(name="real_size")
    checkpoint = max(Path(hparams["save_folder"]).glob("CKPT+*"), key=os.path.getmtime)
    checkpoint_gb = sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file()) / 1e9
    batch_audio_s = args.batch_size * args.seconds
    trainable_total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    all_params = sum(p.numel() for p in model.parameters())
    # What training added over the loaded model, less the gradients and Adam's moments
    # (12 B per trainable parameter): the activations of one batch, per second of its audio.
    activation_gb_per_s = max(peak_gb - loaded_gb - 12 * trainable_total / 1e9, 0.0) / batch_audio_s
    # fp32 weights (4 B) for all, + gradient (4 B) + Adam's two moments (8 B) for trainable ones.
    static_gb = (4 * all_params + 12 * trainable_total) / 1e9
    return {
        "system": system.upper(),
        "steps": (len(options["batch_sampler"]) if "batch_sampler" in options
                  else -(-args.turns // args.batch_size)),
        "train_seconds": round(seconds, 1),
        "parameters_M": round(all_params / 1e6, 1),
        "optimizer_groups": groups,
        "frozen_M": round(frozen / 1e6, 2),
        "frozen_modules": sorted(frozen_names)[:6],
        "frozen_moved": frozen_moved[:5],
        "trainable_not_moved": trainable_still[:5],
        "layers_skipped_by_layerdrop": sorted(skipped),
        "checkpoint_MB": round(checkpoint_gb * 1e3, 1),
        "peak_rss_GB": round(peak_gb, 2),
        "loaded_rss_GB": round(loaded_gb, 2),
        "training_GB_per_audio_s": round(activation_gb_per_s, 3),
        "estimate_gpu_GB_paper_batch": round(static_gb + activation_gb_per_s * PAPER_BATCH_SECONDS, 1),
    }


def _print_table(rows):
    print("| system | params M | optimizer groups: trainable M / in modules M | frozen M | frozen parts "
          "unchanged, trainable moved | checkpoint MB | peak RSS GB | training GB per s of audio | "
          "GPU GB, 16 x 12 s batch (ESTIMATE) |")
    print("|---|---:|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        groups = ", ".join(f"{k} {v['trainable_M']}/{v['in_modules_M']}"
                           for k, v in r["optimizer_groups"].items())
        ok = "yes" if not r["frozen_moved"] and not r["trainable_not_moved"] else (
            f"NO: {r['frozen_moved'] or r['trainable_not_moved']}")
        if ok == "yes" and r["layers_skipped_by_layerdrop"]:
            ok += f" ({len(r['layers_skipped_by_layerdrop'])} layer(s) skipped by layerdrop in every step)"
        print(f"| {r['system']} | {r['parameters_M']} | {groups} | {r['frozen_M']} | {ok} | "
              f"{r['checkpoint_MB']} | "
              f"{r['peak_rss_GB']} | {r['training_GB_per_audio_s']} | ~{r['estimate_gpu_GB_paper_batch']} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", nargs="+", default=list("abcde"), choices=list("abcde"))
    parser.add_argument("--size", choices=["real", "tiny"], default="real",
                        help="real: WavLM-large, HuBERT-large, RoBERTa-base; tiny: the demo's encoders")
    parser.add_argument("--turns", type=int, default=4, help="training turns (steps = turns / batch_size)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each turn")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--work", help="folder for models and runs (default: a temporary one)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one system, print JSON
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        models = build_models(work / "models") if args.size == "real" else None
        if args.one:
            print("RESULT " + json.dumps(dry_run(args.one, work / f"system_{args.one}", models, args)))
            return
        rows = []
        for system in args.systems:
            command = [sys.executable, __file__, "--one", system, "--work", str(work), "--size", args.size,
                       "--turns", str(args.turns), "--seconds", str(args.seconds),
                       "--batch_size", str(args.batch_size)]
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                raise SystemExit(f"system {system}: exit {done.returncode}\n{done.stderr[-3000:]}")
            rows.append(json.loads(lines[-1][len("RESULT "):]))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.turns} turns of {args.seconds:g} s, batches of {args.batch_size}, CPU, fp32, "
          f"torch threads {torch.get_num_threads()}")
    _print_table(rows)


if __name__ == "__main__":
    main()
