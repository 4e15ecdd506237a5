#!/usr/bin/env bash
# The real pipeline on a SLURM cluster: Whisper shards (array) -> merge + relabeling -> systems A-E
# (hparams/system_*.yaml; one multi-node job each, requeued on pre-emption) -> fusion once all have
# finished.
#
#   bash recipes/slurm/submit.sh /path/to/MSP-PODCAST-1.11 [results]
#
# SHARDS (default 8) Whisper array tasks; NODES (default 2) nodes per system; WHISPER_MODEL
# (default large-v3); SBATCH_ARGS extra sbatch options for every job (e.g. "--account=xyz
# --partition=gpu"). DRY_RUN=1 prints the sbatch commands (with made-up job ids) instead.
set -euo pipefail
DATA=${1:?usage: bash recipes/slurm/submit.sh /path/to/MSP-PODCAST-1.11 [results]}
RESULTS=${2:-results}
SHARDS=${SHARDS:-8}
NODES=${NODES:-2}
cd "$(dirname "$0")/../.."
[ "${DRY_RUN:-0}" = 1 ] || mkdir -p logs  # the jobs' --output folder
export DATA RESULTS WHISPER_MODEL=${WHISPER_MODEL:-large-v3}
job=1000

submit() {  # sbatch options... script; sets $job to the job id
    if [ "${DRY_RUN:-0}" = 1 ]; then
        job=$((job + 1))
        echo "sbatch --parsable ${SBATCH_ARGS:-}${SBATCH_ARGS:+ }$* -> $job"
    else
        # shellcheck disable=SC2086  # SBATCH_ARGS holds several options
        job=$(sbatch --parsable ${SBATCH_ARGS:-} "$@")
    fi
}

submit --array="1-$SHARDS" --export=ALL recipes/slurm/transcribe.sbatch
whisper=$job
submit --dependency="afterok:$whisper" --export=ALL recipes/slurm/merge.sbatch
merged=$job
systems=""
for yaml in hparams/system_*.yaml; do  # the systems are the YAML files (system_f.yaml adds F)
    system=${yaml#hparams/system_}
    system=${system%.yaml}
    submit --dependency="afterok:$merged" --nodes="$NODES" --job-name="ser-train-$system" \
        --export="ALL,SYSTEM=$system" recipes/slurm/train.sbatch
    systems="$systems:$job"
done
submit --dependency="afterok$systems" --export=ALL recipes/slurm/fuse.sbatch
echo "Submitted: whisper $whisper, merge $merged, systems ${systems#:}, fusion $job (logs in logs/)"
