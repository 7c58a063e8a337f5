"""A CloudEvents HTTP receiver built on the official Python SDK (PyPI
`cloudevents` 1.x), to check Switchyard's requests with an independent
implementation of the CloudEvents HTTP protocol binding.

    PYTHONPATH=$(scripts/py-cloudevents) python3 tests/it/support/ce_receiver.py OUT.jsonl

Listens on 127.0.0.1 on a free port and prints the port as the first line of
stdout. Every request is answered 202 once the SDK has parsed it, and every
event in it becomes one JSON line in OUT.jsonl:

    {"mode": "structured|binary|batch",  # the last segment of the URL path
     "binding": "structured|binary|batch",  # what the request itself says
     "contentType": "...",                # the request's Content-Type
     "attributes": {...},                 # every attribute the SDK reports
     "data": ...}                         # the data the SDK decoded

The binding is recognised from the request, not from the URL: a batch by
`Content-Type: application/cloudevents-batch+json`, a binary event by the SDK's
own test for the required `ce-*` headers, a structured one by
`Content-Type: application/cloudevents+json`. Structured and binary requests
are parsed by `cloudevents.http.from_http`; each element of a batch by
`cloudevents.http.from_json`, the SDK's parser of the JSON event format.

A request that is not a CloudEvents request, or that the SDK rejects, is
answered 400 and recorded as {"mode": ..., "error": "..."}.
"""

import base64
import datetime
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from cloudevents.http import from_http, from_json
from cloudevents.sdk.converters import is_binary

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


def media_type(content_type):
    return content_type.split(";", 1)[0].strip().lower()


def attributes_of(event):
    """Every attribute the SDK reports, as JSON (times as strings)."""
    out = {}
    for name, value in event.get_attributes().items():
        if isinstance(value, datetime.datetime):
            value = value.isoformat()
        out[name] = value
    return out


def data_of(event):
    """The data as JSON: bytes (from `data_base64`, or a body that is not
    JSON) as {"base64": ...}, so a test sees they were not JSON."""
    data = event.get_data()
    if isinstance(data, (bytes, bytearray)):
        return {"base64": base64.b64encode(data).decode("ascii")}
    return data


class Recorder:
    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8")
        self.lock = threading.Lock()

    @staticmethod
    def lines(records):
        return "".join(json.dumps(r) + "\n" for r in records)

    def write(self, lines):
        with self.lock:
            self.file.write(lines)
            self.file.flush()


def parse(headers, body):
    """(binding, events) for one request, or raises what the SDK raised."""
    content_type = headers.get("content-type", "")
    media = media_type(content_type)
    if media == BATCH:
        elements = json.loads(body)
        if not isinstance(elements, list):
            raise ValueError(f"a batch must be a JSON array, not {type(elements).__name__}")
        return "batch", [from_json(json.dumps(e)) for e in elements]
    if is_binary(headers):
        return "binary", [from_http(headers, body)]
    if media == STRUCTURED:
        return "structured", [from_http(headers, body)]
    raise ValueError(f"not a CloudEvents request (Content-Type {content_type!r}, no ce-* headers)")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    recorder = None

    def do_POST(self):
        mode = urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]
        body = self.read_body()
        # Header names are case-insensitive; the SDK looks them up in lower case.
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            binding, events = parse(headers, body)
            lines = Recorder.lines(
                {
                    "mode": mode,
                    "binding": binding,
                    "contentType": headers.get("content-type"),
                    "attributes": attributes_of(event),
                    "data": data_of(event),
                }
                for event in events
            )
        except Exception as e:  # noqa: BLE001  every rejection is a finding
            error = f"{type(e).__name__}: {e}"
            self.recorder.write(Recorder.lines([{"mode": mode, "error": error}]))
            self.answer(400, error + "\n")
            return
        self.recorder.write(lines)
        self.answer(202, "")

    def read_body(self):
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def answer(self, status, text):
        payload = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):  # noqa: A002  quiet
        pass


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: ce_receiver.py OUT.jsonl")
    Handler.recorder = Recorder(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
