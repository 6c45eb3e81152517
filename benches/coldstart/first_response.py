#!/usr/bin/env python3
"""Times one server process from its start to its first answered request.

    first_response.py URL -- COMMAND [ARG ...]

Starts COMMAND, then connects to URL's host and port and sends a GET for
URL's path every millisecond until an answer with a 2xx status arrives;
prints the milliseconds from just before the start to that answer, then
stops COMMAND with SIGTERM (SIGKILL after 10 s). Polling costs at most
one millisecond of resolution: a refused connection returns at once.
Exit status 1, and no figure, if COMMAND exits or nothing answers within
READY_TIMEOUT seconds (default 60).
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse


def answered(host, port, path):
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            conn.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            head = conn.recv(64)
            return head.startswith(b"HTTP/1.1 2")
    except OSError:
        return False


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit(__doc__)
    url = urllib.parse.urlsplit(sys.argv[1])
    command = sys.argv[3:]
    timeout = float(os.environ.get("READY_TIMEOUT", "60"))
    started = time.monotonic()
    child = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while not answered(url.hostname, url.port, url.path or "/"):
            if child.poll() is not None:
                sys.exit(f"{command[0]} exited ({child.returncode}) before answering")
            if time.monotonic() - started > timeout:
                sys.exit(f"nothing answered {sys.argv[1]} within {timeout} s")
            time.sleep(0.001)
        print(f"{(time.monotonic() - started) * 1000:.1f}")
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


if __name__ == "__main__":
    main()
