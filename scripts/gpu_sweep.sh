#!/usr/bin/env bash
# Tuning sweep in one device call: builds copies of the library with some constants changed (each change
# an exact text substitution, refused if the text is not found), then benchmarks the rows they touch for
# every copy in the same run, and profiles the current build kernel by kernel. While the copies build (CPU
# only), racecheck runs over the GPU tests given in RACECHECK_K.
# Usage: bash scripts/gpu_sweep.sh OUTDIR VARIANTS_FILE [SECONDS, default 540]
# VARIANTS_FILE: one variant per line, `name<TAB>file<TAB>old<TAB>new[<TAB>file<TAB>old<TAB>new ...]`.
# OUTDIR receives sweep.txt (each variant's rows side by side), profile.txt, racecheck.log, logs.tar.gz.
set -uo pipefail
out=${1:?usage: gpu_sweep.sh OUTDIR VARIANTS_FILE [SECONDS]}
variants=${2:?usage: gpu_sweep.sh OUTDIR VARIANTS_FILE [SECONDS]}
budget=${3:-540}
rows=${ROWS:-conv1.dgrad,conv3,conv4,conv5.wgrad,lrn,pool,softmax}
mkdir -p "$out"
out=$(cd "$out" && pwd)
variants=$(cd "$(dirname "$variants")" && pwd)/$(basename "$variants")
cd "$(dirname "$0")/.."
root=$(pwd)
export PYTHONUNBUFFERED=1
deadline=$((SECONDS + budget))
left() { local l=$((deadline - SECONDS - 20)); [ "$l" -gt "$1" ] && l=$1; [ "$l" -lt 1 ] && l=1; echo "$l"; }
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)
export PYALEXNET_CUDA=ON PYALEXNET_CUDA_ARCHS=${arch:+${arch}-real}
logs=$(mktemp -d)

echo "== base build" | tee "$out/sweep.txt"
python3 -m pip install --no-build-isolation --no-deps -e . > "$logs/build_base.log" 2>&1 || { tail -20 "$logs/build_base.log"; exit 1; }

if [ -n "${RACECHECK_K:-}" ]; then
  (timeout "$(left 180)" compute-sanitizer --tool racecheck --error-exitcode 99 --print-limit 50 \
     python3 -m pytest -m gpu -q -p no:cacheprovider -k "$RACECHECK_K" tests > "$out/racecheck.log" 2>&1
   echo "racecheck rc $?" >> "$out/racecheck.log") &
  race=$!
fi

names=(base)
while IFS= read -r line; do
  [ -z "$line" ] && continue
  case "$line" in \#*) continue ;; esac
  name=${line%%$'\t'*}
  dir=/tmp/variant_$name
  rm -rf "$dir" && mkdir -p "$dir"
  tar -C "$root" --exclude=./.git --exclude=./build --exclude='*.so' -cf - . | tar -C "$dir" -xf -
  python3 - "$dir" "$line" <<'EOF' || { echo "variant $name: substitution failed" | tee -a "$out/sweep.txt"; continue; }
import sys
d, fields = sys.argv[1], sys.argv[2].split("\t")[1:]
for f, old, new in zip(fields[0::3], fields[1::3], fields[2::3]):
    p = f"{d}/{f}"
    s = open(p).read()
    if s.count(old) != 1:
        sys.exit(f"{f}: '{old}' found {s.count(old)} times")
    open(p, "w").write(s.replace(old, new))
    print(f"  {f}: {old!r} -> {new!r}")
EOF
  names+=("$name")
  echo "== variant $name: $(echo "$line" | cut -f2- | tr '\t' ' ')" >> "$out/sweep.txt"
  (cd "$dir" && CMAKE_BUILD_PARALLEL_LEVEL=8 python3 setup.py build_ext --inplace > "$logs/build_$name.log" 2>&1 </dev/null ||
     echo "variant $name: build failed" >> "$out/sweep.txt") &
done < "$variants"
wait $(jobs -p | grep -v "^${race:-x}$") 2>/dev/null
if [ -n "${race:-}" ]; then
  echo "== waiting for racecheck" >> "$out/sweep.txt"
  wait "$race"
  grep -E "RACECHECK SUMMARY|ERROR SUMMARY|passed|failed|rc " "$out/racecheck.log" | tail -4 | tee -a "$out/sweep.txt"
fi

echo "== profile (base)" > "$out/profile.txt"
timeout "$(left 90)" python3 -m benchmarks.profile_kernels --only "$rows" --calls 5 >> "$out/profile.txt" 2>&1

for name in "${names[@]}"; do
  dir=$root
  [ "$name" = base ] || dir=/tmp/variant_$name
  [ -n "$(ls "$dir"/pyalexnet/_C*.so 2>/dev/null)" ] || { echo "variant $name: no module" >> "$out/sweep.txt"; continue; }
  echo "== bench $name" >> "$out/sweep.txt"
  (cd "$dir" && timeout "$(left 80)" python3 -m pyalexnet bench --device cuda --only "$rows" --repeats 20 --no-chart \
     --out "$logs/bench_$name" > "$logs/bench_$name.log" 2>&1)
  grep -E "^\| (conv|lrn|pool|softmax)" "$logs/bench_$name"/bench_*.md | cut -d"|" -f2-5,11,12 >> "$out/sweep.txt"
done
tar czf "$out/logs.tar.gz" -C "$logs" . && rm -rf "$logs"
cat "$out/sweep.txt"
