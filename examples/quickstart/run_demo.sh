#!/usr/bin/env bash
# The quickstart end to end, offline on a CPU in a couple of minutes: make the DEMO model, fine-tune it as a
# tracked local job, then compare base and fine-tuned answers on held-out messages (test.jsonl).
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root, where python -m finds local_backend
quickstart=examples/quickstart

python -m local_backend.demo_model --data "$quickstart/train.jsonl" --data "$quickstart/valid.jsonl" \
    --out "$quickstart/demo-model" --hidden 128 --layers 2
job=$(fth submit "$quickstart/spec.yaml" --provider local --json | python -c 'import json, sys; print(json.load(sys.stdin)["id"])')
echo "submitted $job; it trains in the background (fth status $job, fth logs $job)"
fth wait "$job" --interval 1
adapter=$(fth status "$job" --json | python -c 'import json, sys; print(json.load(sys.stdin)["model"])')
python -m local_backend.infer --model "$quickstart/demo-model" --adapter "$adapter" --data "$quickstart/test.jsonl"
