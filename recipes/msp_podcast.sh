#!/usr/bin/env bash
# The real pipeline on MSP-Podcast v1.11 (licensed corpus), with the real models:
#   Whisper large-v3 transcripts -> consensus relabeling -> systems A-E (hparams/system_*.yaml) -> SVM
#   fusion -> Test3 submission -> Task 2: attribute systems (hparams/task2_*.yaml) -> their fusion -> Task 2
#   submission.
#
#   bash recipes/msp_podcast.sh /path/to/MSP-PODCAST-1.11 [results_folder]
#
# GPUs: every visible GPU is used. Transcription runs one shard per GPU; training runs
# each system with torchrun (DDP) over all GPUs, with the per-process batch divided so that
# every optimizer step sees the paper's number of turns. NGPU=1 bash recipes/msp_podcast.sh ... forces one.
# Every stage resumes where it stopped when the script is run again: transcripts are cached
# per turn, the relabeling is kept once written, training restarts from its last checkpoint
# (a finished system only re-scores), and the fusion is redone (about 2 minutes).
# Any failed step, a single transcription shard included, stops the script with its status.
set -euo pipefail

DATA=${1:?usage: bash recipes/msp_podcast.sh /path/to/MSP-PODCAST-1.11 [results_folder]}
RESULTS=${2:-results}
PY=${PYTHON:-python}
NGPU=${NGPU:-$($PY -c "import torch; print(max(torch.cuda.device_count(), 1))")}
WHISPER_MODEL=${WHISPER_MODEL:-large-v3}
# Absolute paths: the script runs from the repository root.
DATA=$(cd "$DATA" && pwd)
mkdir -p "$RESULTS" && RESULTS=$(cd "$RESULTS" && pwd)
cd "$(dirname "$0")/.."

RELABELED="$RESULTS/relabeled_K0.5.csv"

# The paper's global batch (the YAML's batch_size x grad_accumulation_factor turns per optimizer
# step) kept over NGPU processes: each process takes batch_size / NGPU turns (or, when that does not
# divide, the whole step's turns / NGPU without accumulation). Prints the train.py options.
global_batch_args() {
    local yaml=$1 batch accumulation step
    batch=$(sed -n 's/^batch_size: *\([0-9][0-9]*\).*/\1/p' "$yaml")
    accumulation=$(sed -n 's/^grad_accumulation_factor: *\([0-9][0-9]*\).*/\1/p' "$yaml")
    accumulation=${accumulation:-1}
    step=$((batch * accumulation))
    if [ $((batch % NGPU)) -eq 0 ]; then
        echo "--batch_size=$((batch / NGPU))"
    elif [ $((step % NGPU)) -eq 0 ]; then
        echo "--batch_size=$((step / NGPU)) --grad_accumulation_factor=1"
    else
        echo "msp_podcast.sh: warning: $yaml: $step turns per step do not divide over $NGPU GPUs;" \
            "the global batch becomes $((batch * NGPU * accumulation)) turns" >&2
    fi
}

echo "== 1. Whisper transcription ($WHISPER_MODEL, $NGPU shard(s))"
pids=()
for i in $(seq 1 "$NGPU"); do
    CUDA_VISIBLE_DEVICES=$((i - 1)) $PY -m data_prep.transcribe --data_folder "$DATA" \
        --splits Train Development Test3 --model "$WHISPER_MODEL" --out "$RESULTS/whisper" \
        --shard "$i/$NGPU" --no_progress &
    pids+=($!)
done
# A bare `wait` returns 0 whatever the shards did: wait for each and keep its status.
failed=0
for i in $(seq 1 "$NGPU"); do
    status=0
    wait "${pids[$((i - 1))]}" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "msp_podcast.sh: error: transcription shard $i/$NGPU failed (exit status $status);" \
            "run the script again to resume (finished turns are cached)" >&2
        failed=$status
    fi
done
[ "$failed" -eq 0 ] || exit "$failed"
$PY -m data_prep.transcribe --data_folder "$DATA" --splits Train Development Test3 \
    --model "$WHISPER_MODEL" --out "$RESULTS/whisper" --merge

echo "== 2. Consensus relabeling (paper Table 2), K = 0.5: system E trains on this file"
if [ -f "$RELABELED" ]; then
    echo "$RELABELED exists: kept (delete it to recompute)"
else
    $PY -m data_prep.consensus --data_folder "$DATA" --threshold 0.5 --out "$RELABELED"
fi

echo "== 3. Sub-systems (hparams/system_*.yaml), then the Task 2 attribute systems (hparams/task2_*.yaml)"
# The systems are the YAML files: adding hparams/system_f.yaml adds system F to every stage.
for yaml in hparams/system_*.yaml hparams/task2_*.yaml; do
    args=("$yaml" --data_folder "$DATA" --results_folder "$RESULTS")
    # Text systems (their YAML names a whisper_model) read the transcripts of stage 1 (same
    # model, so the cache is shared).
    if grep -q '^whisper_model:' "$yaml"; then args+=(--whisper_model "$WHISPER_MODEL"); fi
    # A system relabeling with K = 0.5 (E) reads the relabeling of stage 2 instead of redoing it.
    if grep -q '^relabel_threshold: 0.5\b' "$yaml"; then args+=(--relabeled_csv "$RELABELED"); fi
    if [ "$NGPU" -gt 1 ]; then
        read -r -a batch_args <<<"$(global_batch_args "$yaml")"
        $PY -m torch.distributed.run --nproc_per_node="$NGPU" train.py "${args[@]}" "${batch_args[@]}"  # = torchrun
    else
        $PY train.py "${args[@]}"
    fi
done

# The output folder of hparams/<name>.yaml with its seed 1993: $RESULTS/<name>/1993.
folders() { for yaml in "$@"; do echo "$RESULTS/$(basename "$yaml" .yaml)/1993"; done; }

echo "== 4. SVM fusion and Test3 submission"
mapfile -t systems < <(folders hparams/system_*.yaml)
$PY -m fusion.fuse "${systems[@]}" --out "$RESULTS/fusion"
echo "Submission: $RESULTS/fusion/submission.csv"

echo "== 5. Task 2: fusion of the attribute systems and Test3 submission"
mapfile -t systems < <(folders hparams/task2_*.yaml)
$PY -m fusion.attributes "${systems[@]}" --out "$RESULTS/fusion_task2"
echo "Task 2 submission: $RESULTS/fusion_task2/submission.csv"
