"""An OTLP trace receiver built on the OpenTelemetry protobuf definitions
(PyPI `opentelemetry-proto`) and `grpcio`, to check the spans Switchyard
exports with an independent decoder of the wire format.

    PYTHONPATH=$(scripts/py-otlp) python3 tests/it/support/otlp_receiver.py OUT.jsonl

Serves OTLP/HTTP with protobuf bodies (`POST /v1/traces`, or any path) and
OTLP/gRPC (`TraceService/Export`) on 127.0.0.1, each on a free port, and
prints "HTTP_PORT GRPC_PORT" as the first line of stdout. Every span
received becomes one JSON line in OUT.jsonl (written before the export is
answered):

    {"transport": "http|grpc", "path": "/v1/traces", "service": "...",
     "name": "...", "kind": "SPAN_KIND_...", "traceId": "<hex>",
     "spanId": "<hex>", "parentSpanId": "<hex or empty>",
     "links": [{"traceId": ..., "spanId": ...}], "attributes": {...},
     "status": {"code": "STATUS_CODE_...", "message": "..."},
     "headers": {...}}    # the export request's headers (lower-cased)

An HTTP body that is not an ExportTraceServiceRequest is answered 400.
"""

import json
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


def value_of(any_value):
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    value = getattr(any_value, kind)
    if kind == "array_value":
        return [value_of(v) for v in value.values]
    if kind == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in value.values}
    if kind == "bytes_value":
        return value.hex()
    return value


def attributes(kvs):
    return {kv.key: value_of(kv.value) for kv in kvs}


def spans_of(request, transport, path, headers):
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield {
                    "transport": transport,
                    "path": path,
                    "service": resource.get("service.name"),
                    "name": span.name,
                    "kind": trace_pb2.Span.SpanKind.Name(span.kind),
                    "traceId": span.trace_id.hex(),
                    "spanId": span.span_id.hex(),
                    "parentSpanId": span.parent_span_id.hex(),
                    "links": [
                        {"traceId": l.trace_id.hex(), "spanId": l.span_id.hex()}
                        for l in span.links
                    ],
                    "attributes": attributes(span.attributes),
                    "status": {
                        "code": trace_pb2.Status.StatusCode.Name(span.status.code),
                        "message": span.status.message,
                    },
                    "headers": headers,
                }


class Recorder:
    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8")
        self.lock = threading.Lock()

    def write(self, spans):
        text = "".join(json.dumps(s) + "\n" for s in spans)
        with self.lock:
            self.file.write(text)
            self.file.flush()


def http_handler(recorder):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            request = trace_service_pb2.ExportTraceServiceRequest()
            try:
                request.ParseFromString(body)
            except DecodeError as e:
                self.answer(400, str(e).encode(), "text/plain")
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            recorder.write(spans_of(request, "http", self.path, headers))
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.answer(200, reply, "application/x-protobuf")

        def answer(self, status, body, content_type):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, recorder):
        self.recorder = recorder

    def Export(self, request, context):
        headers = {k.lower(): v for k, v in context.invocation_metadata()}
        self.recorder.write(spans_of(request, "grpc", "", headers))
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    recorder = Recorder(sys.argv[1])
    http = ThreadingHTTPServer(("127.0.0.1", 0), http_handler(recorder))
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(recorder), grpc_server)
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    print(http.server_address[1], grpc_port, flush=True)
    http.serve_forever()


if __name__ == "__main__":
    main()
