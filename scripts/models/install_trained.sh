#!/usr/bin/env bash
# After a training run (training/train_all.py --out DIR): install its models into models/, regenerate what depends
# on their weights, run the edit benchmarks on them, and write the model card with every figure.
#
#   bash scripts/models/install_trained.sh /tmp/run/models [DIFFEDIT_CASES] [DRAG_CASES]
#
# Writes models/{emoji-ldm,emoji-clip,emoji-judge,README.md}, tests/fixtures/autodiff/bundled/, and
# bench-results/{diffedit,drag}/ (the eval suite's report of each bench view: results.json/csv, summary.json/md,
# report.html, results.md, plots, images; not committed).
set -euo pipefail
cd "$(dirname "$0")/../.."
src=${1:?usage: install_trained.sh TRAINED_MODELS_DIR [DIFFEDIT_CASES] [DRAG_CASES]}
diffedit_cases=${2:-100}
drag_cases=${3:-50}
for m in emoji-ldm emoji-clip emoji-judge; do
  test -f "$src/$m/config.json" -o -f "$src/$m/model_index.json" || { echo "no $m in $src" >&2; exit 2; }
done
for m in emoji-ldm emoji-clip emoji-judge; do
  rm -rf "models/$m"
  cp -r "$src/$m" "models/$m"
done
du -sh models
# The gradient references are tied to the weights (their SHA-256 is in the manifest).
/usr/bin/python3 training/reference/autodiff_bundled_reference.py
npm run --silent build
node dist/bench/main.js diffedit --cases "$diffedit_cases" --steps 50 --out bench-results/diffedit
node dist/bench/main.js drag --cases "$drag_cases" --tasks move --out bench-results/drag
/usr/bin/python3 training/emoji/model_card.py --models models \
  --diffedit bench-results/diffedit/summary.json --drag bench-results/drag/summary.json
