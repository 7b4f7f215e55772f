# Sourced by the shell tests: start `gridata serve` on a free loopback port.
#
#   start_serve NAME ARGS...   runs `$BIN --home $H serve --addr 127.0.0.1:0 ARGS...` with
#                              stdout/stderr in $WORK/serve.out and serve.log,
#                              sets SERVE_PID and BASE (http://127.0.0.1:PORT),
#                              and exits with NAME's message if it does not start.
# Needs: BIN, H and WORK. The binary is started directly (not through a shell
# function), so SERVE_PID is gridata's own PID and killing it stops the server.
start_serve() {
    local name=$1
    shift
    "$BIN" --home "$H" serve --addr 127.0.0.1:0 "$@" >"$WORK/serve.out" 2>"$WORK/serve.log" &
    SERVE_PID=$!
    for _ in $(seq 1 100); do
        grep -q "listening on" "$WORK/serve.out" 2>/dev/null && break
        sleep 0.1
    done
    BASE=$(grep -o 'http://[0-9.:]*' "$WORK/serve.out" | head -1)
    if [[ -z "$BASE" ]]; then
        cat "$WORK/serve.log" >&2
        echo "$name: gridata serve did not start" >&2
        exit 1
    fi
    echo "$name: gridata serve at $BASE"
}
