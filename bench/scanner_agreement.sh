#!/usr/bin/env bash
# scanner_agreement.sh: do `sluice scan` and `cargo audit` find the same advisories in real
# Cargo.lock files, offline, against the same RustSec snapshot?
#
# Method: the fixtures are the Cargo.lock files shipped inside the .crate archives of older
# releases of well-known Rust programs (crates/vuln/tests/fixtures/cargo-locks/<crate>-<ver>.lock,
# lockfile formats 1 to 4). The advisory data is ../shared/advisory-db/rustsec (see its
# SOURCE.md). cargo-audit is installed once from crates.io into bench/.work/cargo-audit
# (`cargo install cargo-audit --locked`; cached) and reads a git copy of the RustSec snapshot
# (it insists on a git repository): `cargo audit --db <copy> --no-fetch --no-yanked --file
# <lock> --json`. sluice imports the same snapshot (`sluice advisories import`) and runs
# `sluice scan <lock> --output json`. Both outputs are reduced to sets of
# "ADVISORY-ID crate@version", separately for vulnerabilities and for the informational
# warnings cargo-audit lists (unmaintained, unsound, notice; yanked crates are not advisories
# and need the crates.io index, so they are left out on both sides).
#
# Output: per file and in total, one figure per line (`scan.<what> N unit`), and every
# differing (file, advisory, crate@version) as a `#` comment. Exit 1 if any set differs.
#
# Knobs (env): SLUICE_BIN (default: `cargo build -p sluice`, then a private copy of
# target/debug/sluice), ADVISORY_DB (default ../shared/advisory-db, else the same snapshot from
#   crates/vuln/tests/fixtures/advisory-db.tar.gz).
# Flags: --update-golden  also write the reduced cargo-audit sets to
#        crates/vuln/tests/fixtures/cargo-locks/<name>.cargo-audit.json, the golden files the
#        normal test suite (`cargo test -p sluice-vuln --test vuln`) compares sluice against.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/tools/lib.sh"

UPDATE_GOLDEN=0
[ "${1:-}" = "--update-golden" ] && UPDATE_GOLDEN=1

ADVISORY_DB="${ADVISORY_DB:-$REPO_ROOT/../shared/advisory-db}"
if [ ! -d "$ADVISORY_DB/rustsec/crates" ] && [ "$ADVISORY_DB" = "$REPO_ROOT/../shared/advisory-db" ]; then
  # no shared/ beside the checkout: the same snapshot, committed as a test fixture
  mkdir -p "$BENCH_WORK/advisory-fixture"
  tar -xzf "$REPO_ROOT/crates/vuln/tests/fixtures/advisory-db.tar.gz" -C "$BENCH_WORK/advisory-fixture"
  ADVISORY_DB="$BENCH_WORK/advisory-fixture/advisory-db"
fi
ADVISORY_DB="$(cd "$ADVISORY_DB" 2>/dev/null && pwd)" || die "no advisory data at ${ADVISORY_DB}"
FIXTURES="$REPO_ROOT/crates/vuln/tests/fixtures/cargo-locks"
W="$BENCH_WORK/scanner-agreement"
command -v jq >/dev/null || die "jq is required (apt-get install jq)"
[ -d "$ADVISORY_DB/rustsec/crates" ] || die "no RustSec snapshot at $ADVISORY_DB/rustsec"
mkdir -p "$W/out"

# cargo-audit, installed once.
AUDIT="$BENCH_WORK/cargo-audit/bin/cargo-audit"
if [ ! -x "$AUDIT" ]; then
  log "installing cargo-audit into $BENCH_WORK/cargo-audit (once; several minutes)"
  cargo install cargo-audit --locked --root "$BENCH_WORK/cargo-audit" >&2 || die "cargo install cargo-audit failed"
fi

# A git copy of the snapshot, rebuilt when the snapshot's files change.
COPY="$W/rustsec-git"
STAMP="$(cd "$ADVISORY_DB/rustsec" && find . -type f -printf '%P %s\n' | sort | sha256sum | cut -c1-16)"
if [ "$(cat "$W/rustsec-git.stamp" 2>/dev/null)" != "$STAMP" ]; then
  log "making a git copy of the RustSec snapshot in $COPY"
  rm -rf "$COPY"
  cp -r "$ADVISORY_DB/rustsec" "$COPY"
  (cd "$COPY" && git init -q && git add -A \
    && git -c user.name=bench -c user.email=bench@localhost commit -qm "RustSec snapshot") || die "git copy failed"
  echo "$STAMP" >"$W/rustsec-git.stamp"
fi

# sluice, and its import of the same snapshot.
if [ -z "${SLUICE_BIN:-}" ]; then
  log "cargo build -p sluice"
  (cd "$REPO_ROOT" && cargo build -q -p sluice) >&2 || die "cargo build -p sluice failed"
  mkdir -p "$BENCH_WORK/bin"
  cp "${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/sluice" "$BENCH_WORK/bin/sluice-scan-bench"
  SLUICE_BIN="$BENCH_WORK/bin/sluice-scan-bench"
fi
"$SLUICE_BIN" advisories import "$ADVISORY_DB/rustsec" --db "$W/sluice-db" >&2 || die "sluice advisories import failed"

echo "# scanner agreement: sluice scan vs cargo audit, offline, RustSec snapshot $ADVISORY_DB/rustsec"
echo "# cargo-audit: $("$AUDIT" --version 2>/dev/null); sluice: $("$SLUICE_BIN" --version)"
machine_note 2>/dev/null || true

reduce_audit='{vulnerabilities: ([.vulnerabilities.list[] | "\(.advisory.id) \(.package.name)@\(.package.version)"] | unique),
  warnings: (.warnings | with_entries(select(.key == "unmaintained" or .key == "unsound" or .key == "notice"))
    | map_values([.[] | select(.advisory != null) | "\(.advisory.id) \(.package.name)@\(.package.version)"] | unique)
    | with_entries(select(.value | length > 0)))}'
reduce_sluice='{vulnerabilities: ([.findings[] | select(.informational == null) | "\(.advisory_id) \(.package)@\(.installed_version)"] | unique),
  warnings: ([.findings[] | select(.informational == "unmaintained" or .informational == "unsound" or .informational == "notice")]
    | group_by(.informational) | map({key: .[0].informational, value: ([.[] | "\(.advisory_id) \(.package)@\(.installed_version)"] | unique)})
    | from_entries)}'

lines() { jq -r "$1" "$2"; }
T_FILES=0 T_CA_V=0 T_SL_V=0 T_CA_W=0 T_SL_W=0 T_ONLY_SL=0 T_ONLY_CA=0 T_ONLY_SL_W=0 T_ONLY_CA_W=0
DIFFS=()
for lock in "$FIXTURES"/*.lock; do
  name="$(basename "$lock" .lock)"
  # cargo-audit exits non-zero when it finds vulnerabilities; its JSON is what counts.
  "$AUDIT" audit --db "$COPY" --no-fetch --no-yanked --file "$lock" --json >"$W/out/$name.cargo-audit.raw.json" 2>"$W/out/$name.cargo-audit.err" || true
  jq -e '.vulnerabilities' "$W/out/$name.cargo-audit.raw.json" >/dev/null 2>&1 || die "cargo audit failed on $lock: $(head -3 "$W/out/$name.cargo-audit.err")"
  jq -S "$reduce_audit" "$W/out/$name.cargo-audit.raw.json" >"$W/out/$name.cargo-audit.json"
  # sluice exits 1 when the gate fails; the JSON report is what counts.
  "$SLUICE_BIN" scan "$lock" --db "$W/sluice-db" --output json >"$W/out/$name.sluice.raw.json" 2>"$W/out/$name.sluice.err" || true
  jq -e '.findings' "$W/out/$name.sluice.raw.json" >/dev/null 2>&1 || die "sluice scan failed on $lock: $(head -3 "$W/out/$name.sluice.err")"
  jq -S "$reduce_sluice" "$W/out/$name.sluice.raw.json" >"$W/out/$name.sluice.json"
  [ "$UPDATE_GOLDEN" = 1 ] && cp "$W/out/$name.cargo-audit.json" "$FIXTURES/$name.cargo-audit.json"

  ca_v="$(lines '.vulnerabilities[]' "$W/out/$name.cargo-audit.json" | sort)"
  sl_v="$(lines '.vulnerabilities[]' "$W/out/$name.sluice.json" | sort)"
  ca_w="$(lines '.warnings | to_entries[] | .key as $k | .value[] | "\($k) \(.)"' "$W/out/$name.cargo-audit.json" | sort)"
  sl_w="$(lines '.warnings | to_entries[] | .key as $k | .value[] | "\($k) \(.)"' "$W/out/$name.sluice.json" | sort)"
  count() { [ -z "$1" ] && echo 0 || printf '%s\n' "$1" | wc -l; }
  only_sl="$(comm -13 <(printf '%s\n' "$ca_v" | sed '/^$/d') <(printf '%s\n' "$sl_v" | sed '/^$/d'))"
  only_ca="$(comm -23 <(printf '%s\n' "$ca_v" | sed '/^$/d') <(printf '%s\n' "$sl_v" | sed '/^$/d'))"
  only_sl_w="$(comm -13 <(printf '%s\n' "$ca_w" | sed '/^$/d') <(printf '%s\n' "$sl_w" | sed '/^$/d'))"
  only_ca_w="$(comm -23 <(printf '%s\n' "$ca_w" | sed '/^$/d') <(printf '%s\n' "$sl_w" | sed '/^$/d'))"
  n_ca_v=$(count "$ca_v") n_sl_v=$(count "$sl_v") n_ca_w=$(count "$ca_w") n_sl_w=$(count "$sl_w")
  n_only_sl=$(count "$only_sl") n_only_ca=$(count "$only_ca") n_only_sl_w=$(count "$only_sl_w") n_only_ca_w=$(count "$only_ca_w")
  echo "scan.$name.cargo_audit.vulnerabilities $n_ca_v advisories"
  echo "scan.$name.sluice.vulnerabilities $n_sl_v advisories"
  echo "scan.$name.cargo_audit.warnings $n_ca_w advisories"
  echo "scan.$name.sluice.warnings $n_sl_w advisories"
  echo "scan.$name.diff.only_sluice $((n_only_sl + n_only_sl_w)) advisories"
  echo "scan.$name.diff.only_cargo_audit $((n_only_ca + n_only_ca_w)) advisories"
  while IFS= read -r l; do [ -n "$l" ] && DIFFS+=("# $name.lock: vulnerability $l: only sluice"); done <<<"$only_sl"
  while IFS= read -r l; do [ -n "$l" ] && DIFFS+=("# $name.lock: vulnerability $l: only cargo-audit"); done <<<"$only_ca"
  while IFS= read -r l; do [ -n "$l" ] && DIFFS+=("# $name.lock: warning $l: only sluice"); done <<<"$only_sl_w"
  while IFS= read -r l; do [ -n "$l" ] && DIFFS+=("# $name.lock: warning $l: only cargo-audit"); done <<<"$only_ca_w"
  T_FILES=$((T_FILES + 1))
  T_CA_V=$((T_CA_V + n_ca_v)) T_SL_V=$((T_SL_V + n_sl_v)) T_CA_W=$((T_CA_W + n_ca_w)) T_SL_W=$((T_SL_W + n_sl_w))
  T_ONLY_SL=$((T_ONLY_SL + n_only_sl)) T_ONLY_CA=$((T_ONLY_CA + n_only_ca))
  T_ONLY_SL_W=$((T_ONLY_SL_W + n_only_sl_w)) T_ONLY_CA_W=$((T_ONLY_CA_W + n_only_ca_w))
done

echo "# totals over all lockfiles (vulnerabilities; then informational warnings)"
echo "scan.lockfiles $T_FILES files"
echo "scan.cargo_audit.advisories $T_CA_V advisories"
echo "scan.sluice.advisories $T_SL_V advisories"
echo "scan.diff.only_sluice $T_ONLY_SL advisories"
echo "scan.diff.only_cargo_audit $T_ONLY_CA advisories"
echo "scan.cargo_audit.warnings $T_CA_W advisories"
echo "scan.sluice.warnings $T_SL_W advisories"
echo "scan.diff.warnings.only_sluice $T_ONLY_SL_W advisories"
echo "scan.diff.warnings.only_cargo_audit $T_ONLY_CA_W advisories"
if [ "${#DIFFS[@]}" -gt 0 ]; then
  printf '%s\n' "${DIFFS[@]}"
  exit 1
fi
echo "# identical advisory sets on every file"
[ "$UPDATE_GOLDEN" = 1 ] && echo "# golden files updated in $FIXTURES"
exit 0
