#!/usr/bin/env bash
# Runs the cargo-fuzz targets of sluice for a bounded time each, one after the other.
#
#   scripts/fuzz.sh                      # 60 s per target
#   FUZZ_SECONDS=300 scripts/fuzz.sh     # 5 min per target
#
# Installs cargo-fuzz from crates.io if it is missing, builds on the stable toolchain with
# `--sanitizer none`, seeds an empty corpus from the repository's own examples and
# fixtures, and prints per target:
#
#   fuzz.<target>.executions <N> runs
#   fuzz.<target>.crashes <N> crashes      (crash-, timeout-, oom- and leak- artifacts)
#   fuzz.<target>.exec_per_sec <N> exec/s
#   fuzz.<target>.corpus <N> files
#
# Exits non-zero if a target found a crash or could not be built/run. Safe to re-run:
# corpora (crates/*/fuzz/corpus, git-ignored) grow across runs, artifacts are kept in
# crates/*/fuzz/artifacts/<target>/ and only the ones written by this run are counted.
#
# Environment: FUZZ_SECONDS (default 60), FUZZ_TARGET_DIR (cargo target dir for the fuzz
# builds, default /tmp/fuzz-target, never the workspace's own target/), FUZZ_LOG_DIR
# (libFuzzer logs, default /tmp/fuzz-logs).
# shellcheck disable=SC2317  # the seed_* functions are called indirectly, as "seed_$target".
set -uo pipefail

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-/tmp/fuzz-target}"
FUZZ_LOG_DIR="${FUZZ_LOG_DIR:-/tmp/fuzz-logs}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# crate directory : fuzz target
TARGETS=(
  "crates/spec:parse_sluice_yml"
  "crates/webhook:webhook_parse"
)

log() { printf '%s\n' "fuzz.sh: $*" >&2; }
count_files() { find "$1" -maxdepth 1 -type f | wc -l; }

if ! [[ "$FUZZ_SECONDS" =~ ^[0-9]+$ ]] || [ "$FUZZ_SECONDS" -lt 1 ]; then
  log "FUZZ_SECONDS must be a positive integer, got '$FUZZ_SECONDS'"
  exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked >&2 || { log "cargo install cargo-fuzz failed"; exit 2; }
fi
log "$(cargo fuzz --version)"
mkdir -p "$FUZZ_LOG_DIR"

# --- seeding (only into an empty corpus) --------------------------------------------------

# Writes a webhook_parse input: selector byte, u16 big-endian header-blob length, the
# header blob ("Name: value" lines), then the body file. See the target's source.
webhook_seed() { # out selector blob body_file
  local out="$1" selector="$2" blob="$3" body="$4" len
  len=$(printf '%s' "$blob" | wc -c)
  # shellcheck disable=SC2059  # the format is built from hex digits only.
  {
    printf "\\x$(printf '%02x' "$selector")"
    printf "\\x$(printf '%02x' $((len >> 8)))\\x$(printf '%02x' $((len & 255)))"
    printf '%s' "$blob"
    cat "$body"
  } >"$out"
}

seed_parse_sluice_yml() { # corpus_dir
  local dir="$1" snap name
  # The annotated example in the reference.
  awk '/^```yaml$/{on=1; next} /^```$/{if(on) exit} on' "$ROOT/docs/sluice-yml.md" >"$dir/docs_example.yml"
  # The invalid files behind the snapshot tests: insta stores each as `description:`.
  if command -v python3 >/dev/null 2>&1; then
    for snap in "$ROOT"/crates/spec/tests/snapshots/*.snap; do
      [ -f "$snap" ] || continue
      name="$(basename "$snap" .snap)"
      python3 - "$snap" "$dir/snap_${name#spec__}.yml" <<'PY' || true
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    if line.startswith("description: "):
        open(sys.argv[2], "w", encoding="utf-8").write(json.loads(line[len("description: "):]))
        break
PY
    done
  fi
  printf 'project: shop\nenvironments:\n  production:\n    branch: release\n  staging:\n    branch: main\nservices:\n  web:\n    steps:\n      test:\n        run: make test\n      build:\n        run: make\n' >"$dir/valid_minimal.yml"
  printf 'project: shop\nenvironments: {staging: {branch: main}}\nservices:\n  api:\n    paths:\n      - services/api/**\n    env: {A: x}\n    steps:\n      lint: {run: x, timeout: 5m}\n      test:\n        run: y\n        needs: [lint]\n        retry: {max: 3, on: [timeout], delay: 250ms}\n        workdir: ./services/api/\n' >"$dir/valid_paths_retry.yml"
}

seed_webhook_parse() { # corpus_dir
  local dir="$1" fx="$ROOT/crates/webhook/tests/fixtures" entry ev file idx delivery evh blob hi
  # provider index (Provider::ALL order) : event : fixture
  for entry in \
    "0:push:github_push.json" "0:push:github_push_tag.json" "0:push:github_push_delete.json" \
    "0:ping:github_ping.json" "0:pull_request:github_ping.json" \
    "1:Push Hook:gitlab_push.json" "1:Push Hook:gitlab_push_delete.json" "1:Tag Push Hook:gitlab_tag_push.json" \
    "2:repo;push:bitbucket_cloud_push.json" "2:repo;push:bitbucket_cloud_push_delete.json" \
    "2:repo;refs_changed:bitbucket_server_refs_changed.json" "2:repo;refs_changed:bitbucket_server_delete.json" \
    "2:diagnostics;ping:bitbucket_server_ping.json" \
    "3::generic_push.json" "3::generic_push_short.json"; do
    IFS=: read -r idx ev file <<<"$entry"
    ev="${ev//;/:}"
    [ -f "$fx/$file" ] || continue
    case "$idx" in
      0) delivery=X-GitHub-Delivery; evh=X-GitHub-Event ;;
      1) delivery=X-Gitlab-Event-UUID; evh=X-Gitlab-Event ;;
      2) delivery=X-Request-UUID; evh=X-Event-Key ;;
      3) delivery=X-Sluice-Delivery; evh= ;;
    esac
    blob="Content-Type: application/json"$'\n'"$delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958"$'\n'
    [ -n "$evh" ] && blob+="$evh: $ev"$'\n'
    # Selector high bit set: the target signs the body itself (verified path).
    for hi in 128 0; do
      webhook_seed "$dir/${file%.json}_${ev//[: ]/_}_$hi" $((idx | hi)) "$blob" "$fx/$file"
    done
  done
}

# --- running ---------------------------------------------------------------------------------

status=0
for entry in "${TARGETS[@]}"; do
  crate="${entry%%:*}"
  target="${entry##*:}"
  fuzz_dir="$ROOT/$crate/fuzz"
  corpus="$fuzz_dir/corpus/$target"
  artifacts="$fuzz_dir/artifacts/$target"
  logfile="$FUZZ_LOG_DIR/$target.log"
  mkdir -p "$corpus" "$artifacts"

  if [ "$(count_files "$corpus")" -eq 0 ]; then
    "seed_$target" "$corpus"
    log "$target: seeded corpus with $(count_files "$corpus") files"
  fi

  marker="$(mktemp)"
  log "$target: building and fuzzing for ${FUZZ_SECONDS}s (log: $logfile)"
  (
    cd "$ROOT/$crate" &&
      CARGO_TARGET_DIR="$FUZZ_TARGET_DIR" cargo fuzz run "$target" --sanitizer none -- \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
  ) >"$logfile" 2>&1
  rc=$?

  execs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$logfile" | tail -n1)"
  [ -n "$execs" ] || execs="$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$logfile" | tail -n1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *\([0-9]*\).*/\1/p' "$logfile" | tail -n1)"
  found="$(find "$artifacts" -maxdepth 1 -type f -newer "$marker" \
    \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | sort)"
  crashes="$(printf '%s' "$found" | grep -c . || true)"
  rm -f "$marker"

  echo "fuzz.$target.executions ${execs:-0} runs"
  echo "fuzz.$target.crashes $crashes crashes"
  echo "fuzz.$target.exec_per_sec ${rate:-0} exec/s"
  echo "fuzz.$target.corpus $(count_files "$corpus") files"

  if [ "$crashes" -gt 0 ]; then
    status=1
    log "$target: found $crashes failing input(s):"
    printf '%s\n' "$found" >&2
    log "$target: panic / libFuzzer error from $logfile:"
    grep -E -A2 "panicked at|ERROR: libFuzzer|^SUMMARY: " "$logfile" | head -n 20 >&2
    log "$target: reproduce and minimise (from $ROOT/$crate):"
    grep -E "^\s*cargo fuzz (run|tmin) " "$logfile" | sed 's/^\s*/  /' >&2
  elif [ "$rc" -ne 0 ] || [ -z "$execs" ]; then
    status=1
    log "$target: cargo fuzz exited $rc without an artifact; tail of $logfile:"
    tail -n 40 "$logfile" >&2
  fi
done
exit "$status"
