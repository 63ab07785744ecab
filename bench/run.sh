#!/usr/bin/env bash
# Frontdesk benchmark: cold start, idle RSS, throughput (wrk), binary size.
# Usage: bash bench/run.sh
# Knobs: BENCH_DURATION (10s), BENCH_STARTS (20), BENCH_CONNECTIONS (64),
#        BENCH_THREADS (2), BENCH_BIN (use this binary, skip cargo build).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$BENCH_DIR/.."

DURATION="${BENCH_DURATION:-10s}"
STARTS="${BENCH_STARTS:-20}"
CONNS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"

log() { echo "[bench] $*" >&2; }

# ---------------------------------------------------------------- build
if [[ -n "${BENCH_BIN:-}" ]]; then
    BIN="$BENCH_BIN"
    log "using prebuilt binary $BIN (BENCH_BIN set; skipping cargo build)"
else
    log "cargo build --release"
    cargo build --release
    BIN="${CARGO_TARGET_DIR:-target}/release/frontdesk"
fi
[[ -x "$BIN" ]] || { log "binary not found or not executable: $BIN"; exit 1; }
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

# ---------------------------------------------------------------- wrk
if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; then
        DEBIAN_FRONTEND=noninteractive apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y wrk
    fi
fi

# ---------------------------------------------------------------- setup
tmp="$(mktemp -d)"
SERVER_PID=""
CHILD_PID=""   # long-running foreground helper (coldstart.py / wrk), run via run_child
cleanup() {
    local rc=$?
    if [[ -n "$CHILD_PID" ]] && kill -0 "$CHILD_PID" 2>/dev/null; then
        kill -TERM "$CHILD_PID" 2>/dev/null || true
        wait "$CHILD_PID" 2>/dev/null || true
    fi
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 && -s "$tmp/server.log" ]]; then
        log "last lines of server.log:"; tail -n 20 "$tmp/server.log" >&2 || true
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Run a command in the background and wait for it, so INT/TERM traps fire
# immediately instead of after the command finishes.
run_child() {
    "$@" &
    CHILD_PID=$!
    local rc=0
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    return "$rc"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

mkdir -p "$tmp/data"
export APP_ENV=development
export DATA_DIR="$tmp/data"
export DATABASE_URL="sqlite://$tmp/data/bench.db"
# Per-request log lines are INFO; BENCH_LOG_LEVEL=info measures with them on.
export LOG_LEVEL="${BENCH_LOG_LEVEL:-warn}"
PORT="$(free_port)"
export PORT
BASE="http://127.0.0.1:$PORT"

start_server() {
    "$BIN" >>"$tmp/server.log" 2>&1 </dev/null &
    SERVER_PID=$!
    local i
    for i in $(seq 200); do   # up to ~10 s
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/health" || true)" == 200 ]]; then
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || { log "server exited during startup"; SERVER_PID=""; return 1; }
        sleep 0.05
    done
    log "server did not answer 200 on /health within 10 s"
    return 1
}

stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# ---------------------------------------------------------------- warm-up (migrations)
log "warm-up start (applies migrations) on port $PORT"
start_server
stop_server

# ---------------------------------------------------------------- cold start
log "cold start x$STARTS"
BENCH_LOG="$tmp/server.log" run_child python3 "$BENCH_DIR/coldstart.py" "$BIN" "$STARTS" >"$tmp/coldstart.out"
cat "$tmp/coldstart.out" >&2
COLD_LINE="$(grep -v '^COLDSTART' "$tmp/coldstart.out" | head -n1)"

# ---------------------------------------------------------------- idle RSS
log "idle RSS"
export RATE_LIMIT_PER_MINUTE=0   # for the API throughput run below
start_server
sleep 1
RSS_KB="$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status")"
RSS_MB="$(awk -v k="$RSS_KB" 'BEGIN {printf "%.1f", k/1024}')"
log "VmRSS: $RSS_MB MB"

# ---------------------------------------------------------------- throughput
# wrk latency -> ms (wrk prints e.g. 812.00us, 3.10ms, 1.02s)
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.2f", n }'
}
run_wrk() {   # name url [extra wrk args...]  (runs in the main shell; output -> $tmp/wrk-NAME.out)
    local name=$1 url=$2; shift 2
    log "wrk -t$THREADS -c$CONNS -d$DURATION --latency $* $url"
    run_child wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" "$url" >"$tmp/wrk-$name.out"
    cat "$tmp/wrk-$name.out" >&2
}
wrk_result() {   # name -> "rps p99_ms [errors]"
    local name=$1 rps p99 errs
    rps="$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$tmp/wrk-$name.out")"
    p99="$(awk '$1 == "99%" {print $2}' "$tmp/wrk-$name.out")"
    errs="$(grep -E 'Non-2xx|Socket errors' "$tmp/wrk-$name.out" | tr -s ' ' | paste -sd';' - || true)"
    printf '%s %s %s\n' "${rps:-0}" "$(to_ms "${p99:-0}")" "${errs:-}"
}

run_wrk health "$BASE/health"
WRK_RES="$(wrk_result health)"
read -r HEALTH_RPS HEALTH_P99 HEALTH_ERRS <<<"$WRK_RES"

CSS_PATH="$(curl -sL "$BASE/" | grep -o '/static/app\.[0-9a-f]*\.css' | head -n1 || true)"
if [[ -n "$CSS_PATH" ]]; then
    run_wrk static "$BASE$CSS_PATH" -H 'Accept-Encoding: br'
    WRK_RES="$(wrk_result static)"
    read -r STATIC_RPS STATIC_P99 STATIC_ERRS <<<"$WRK_RES"
    STATIC_LINE="static asset $CSS_PATH (br) @$CONNS conns: $STATIC_RPS req/s, p99 $STATIC_P99 ms"
    [[ -z "${STATIC_ERRS:-}" ]] || STATIC_LINE+="   [$STATIC_ERRS]"
else
    STATIC_LINE="static asset (br): skipped (no /static/app.<hash>.css href found in GET /)"
fi
# The JSON API as a script calls it: one organization with three agents and a
# read key, written straight into the database (WAL lets the running server
# see it), and GET /api/v1/agents with the key. The request budget is off for
# this server (RATE_LIMIT_PER_MINUTE=0), or the key would be answered 429.
API_KEY="fd_bench$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
python3 - "$tmp/data/bench.db" "$API_KEY" <<'PY'
import hashlib, sqlite3, sys
db, key = sys.argv[1], sys.argv[2]
now = "2026-01-01 00:00:00"
c = sqlite3.connect(db, timeout=10)
c.execute("PRAGMA foreign_keys = ON")
org = c.execute("INSERT INTO organizations (slug, name, created_at, updated_at) "
                "VALUES ('bench-api', 'Bench API', ?, ?)", (now, now)).lastrowid
user = c.execute("INSERT INTO users (email, name, email_verified_at, created_at, updated_at) "
                 "VALUES ('bench@api.test', 'Bench', ?, ?, ?)", (now, now, now)).lastrowid
c.execute("INSERT INTO memberships (organization_id, user_id, role, created_at, updated_at) "
          "VALUES (?, ?, 'owner', ?, ?)", (org, user, now, now))
for name in ("Support", "Sales", "Returns"):
    c.execute("INSERT INTO agents (organization_id, name, slug, created_at, updated_at) "
              "VALUES (?, ?, ?, ?, ?)", (org, name, name.lower(), now, now))
c.execute("INSERT INTO api_keys (organization_id, name, prefix, key_hash, scopes, created_by, created_at) "
          "VALUES (?, 'bench', ?, ?, 'read', ?, ?)",
          (org, key[:10], hashlib.sha256(key.encode()).hexdigest(), user, now))
c.commit()
PY
run_wrk api "$BASE/api/v1/agents" -H "Authorization: Bearer $API_KEY"
WRK_RES="$(wrk_result api)"
read -r API_RPS API_P99 API_ERRS <<<"$WRK_RES"
API_LINE="API GET /api/v1/agents (read key, 3 agents) @$CONNS conns: $API_RPS req/s, p99 $API_P99 ms"
[[ -z "${API_ERRS:-}" ]] || API_LINE+="   [$API_ERRS]"

# The widget as a customer's site loads it: script and styles, brotli.
WIDGET_BR=0
for asset in /widget.js /widget.css; do
    n="$(curl -s -H 'Accept-Encoding: br' -o /dev/null -w '%{size_download}' "$BASE$asset" || echo 0)"
    WIDGET_BR=$((WIDGET_BR + n))
done
WIDGET_LINE="widget (/widget.js + /widget.css, br): $WIDGET_BR bytes   target < 20480"
HEALTH_LINE="/health @$CONNS conns: $HEALTH_RPS req/s, p99 $HEALTH_P99 ms   target >= 30000 req/s"
[[ -z "${HEALTH_ERRS:-}" ]] || HEALTH_LINE+="   [$HEALTH_ERRS]"

stop_server
unset RATE_LIMIT_PER_MINUTE

# ---------------------------------------------------------------- binary size / linkage
SIZE_MB="$(awk -v b="$(stat -c %s "$BIN")" 'BEGIN {printf "%.1f", b/1048576}')"
STRIPPED="unknown"
if command -v file >/dev/null 2>&1; then
    case "$(file -b "$BIN")" in
        *"not stripped"*) STRIPPED="not stripped" ;;
        *stripped*) STRIPPED="stripped" ;;
    esac
fi
LDD_OUT="$(ldd "$BIN" 2>&1 || true)"
LDD_LINES="$(printf '%s\n' "$LDD_OUT" | grep -c . || true)"
if printf '%s\n' "$LDD_OUT" | grep -Eq 'libsqlite3|libpq'; then DYN=yes; else DYN=no; fi
log "ldd ($LDD_LINES lines):"; printf '%s\n' "$LDD_OUT" >&2
log "linked dynamically against libsqlite3/libpq: $DYN"

# ---------------------------------------------------------------- summary
CPU_MODEL="$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
echo
echo "== Frontdesk benchmark (SQLite, release build, LOG_LEVEL=$LOG_LEVEL) =="
echo "machine: $(nproc) cores, ${CPU_MODEL:-unknown CPU}"
echo "$COLD_LINE   target < 50 ms"
echo "idle RSS after start: $RSS_MB MB   target < 25 MB"
echo "$HEALTH_LINE"
echo "$STATIC_LINE"
echo "$API_LINE"
echo "$WIDGET_LINE"
echo "binary size: $SIZE_MB MB ($STRIPPED); ldd: $LDD_LINES lines; dynamic libsqlite3/libpq: $DYN"

# ---------------------------------------------------------------- jobs and email (examples/jobs_bench.rs)
# Runs after the summary above so a slow or failing queue benchmark never hides it.
# PostgreSQL runs too when BENCH_DATABASE_URL (or TEST_DATABASE_URL) is set in the
# environment (inherited). Needs cargo even with BENCH_BIN. BENCH_JOBS / BENCH_EMAILS size it.
: >"$tmp/server.log"   # the server is stopped; keep its log out of a jobs_bench failure
log "cargo run --release --example jobs_bench${BENCH_DATABASE_URL:+ (BENCH_DATABASE_URL set: PostgreSQL too)}"
JOBS_RC=0
run_child cargo run --release --example jobs_bench >"$tmp/jobs.out" || JOBS_RC=$?
echo
cat "$tmp/jobs.out"
if [[ $JOBS_RC -ne 0 ]]; then
    log "jobs_bench failed (exit $JOBS_RC)"
    exit "$JOBS_RC"
fi

# ---------------------------------------------------------------- chat engine (examples/chat_bench.rs)
# Ingestion MB/s, builtin chat turns/s with p50/p95, and time to the first
# streamed byte, over a generated knowledge base of 10,000 passages; PostgreSQL
# too when BENCH_DATABASE_URL (or TEST_DATABASE_URL) is set.
log "cargo run --release --example chat_bench"
CHAT_RC=0
run_child cargo run --release --example chat_bench >"$tmp/chat.out" || CHAT_RC=$?
echo
cat "$tmp/chat.out"
if [[ $CHAT_RC -ne 0 ]]; then
    log "chat_bench failed (exit $CHAT_RC)"
    exit "$CHAT_RC"
fi

# ---------------------------------------------------------------- Stripe webhooks (examples/webhook_bench.rs)
# Acknowledgement latency and events/s of POST /webhooks/stripe; PostgreSQL too
# when BENCH_DATABASE_URL (or TEST_DATABASE_URL) is set. BENCH_EVENTS and
# BENCH_CONCURRENCY size it.
log "cargo run --release --example webhook_bench"
WEBHOOK_RC=0
run_child cargo run --release --example webhook_bench >"$tmp/webhook.out" || WEBHOOK_RC=$?
echo
cat "$tmp/webhook.out"
if [[ $WEBHOOK_RC -ne 0 ]]; then
    log "webhook_bench failed (exit $WEBHOOK_RC)"
    exit "$WEBHOOK_RC"
fi
