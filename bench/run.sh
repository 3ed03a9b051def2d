#!/usr/bin/env bash
# bench/run.sh BIN_DIR LABEL sqlite|postgres|postgres-tls "scenario …" [duration]
# Starts a fake Stripe, a fresh database and the service from BIN_DIR, runs each scenario, then
# the ceilings, and samples VmRSS; outputs under $BENCH_OUT/LABEL (default /tmp/credits-bench).
set -euo pipefail
BIN=$1; LABEL=$2; DB=$3; SCENARIOS=${4:-all}; DUR=${5:-10}
OUT=${BENCH_OUT:-/tmp/credits-bench}/$LABEL; mkdir -p "$OUT"
cat > /tmp/bench-packs.toml <<'TOML'
[[pack]]
id = "standard"
name = "Standard"
credits = 500
unit_amount = 1500
currency = "usd"
stripe_price_id = "price_bench_standard"
TOML
python3 "$(dirname "$0")/../.ci/fake_stripe.py" /tmp/stripe.port > "$OUT/stripe.log" 2>&1 &
STRIPE_PID=$!
sleep 1
export STRIPE_SECRET_KEY=sk_test_bench STRIPE_API_BASE="http://127.0.0.1:$(cat /tmp/stripe.port)"
case $DB in
  sqlite) rm -f /tmp/bench.db*; URL='sqlite:///tmp/bench.db?mode=rwc'; EXTRA=() ;;
  postgres|postgres-tls)
    psql -q -h 127.0.0.1 -U postgres -d test -c 'DROP DATABASE IF EXISTS credits_bench' -c 'CREATE DATABASE credits_bench'
    MODE=disable; [ "$DB" = postgres-tls ] && MODE=require
    URL="postgres://postgres@127.0.0.1:5432/credits_bench?sslmode=$MODE"
    EXTRA=(--backend postgres --postgres-admin "postgres://postgres@127.0.0.1:5432/test?sslmode=$MODE") ;;
esac
DATABASE_URL=$URL STRIPE_WEBHOOK_SECRET=whsec_bench CREDIT_PACKS_FILE=/tmp/bench-packs.toml RUST_LOG=warn \
  "$BIN/credits" > "$OUT/service-$DB.log" 2>&1 &
SVC=$!
for _ in $(seq 100); do curl -sf localhost:8080/readyz >/dev/null && break; sleep 0.2; done
grep VmRSS /proc/$SVC/status > "$OUT/rss-idle-$DB.txt"
( while kill -0 $SVC 2>/dev/null; do grep VmRSS /proc/$SVC/status 2>/dev/null | awk '{print $2}'; sleep 0.2; done ) > "$OUT/rss-$DB.txt" &
for s in $SCENARIOS; do
  if [ "${PROFILE:-0}" = 1 ]; then
    # Past the scenario's set-up (accounts, grants), for most of its run.
    ( sleep 3; perf record -q -g -F 499 -p $SVC -o "$OUT/perf-$DB-$s.data" -- sleep $((DUR - 4)) ) >/dev/null 2>&1 &
    PERF=$!
  fi
  STRIPE_WEBHOOK_SECRET=whsec_bench "$BIN/credits-bench" "$s" -d "$DUR" --no-ceilings "${EXTRA[@]}" 2>&1 | tee -a "$OUT/bench-$DB.txt"
  if [ "${PROFILE:-0}" = 1 ]; then
    wait $PERF
    { perf report -i "$OUT/perf-$DB-$s.data" --no-children --sort comm,dso -g none --stdio 2>/dev/null | grep '%' | head -12
      echo '--- self'
      perf report -i "$OUT/perf-$DB-$s.data" --no-children --sort symbol -g none --stdio 2>/dev/null | grep '%' | sed 's/  */ /g' | head -40
      echo '--- with children'
      perf report -i "$OUT/perf-$DB-$s.data" --children --sort symbol -g none --stdio 2>/dev/null | grep '%' | sed 's/  */ /g' | head -60
    } > "$OUT/perf-$DB-$s.txt" || true
  fi
done
STRIPE_WEBHOOK_SECRET=whsec_bench "$BIN/credits-bench" ceilings -d "$DUR" "${EXTRA[@]}" 2>&1 | tee -a "$OUT/bench-$DB.txt"
echo "peak RSS kB: $(sort -n "$OUT/rss-$DB.txt" | tail -1)" | tee -a "$OUT/bench-$DB.txt"
kill $SVC $STRIPE_PID; wait $SVC 2>/dev/null || true
