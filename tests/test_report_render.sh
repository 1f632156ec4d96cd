#!/usr/bin/env bash
# A fixture run's HTML report as a person sees it: rendered by headless
# Chromium at a laptop and a phone width. Checks that every chart is there
# and carries data points in the rendered page, that the page names nothing
# to load from elsewhere, that `packptq report` renders the same page from
# the run's JSON, and that the screenshots are not blank; they are kept in
# $PACKPTQ_REPORT_PNG_DIR when that is set, to look at.
# Usage: test_report_render.sh PACKPTQ FIXTURES_DIR
set -euo pipefail
packptq=$1 fixtures=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for tool in chromium identify python3; do
  command -v "$tool" > /dev/null || { echo "missing $tool (bash tools/setup_debian.sh installs it)"; exit 1; }
done

model="$fixtures/models/resnet18_w16"
"$packptq" --dataset_path "$fixtures/fashion32" --model_name resnet18 \
  --model_config "$model/config.json" --weights "$model/model.pth" --weight_bits 4 \
  --activation_bits 4 --weight_channel_wise --enable_mixed_precision --calibration_samples 64 \
  --calibration_iterations 20 --threads 2 --output_dir "$work/run" \
  --report_json "$work/run/report.json" > "$work/quantize.log" 2>&1 ||
  { tail -20 "$work/quantize.log"; exit 1; }
html=$(ls "$work"/run/*_resnet18_w4_a4_mixed_precision.html)
"$packptq" report "$work/run/report.json" -o "$work/again.html" > /dev/null
cmp "$html" "$work/again.html"

# Any name lookup fails, so a load from elsewhere could not succeed silently.
chrome=(chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars
        --host-resolver-rules="MAP * ~NOTFOUND" --user-data-dir="$work/profile")
"${chrome[@]}" --dump-dom "file://$html" > "$work/dom.html" 2> "$work/chromium.log"
python3 - "$work/dom.html" <<'PY'
import re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
charts = re.findall(r'<svg id="([^"]+)"(.*?)</svg>', dom, re.S)
ids = [c[0] for c in charts]
expected = ["chart-phases", "chart-unit-scores", "chart-unit-terms", "chart-pack-bits",
            "chart-final-loss", "chart-layer-scales", "chart-layer-bits", "chart-sqnr",
            "chart-cosine"]
missing = [e for e in expected if e not in ids]
assert not missing, f"charts missing from the rendered page: {missing}"
curves = [i for i in ids if i.startswith("chart-curve-")]
assert len(curves) >= 5, f"expected a loss curve per target, got {curves}"
for chart_id, body in charts:
    points = len(re.findall(r'class="(?:pt|bar)"', body))
    lines = re.findall(r'class="line"[^>]*points="([^"]+)"', body)
    assert points or lines, f"{chart_id} has no data points"
    assert "no data" not in body, f"{chart_id} says it has no data"
outside = re.findall(r'(?:src|href)="(?!#)[^"]*"|url\(|@import|<script|<link', dom)
assert not outside, f"the page refers to something outside it: {outside[:3]}"
assert "Content-Security-Policy" in dom
print(f"rendered page: {len(charts)} charts with data, nothing loaded from elsewhere")
PY

for width in 1280 390; do
  png="$work/report_$width.png"
  "${chrome[@]}" --window-size="$width,2400" --screenshot="$png" "file://$html" \
    >> "$work/chromium.log" 2>&1
  read -r w h spread < <(identify -format "%w %h %[fx:standard_deviation]\n" "$png")
  echo "screenshot $width px wide: ${w}x${h}, pixel spread $spread"
  [ "$w" -eq "$width" ] || { echo "screenshot width $w, expected $width"; exit 1; }
  awk -v s="$spread" 'BEGIN { exit !(s > 0.05) }' || { echo "screenshot $width px is blank"; exit 1; }
  if [ -n "${PACKPTQ_REPORT_PNG_DIR:-}" ]; then cp "$png" "$PACKPTQ_REPORT_PNG_DIR/"; fi
done
