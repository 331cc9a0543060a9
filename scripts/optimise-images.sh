#!/usr/bin/env bash
# Shrinks the PNG figures in place before they are committed (docs/images ships in the npm package,
# under the size budget that .ci/pack-budget.ts checks): a 256-colour palette where pngquant keeps
# the picture (quality 60-90, no dithering: dithering noise compresses badly, and these figures show no banding without it), else lossless; then optipng.
#   apt-get install -y pngquant optipng
#   bash scripts/optimise-images.sh [FILE.png ...]   (default: every PNG under docs/images)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v pngquant >/dev/null && command -v optipng >/dev/null || { echo "needs pngquant and optipng (apt-get install -y pngquant optipng)" >&2; exit 1; }
if [ $# -eq 0 ]; then mapfile -t files < <(find docs/images -name '*.png' | sort); else files=("$@"); fi
for f in "${files[@]}"; do
  before=$(stat -c%s "$f")
  # Exit 98/99: the palette would be larger, or below the quality floor; the file is then left as it is.
  pngquant --quality=60-90 --nofs --speed 1 --strip --skip-if-larger --force --ext .png -- "$f" || true
  optipng -quiet -o5 -strip all "$f"
  echo "$f: $before -> $(stat -c%s "$f") bytes"
done
