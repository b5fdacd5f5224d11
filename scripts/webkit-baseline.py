#!/usr/bin/env python3
"""The floor under the apps' start-up and memory figures on this machine: WebKitGTK's own
MiniBrowser opening a one-paragraph page from 127.0.0.1, with no app around it.

Prints, like the e2e tests (scripts/e2e-figures runs it beside them, so both come from the same
period of the same machine):
  RESULT webkit_bare_page_start_ms  process start -> the page's request reaches the server
  RESULT webkit_bare_loaded_ms      process start -> DOMContentLoaded (the page's second request)
  RESULT webkit_bare_pss_mb         PSS of MiniBrowser and its WebKit processes, 3 s after load

Needs a display (run under xvfb-run) and libwebkit2gtk-4.1-0, which ships MiniBrowser.
"""
import http.server
import os
import socketserver
import subprocess
import sys
import threading
import time

MINIBROWSER = "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser"
# Long enough for a loaded machine, bounded so a hang fails instead of waiting forever.
LOAD_TIMEOUT_S = 30
# The apps' memory is read after their screens settle; the same pause here.
SETTLE_S = 3
PAGE = (
    b"<!doctype html><html><head><meta charset=utf-8><title>bare</title></head>"
    b"<body><p>bare page</p><script>addEventListener('DOMContentLoaded',"
    b"()=>fetch('/loaded'))</script></body></html>"
)

marks = {}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        marks.setdefault(self.path, time.monotonic())
        body = PAGE if self.path == "/" else b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def children(pid):
    """pid and every process under it (WebKit's web and network processes)."""
    found = [pid]
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found += children(int(d))
    return found


def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def main():
    if not os.access(MINIBROWSER, os.X_OK):
        print(f"{MINIBROWSER} not found (package libwebkit2gtk-4.1-0)", file=sys.stderr)
        return 1
    server = socketserver.TCPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    t0 = time.monotonic()
    browser = subprocess.Popen([MINIBROWSER, url], stderr=subprocess.DEVNULL)
    try:
        while "/loaded" not in marks:
            if time.monotonic() - t0 > LOAD_TIMEOUT_S or browser.poll() is not None:
                print("MiniBrowser did not load the page", file=sys.stderr)
                return 1
            time.sleep(0.005)
        time.sleep(SETTLE_S)
        total = 0
        for pid in children(browser.pid):
            try:
                total += pss_kib(pid)
            except OSError:
                pass  # a process that ended meanwhile
    finally:
        browser.terminate()
        browser.wait()
    print(f"RESULT webkit_bare_page_start_ms {1000 * (marks['/'] - t0):.0f}")
    print(f"RESULT webkit_bare_loaded_ms {1000 * (marks['/loaded'] - t0):.0f}")
    print(f"RESULT webkit_bare_pss_mb {total / 1024:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
