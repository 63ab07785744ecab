#!/usr/bin/env python3
"""Cold-start timer for Frontdesk (stdlib only).

Measures the wall time from exec of the server binary to the first HTTP 200
answered by GET /health, over N starts. Each started server is then stopped
with SIGTERM and waited for.

Usage:
    coldstart.py BINARY [COUNT]

Environment:
    PORT            port the server listens on (required; passed through to it)
    BENCH_STARTS    default COUNT when not given as an argument (default 20)
    BENCH_HOST      host to probe (default 127.0.0.1)
    BENCH_LOG       file to append server stdout/stderr to (default: discard)
    BENCH_TIMEOUT   seconds to wait for the first 200 per start (default 10)
All other environment variables are passed to the server unchanged.

Output: one human-readable line per start on stderr, then on stdout a summary
line plus a machine-readable line:
    COLDSTART n=20 median_ms=12.345 min_ms=10.100 max_ms=20.400
Exit status is non-zero if any start failed to answer 200 within the timeout.
"""
import errno
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

REQUEST = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def probe(host, port):
    """Return the HTTP status code of GET /health, or None if not connectable yet."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(2.0)
        try:
            s.connect((host, port))
        except OSError as e:
            if e.errno in (errno.ECONNREFUSED, errno.ECONNRESET, errno.EAGAIN):
                return None
            raise
        try:
            s.sendall(REQUEST)
            buf = b""
            while b"\r\n" not in buf:
                chunk = s.recv(256)
                if not chunk:
                    return None  # closed before a status line: not ready
                buf += chunk
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            return None
        parts = buf.split(b"\r\n", 1)[0].split()
        if len(parts) >= 2 and parts[1].isdigit():
            return int(parts[1])
        return None
    finally:
        s.close()


def stop(proc):
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        print("warning: server did not exit within 10 s of SIGTERM; killing",
              file=sys.stderr)
        proc.kill()
        proc.wait()


def one_start(binary, host, port, timeout, log):
    t0 = time.perf_counter()
    proc = subprocess.Popen([binary], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        deadline = t0 + timeout
        while True:
            status = probe(host, port)
            if status == 200:
                return (time.perf_counter() - t0) * 1000.0, proc
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with code {proc.returncode} before /health returned 200")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"no 200 from /health within {timeout} s (last status: {status})")
            # retry immediately (tight loop)
    except BaseException:
        stop(proc)
        raise


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    binary = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else int(os.environ.get("BENCH_STARTS", "20"))
    port = int(os.environ["PORT"])
    host = os.environ.get("BENCH_HOST", "127.0.0.1")
    timeout = float(os.environ.get("BENCH_TIMEOUT", "10"))
    log_path = os.environ.get("BENCH_LOG")

    # Turn SIGTERM/SIGHUP into SystemExit so the finally blocks stop the child.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))

    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    times = []
    try:
        for i in range(count):
            ms, proc = one_start(binary, host, port, timeout, log)
            try:
                times.append(ms)
                print(f"start {i + 1}/{count}: {ms:.2f} ms", file=sys.stderr)
            finally:
                stop(proc)
            if proc.returncode not in (0, -signal.SIGTERM):
                print(f"warning: server exit code after SIGTERM: {proc.returncode}", file=sys.stderr)
    except RuntimeError as e:
        print(f"error: start {len(times) + 1}/{count}: {e}", file=sys.stderr)
        return 1
    finally:
        if log is not subprocess.DEVNULL:
            log.close()

    med = statistics.median(times)
    print(f"cold start (exec -> first 200 /health, n={count}): "
          f"median {med:.1f} ms (min {min(times):.1f}, max {max(times):.1f})")
    print(f"COLDSTART n={count} median_ms={med:.3f} min_ms={min(times):.3f} max_ms={max(times):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
