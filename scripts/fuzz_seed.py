#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs (fuzz/seeds/<target>/) from the
test data: configs, NVSentinel documents, Kubernetes Events, Nomad events,
CloudEvents requests. `scripts/fuzz seed` runs this, then minimises the
seeds and what fuzzing found into fuzz/corpus/<target>/ (committed).

The input formats are those of src/fuzz.rs.
"""

import hashlib
import json
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "seeds"

# The mapping profiles, in src/fuzz.rs's PROFILES order.
NVSENTINEL, NVSENTINEL_NAMES, KUBERNETES_EVENT, NOMAD, RAW, CLOUDEVENTS = range(6)


def lines(path):
    path = ROOT / path
    if not path.exists():
        return []
    return [l for l in path.read_bytes().split(b"\n") if l.strip()]


def nvsentinel_docs():
    docs = []
    for p in ["../shared/testdata/nvsentinel/health-events.jsonl"]:
        docs += lines(p)[:40]
    docs += lines("tests/testdata/nvsentinel/malformed-health-events.jsonl")
    docs += lines("../shared/testdata/nvsentinel/malformed-health-events.jsonl")
    return docs


def cloudevents():
    return lines("tests/testdata/nvsentinel/health-events.golden.jsonl")[:20]


def k8s_events():
    return lines("tests/testdata/k8s-event-exporter/events.jsonl")


def nomad_events():
    return lines("tests/testdata/nomad/events.jsonl")


def nomad_records():
    return lines("tests/testdata/nomad-events-sink/events.jsonl")


class Seeds:
    def __init__(self):
        self.count = {}

    def add(self, target, data):
        if isinstance(data, str):
            data = data.encode()
        d = OUT / target
        d.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1(data).hexdigest()
        (d / name).write_bytes(data)
        self.count[target] = self.count.get(target, 0) + 1


def configs(seeds):
    for d in ["tests/testdata/config/good", "tests/testdata/config/bad", "examples", "config",
              "config/examples", "config/scale-out", "tests/testdata/k8s-event-exporter",
              "tests/testdata/nomad-events-sink"]:
        for p in sorted((ROOT / d).glob("*.yaml")):
            seeds.add("config", p.read_bytes())


ROUTES = [
    "{}",
    "match: [{receiver: a}]",
    "drop: [{data.healthEvent.isHealthy: true}]\nmatch: [{receiver: a}, {receiver: b, type: '~nvsentinel'}]",
    "routes:\n  - match:\n      - receiver: a\n        data.healthEvent.componentClass: GPU\n      - receiver: b\n        data.healthEvent.componentClass: 'NIC|NVSwitch'\n  - match:\n      - receiver: c\n        data.healthEvent.errorCode: '~XID_(48|63|79)'",
    "drop:\n  - expr: \"!(event.recommendedAction != 'NONE' && !('45' in event.errorCode))\"\nroutes:\n  - match:\n      - receiver: a\n        expr: \"event.isFatal == true || event.metadata.zone.startsWith('us-')\"",
    "routes:\n  - drop: [{data.reason: 'Scheduled|Pulled|Created|Started'}]\n    match: [{receiver: a}, {receiver: a}]\n  - match: [{receiver: b, data.involvedObject.kind: Pod}]\n    routes:\n      - match: [{receiver: c, data.type: Warning}]",
    "match:\n  - receiver: a\n    subject: '~^node'\n    expr: \"event.type == 'Warning' && size(event.data) > 0\"",
    "routes:\n  - match: [{receiver: a, data.Topic: Job}, {receiver: b, data.Type: '~Allocation.*'}]\n  - drop: [{data.Namespace: default}]\n    match: [{receiver: c}]",
    "match: [{receiver: c, expr: \"has(event.data) && event.id != ''\"}]",
]


def routes(seeds):
    records = [
        (NVSENTINEL, nvsentinel_docs()[:8]),
        (KUBERNETES_EVENT, k8s_events()),
        (NOMAD, nomad_records()[:3]),
        (RAW, [b'{"id": 1, "kind": "Pod", "reason": "BackOff"}']),
        (CLOUDEVENTS, cloudevents()[:3]),
    ]
    for i, route in enumerate(ROUTES):
        for profile, recs in records:
            for rec in recs[i % 2::2][:2] or recs[:1]:
                seeds.add("routes", bytes([profile]) + route.encode() + b"\0" + rec)


def http_requests(seeds):
    events = [json.loads(l) for l in cloudevents()[:6]]
    for e in events[:3]:
        seeds.add("http_decode", b"content-type: application/cloudevents+json\n\n" + json.dumps(e).encode())
    seeds.add("http_decode", b"content-type: application/cloudevents-batch+json\n\n" + json.dumps(events).encode())
    seeds.add("http_decode", b"content-type: application/cloudevents-batch+json\n\n[]")
    seeds.add("http_decode", b"content-type: application/cloudevents+json; charset=utf-8\n"
              b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n\n"
              + json.dumps(events[0]).encode())
    for e in events[:3]:
        headers = [f"ce-{k}: {v}" for k, v in e.items() if k not in ("data", "datacontenttype", "specversion")]
        head = "ce-specversion: 1.0\ncontent-type: application/json\n" + "\n".join(headers)
        seeds.add("http_decode", head.encode() + b"\n\n" + json.dumps(e.get("data")).encode())
    seeds.add("http_decode", b"ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\n"
              b"content-type: text/plain\n\nhello")
    seeds.add("http_decode", b"ce-specversion: 1.0\nce-id: 2\nce-source: /s\nce-type: t\n"
              b"ce-time: 2026-01-01T00:00:00Z\nce-dataschema: https://x/s\n\n\x00\x01binary")
    e = dict(events[0])
    e.pop("data", None)
    e["data_base64"] = "aGVsbG8="
    e["datacontenttype"] = "application/octet-stream"
    seeds.add("http_decode", b"content-type: application/cloudevents+json\n\n" + json.dumps(e).encode())
    seeds.add("http_decode", b"content-type: application/cloudevents+xml\n\n<e/>")


def mappings(seeds):
    for doc in nvsentinel_docs():
        seeds.add("mapping", bytes([NVSENTINEL]) + doc)
    for doc in nvsentinel_docs()[:12]:
        seeds.add("mapping", bytes([NVSENTINEL_NAMES]) + doc)
    for e in k8s_events():
        seeds.add("mapping", bytes([KUBERNETES_EVENT]) + e)
    for r in nomad_records():
        seeds.add("mapping", bytes([NOMAD]) + r)
    for r in nomad_records()[:2] + k8s_events()[:2] + [b'{"id": 1, "reason": "BackOff"}', b"[1, 2]", b'"text"']:
        seeds.add("mapping", bytes([RAW]) + r)
    for e in cloudevents():
        seeds.add("mapping", bytes([CLOUDEVENTS]) + e)


def journals(seeds):
    recs = cloudevents()[:6]
    sep = b"\xff"
    pos = lambda offset: json.dumps({"stream": 1, "offset": offset}).encode()
    one = b"\n".join(recs[:3]) + b"\n"
    two = b"\n".join(recs[3:6]) + b"\n"
    seeds.add("journal", one + sep)
    seeds.add("journal", one + sep + pos(len(recs[0]) + 1))
    seeds.add("journal", one + sep + two + sep + pos(len(one)))
    seeds.add("journal", one + sep + two[:-20] + sep + pos(len(one) + 3))
    seeds.add("journal", one[:-1] + sep + two + sep)
    seeds.add("journal", one + sep + pos(10 ** 9))
    seeds.add("journal", one + sep + b'{"stream": 2, "offset": 0}')
    seeds.add("journal", one + sep + b"not json")
    seeds.add("journal", sep)


def nomad_frames(seeds):
    events = [json.loads(l) for l in nomad_events()]
    frames = []
    for i, e in enumerate(events):
        e = dict(e)
        e["Index"] = 10 + i // 2
        frames.append(e)
    body = b""
    for index in sorted({f["Index"] for f in frames}):
        batch = [f for f in frames if f["Index"] == index]
        body += json.dumps({"Index": index, "Events": batch}).encode() + b"\n"
        body += b"{}\n"
    for size in [1, 7, 64, 255]:
        seeds.add("nomad_frames", bytes([size]) + body)
    seeds.add("nomad_frames", bytes([16]) + body + b'{"Index": 3, "Events": [' )
    seeds.add("nomad_frames", bytes([9]) + b"{}\n\n  \nnot a frame\n" + body[:200])
    # An index below the one before (a lagging server).
    seeds.add("nomad_frames", bytes([32]) + body + json.dumps({"Index": 2, "Events": events[:1]}).encode() + b"\n")


def kubernetes_frames(seeds):
    for e in k8s_events():
        obj = json.loads(e)
        for ty in ["ADDED", "MODIFIED", "DELETED"]:
            seeds.add("kubernetes_frames", json.dumps({"type": ty, "object": obj}))
        obj.pop("apiVersion", None)
        obj.pop("kind", None)
        seeds.add("kubernetes_frames", json.dumps({"type": "ADDED", "object": obj}))
    for n, doc in enumerate(nvsentinel_docs()[:20]):
        try:
            doc = json.loads(doc)
        except ValueError:
            continue
        he = doc.get("healthevent") if isinstance(doc, dict) else None
        if not isinstance(he, dict):
            continue
        spec = dict(he)
        if n % 2 and isinstance(spec.get("generatedtimestamp"), dict):
            spec["generatedTimestamp"] = "2026-03-02T09:14:07.123456789Z"
            spec.pop("generatedtimestamp")
        meta = {"name": f"he-{n}", "namespace": "nvsentinel", "uid": f"uid-{n}",
                "resourceVersion": str(100 + n), "creationTimestamp": "2026-03-02T09:14:07Z"}
        obj = {"apiVersion": "healthevents.dgxc.nvidia.com/v1", "kind": "HealthEventResource",
               "metadata": meta, "spec": spec, "status": {}}
        seeds.add("kubernetes_frames", json.dumps({"type": "ADDED", "object": obj}))
    seeds.add("kubernetes_frames", json.dumps({"type": "BOOKMARK", "object": {
        "apiVersion": "v1", "kind": "Event", "metadata": {"resourceVersion": "12"}}}))
    seeds.add("kubernetes_frames", json.dumps({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "too old",
        "reason": "Expired", "code": 410}}))


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    seeds = Seeds()
    configs(seeds)
    routes(seeds)
    http_requests(seeds)
    mappings(seeds)
    journals(seeds)
    nomad_frames(seeds)
    kubernetes_frames(seeds)
    for target, n in sorted(seeds.count.items()):
        print(f"{target}: {n} seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
