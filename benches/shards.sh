#!/usr/bin/env bash
# The shard figures of docs/BENCHMARKS.md (SPEC §10, issue 33): interleaved rounds of
#   1. `billrun shard` of a generated night into N shards (one process, all threads),
#   2. the whole run (one process, all threads),
#   3. the N shard runs side by side, one thread each,
# each timed by /usr/bin/time (wall seconds, peak RSS), printed as a Markdown table with the
# split / run and shards / run ratios of the round.
#
# usage: benches/shards.sh BIN DATA [N] [ROUNDS]
#   BIN   a release billrun (e.g. target/release/billrun)
#   DATA  a dataset of `billrun generate --out DATA` (Parquet), e.g. 1M accounts
#   N     shards (default 2); ROUNDS (default 5)
# Scratch space: $TMPDIR (or /tmp)/billrun-shards-bench, removed at the end.
set -euo pipefail
BIN=$1 DATA=$2 N=${3:-2} ROUNDS=${4:-5}
W=${TMPDIR:-/tmp}/billrun-shards-bench
trap 'rm -rf "$W"' EXIT

# Run a command under /usr/bin/time; print "<wall s> <peak KB>".
timed() {
  /usr/bin/time -f "%e %M" -o "$W/time" "$@" >/dev/null 2>"$W/stderr" || { cat "$W/stderr" >&2; exit 1; }
  cat "$W/time"
}

echo "| round | split | whole run | split / run | $N shards × 1 thread side by side (largest peak) | shards / run |"
echo "|---|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  rm -rf "$W" && mkdir -p "$W"
  read -r split split_kb < <(timed "$BIN" shard --shard-count "$N" --out "$W/split" --state "$DATA/state" \
    --usage "$DATA/usage.parquet" --credits "$DATA/credits.parquet" --events "$DATA/events.parquet")
  read -r whole whole_kb < <(timed "$BIN" run --job "$DATA/job.toml" --state "$DATA/state" \
    --usage "$DATA/usage.parquet" --credits "$DATA/credits.parquet" --events "$DATA/events.parquet" \
    --as-of 2026-11-22 --output "$W/whole")
  sync
  start=$(date +%s.%N)
  for i in $(seq 0 $((N - 1))); do
    S="$W/split/shard=$i"
    /usr/bin/time -f "%e %M" -o "$W/time-$i" "$BIN" run --job "$DATA/job.toml" --shard "$i/$N" --threads 1 \
      --state "$S/state" --usage "$S/usage" --credits "$S/credits" --events "$S/events" \
      --as-of 2026-11-22 --output "$W/shard-$i" >/dev/null 2>"$W/stderr-$i" &
  done
  wait
  shards=$(echo "$(date +%s.%N) - $start" | bc)
  shard_kb=$(cat "$W"/time-* | awk '{print $2}' | sort -n | tail -1)
  printf "| %d | %.2f s (%.2f GiB) | %.2f s (%.2f GiB) | %.2f | %.2f s (%.2f GiB) | %.2f |\n" "$r" \
    "$split" "$(echo "$split_kb / 1048576" | bc -l)" "$whole" "$(echo "$whole_kb / 1048576" | bc -l)" \
    "$(echo "$split / $whole" | bc -l)" "$shards" "$(echo "$shard_kb / 1048576" | bc -l)" \
    "$(echo "$shards / $whole" | bc -l)"
done
