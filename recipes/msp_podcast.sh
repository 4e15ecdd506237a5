#!/usr/bin/env bash
# The real pipeline on MSP-Podcast v1.11 (licensed corpus), with the real models:
#   Whisper large-v3 transcripts -> consensus relabeling -> systems A-E -> SVM fusion -> Test3 submission
#   -> Task 2: attribute systems (task2_wavlm, task2_d) -> their fusion -> Task 2 submission.
#
#   bash recipes/msp_podcast.sh /path/to/MSP-PODCAST-1.11 [results_folder]
#
# GPUs: every visible GPU is used. Transcription runs one shard per GPU; training runs
# each system with torchrun (DDP) over all GPUs. NGPU=1 bash recipes/msp_podcast.sh ... forces one.
# Every stage resumes where it stopped when the script is run again.
set -euo pipefail

DATA=${1:?usage: bash recipes/msp_podcast.sh /path/to/MSP-PODCAST-1.11 [results_folder]}
RESULTS=${2:-results}
PY=${PYTHON:-python}
NGPU=${NGPU:-$($PY -c "import torch; print(max(torch.cuda.device_count(), 1))")}
WHISPER_MODEL=${WHISPER_MODEL:-large-v3}
cd "$(dirname "$0")/.."

echo "== 1. Whisper transcription ($WHISPER_MODEL, $NGPU shard(s))"
for i in $(seq 1 "$NGPU"); do
    CUDA_VISIBLE_DEVICES=$((i - 1)) $PY -m data_prep.transcribe --data_folder "$DATA" \
        --splits Train Development Test3 --model "$WHISPER_MODEL" --out "$RESULTS/whisper" \
        --shard "$i/$NGPU" --no_progress &
done
wait
$PY -m data_prep.transcribe --data_folder "$DATA" --splits Train Development Test3 \
    --model "$WHISPER_MODEL" --out "$RESULTS/whisper" --merge

echo "== 2. Consensus relabeling (paper Table 2)"
$PY -m data_prep.consensus --data_folder "$DATA" --threshold 0.5 --out "$RESULTS/relabeled_K0.5.csv"

echo "== 3. Sub-systems A-E, then the Task 2 attribute systems"
for system in system_a system_b system_c system_d system_e task2_wavlm task2_d; do
    args=(hparams/$system.yaml --data_folder "$DATA" --results_folder "$RESULTS")
    # Text systems read the transcripts of stage 1 (same model, so the cache is shared).
    case $system in system_d | system_e | task2_d) args+=(--whisper_model "$WHISPER_MODEL") ;; esac
    if [ "$NGPU" -gt 1 ]; then
        torchrun --nproc_per_node="$NGPU" train.py "${args[@]}"
    else
        $PY train.py "${args[@]}"
    fi
done

echo "== 4. SVM fusion and Test3 submission"
$PY -m fusion.fuse "$RESULTS"/system_{a,b,c,d,e}/1993 --out "$RESULTS/fusion"
echo "Submission: $RESULTS/fusion/submission.csv"

echo "== 5. Task 2: fusion of the attribute systems and Test3 submission"
$PY -m fusion.attributes "$RESULTS"/task2_wavlm/1993 "$RESULTS"/task2_d/1993 --out "$RESULTS/fusion_task2"
echo "Task 2 submission: $RESULTS/fusion_task2/submission.csv"
