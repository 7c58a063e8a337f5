#!/usr/bin/env python3
"""A counting CloudEvents batch receiver for scripts/bench-peer.

    bench_receiver.py PORT [DELAY_MS]

Accepts POSTs on 127.0.0.1:PORT (HTTP/1.1, keep-alive, a thread per
connection), counts the events of each body (structured or batch JSON:
one `"specversion"` per event, counted without parsing the body), answers
200 after DELAY_MS, and answers GET with
{"events", "requests", "first", "last"} (arrival times of the first and the
last event, in seconds since the epoch).
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
DELAY = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0
lock = threading.Lock()
state = {"events": 0, "requests": 0, "first": None, "last": None}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if DELAY:
            time.sleep(DELAY)
        n = body.count(b'"specversion"')
        now = time.time()
        with lock:
            state["events"] += n
            state["requests"] += 1
            if state["first"] is None:
                state["first"] = now
            state["last"] = now
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        with lock:
            body = json.dumps(state).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.request_queue_size = 128
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
