#!/usr/bin/env bash
# Submit a Beam stage of shoprec to Dataflow. The same code runs locally on the
# FnApiRunner; only the runner flags differ.
#
#   infra/dataflow/submit.sh embed|ingest|featurize|score|recommend CONFIG RUN_DIR
#
# `embed` first trains the image encoder where this script runs (a catalogue
# fits one machine; photos are read through tf.io.gfile, so gs:// works), then
# submits the job that embeds every item's photo.
#
# Required environment: PROJECT, REGION, BUCKET (gs://...), IMAGE (built from
# infra/Dockerfile). RUN_DIR is usually a dated partition, e.g.
# gs://my-bucket/shoprec/dt=2026-11-23: re-running a date rewrites it.
# To build and check a stage's job without submitting it, add --dry_run=True:
# it runs offline, changes nothing in RUN_DIR and says so in one line
# (docs/scheduling.md); pipelines/dataflow_template.py writes a job's template.
set -euo pipefail
stage=$1 config=$2 run_dir=$3
shift 3
exec shoprec "$stage" --config "$config" --run_dir "$run_dir" \
  --runner=DataflowRunner \
  --project="$PROJECT" --region="$REGION" \
  --temp_location="$BUCKET/tmp" --staging_location="$BUCKET/staging" \
  --sdk_container_image="$IMAGE" --sdk_location=container \
  --experiments=use_runner_v2 \
  --job_name="shoprec-$stage-$(date -u +%Y%m%d-%H%M%S)" \
  "$@"
