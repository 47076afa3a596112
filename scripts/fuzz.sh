#!/usr/bin/env bash
# Longer fuzzing on demand (`make fuzz`): the frame parser and the line encoder, with atheris,
# then the encoder's hypothesis round trip against real servers (PROPERTY_EXAMPLES, 5000).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 600; CI runs each for ~10-20 s in pytest)
# Seeds are read from the corpora in the repo (tests/market/corpus_ingest, tests/market/corpus_lineproto);
# new interesting inputs go to .fuzz/<target>/ (not committed: copy the ones worth keeping).
# A crash leaves its input as .fuzz/<target>/crash-* and makes this script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-${FUZZ_SECONDS:-600}}"
PY="${PY:-.venv/bin/python}"
"$PY" -c 'import atheris' 2>/dev/null || { echo "atheris is not installed in $PY" >&2; exit 2; }
status=0
run() {  # name, harness, seed corpus, max_len
  local name=$1 harness=$2 seeds=$3 max_len=$4 work=".fuzz/$1"
  mkdir -p "$work"
  echo "== fuzzing $name for ${SECONDS_PER_TARGET}s ($harness, seeds $seeds)"
  if ! "$PY" "$harness" "$work" "$seeds" -max_total_time="$SECONDS_PER_TARGET" \
      -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$work/" 2>"$work/log.txt"; then
    echo "!! $name failed; see $work/log.txt and $work/crash-*" >&2
    status=1
  fi
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$work/log.txt" || true
}
run ingest tests/market/fuzz_ingest.py tests/market/corpus_ingest 4096
run lineproto tests/market/fuzz_lineproto.py tests/market/corpus_lineproto 512
# The encoder's round trip through the real servers, with many more examples than make test.
echo "== round-trip property tests against influxd and VictoriaMetrics"
GALFRIDAY_PROPERTY_EXAMPLES="${PROPERTY_EXAMPLES:-5000}" "$PY" -m pytest -q \
  tests/series/test_roundtrip_property.py || status=1
exit "$status"
