"""Tests of redact.py's logic on the build machine's Python (no WebAssembly):
python3 plugins/redact/test_redact.py

The generated bindings (wit_world, componentize_py_types) are replaced by
small stand-ins; the component itself is checked against a real host.
"""

import hashlib
import hmac
import json
import os
import sys
import types
import unittest
from dataclasses import dataclass
from enum import Enum
from typing import List, Optional, Tuple


def _install_binding_stubs():
    class Err(Exception):
        def __init__(self, value):
            super().__init__(value)
            self.value = value

    cpt = types.ModuleType("componentize_py_types")
    cpt.Err = Err

    class Level(Enum):
        TRACE = 0
        DEBUG = 1
        INFO = 2
        WARN = 3
        ERROR = 4

    host = types.ModuleType("wit_world.imports.host")
    host.Level = Level
    host.config_values = {}
    host.logged = []
    host.config = lambda key: host.config_values.get(key)
    host.log = lambda level, message: host.logged.append((level, message))

    imports = types.ModuleType("wit_world.imports")
    imports.host = host
    world = types.ModuleType("wit_world")
    world.imports = imports
    world.WitWorld = object
    sys.modules.update(
        {
            "componentize_py_types": cpt,
            "wit_world": world,
            "wit_world.imports": imports,
            "wit_world.imports.host": host,
        }
    )
    return host, Err


sys.dont_write_bytecode = True  # no __pycache__ in the tree
host, Err = _install_binding_stubs()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import redact  # noqa: E402


@dataclass
class CloudEvent:
    id: str
    source: str
    type: str
    subject: Optional[str]
    time: Optional[str]
    datacontenttype: Optional[str]
    dataschema: Optional[str]
    extensions: List[Tuple[str, str]]
    data: Optional[bytes]


SAMPLE = {
    "metadata": {"cluster": "golden"},
    "healthEvent": {
        "version": 1,
        "agent": "syslog-health-monitor",
        "componentClass": "GPU",
        "checkName": "GpuMemWatch",
        "isFatal": True,
        "isHealthy": False,
        "message": "GpuMemWatch on gpu-node-0784: detected",
        "recommendedAction": "CUSTOM",
        "errorCode": ["XID_79", "XID_48"],
        "entitiesImpacted": [
            {"entityType": "GPU", "entityValue": "GPU-8fcd7f40-0722-c28e"},
            {"entityType": "PCI", "entityValue": "0000:72:00.0"},
        ],
        "generatedTimestamp": "2026-10-01T00:00:57.276917Z",
        "nodeName": "gpu-node-0784",
        "metadata": {"rack": "r28", "zone": "us-west-2b"},
    },
}


def event(data=SAMPLE, contenttype="application/json", raw=None):
    body = raw if raw is not None else json.dumps(data).encode()
    return CloudEvent(
        id="16c0f69a",
        source="nvsentinel://golden/healthevents",
        type="com.nvidia.nvsentinel.health.v1",
        subject="gpu-node-0784",
        time="2026-10-01T00:00:57.276917Z",
        datacontenttype=contenttype,
        dataschema=None,
        extensions=[("cluster", "golden"), ("node", "gpu-node-0784")],
        data=body,
    )


def sha(text):
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class RedactTest(unittest.TestCase):
    def run_with(self, config, ev):
        host.config_values = config
        redact._config = None
        out = redact.WitWorld().transform(ev)
        self.assertEqual(len(out), 1)
        return out[0]

    def error_with(self, config, ev):
        host.config_values = config
        redact._config = None
        with self.assertRaises(Err) as caught:
            redact.WitWorld().transform(ev)
        return caught.exception.value

    def test_remove_data_fields_and_through_arrays(self):
        out = self.run_with(
            {
                "remove": " data.healthEvent.metadata , data.healthEvent.entitiesImpacted.entityValue"
            },
            event(),
        )
        data = json.loads(out.data)
        self.assertNotIn("metadata", data["healthEvent"])
        self.assertEqual(
            data["healthEvent"]["entitiesImpacted"],
            [{"entityType": "GPU"}, {"entityType": "PCI"}],
        )
        self.assertEqual(data["metadata"], {"cluster": "golden"})
        self.assertEqual(out.subject, "gpu-node-0784")

    def test_hash_text_numbers_arrays_and_attributes(self):
        out = self.run_with(
            {
                "hash": "subject,ext.node,data.healthEvent.nodeName,"
                "data.healthEvent.errorCode,data.healthEvent.metadata,data.healthEvent.version"
            },
            event(),
        )
        data = json.loads(out.data)["healthEvent"]
        self.assertEqual(out.subject, sha("gpu-node-0784"))
        self.assertEqual(data["nodeName"], sha("gpu-node-0784"))
        self.assertEqual(dict(out.extensions)["node"], sha("gpu-node-0784"))
        self.assertEqual(dict(out.extensions)["cluster"], "golden")
        self.assertEqual(data["errorCode"], [sha("XID_79"), sha("XID_48")])
        self.assertEqual(data["metadata"], sha('{"rack":"r28","zone":"us-west-2b"}'))
        self.assertEqual(data["version"], sha("1"))

    def test_salt_makes_it_hmac(self):
        out = self.run_with({"hash": "subject", "salt": "s3cret"}, event())
        expected = hmac.new(b"s3cret", b"gpu-node-0784", hashlib.sha256).hexdigest()
        self.assertEqual(out.subject, "sha256:" + expected)

    def test_remove_attributes(self):
        out = self.run_with({"remove": "subject,ext.cluster"}, event())
        self.assertIsNone(out.subject)
        self.assertEqual(out.extensions, [("node", "gpu-node-0784")])

    def test_missing_paths_keep_data_bytes(self):
        ev = event()
        before = ev.data
        out = self.run_with(
            {"remove": "data.nothing.here,data.healthEvent.message.deeper,ext.none"}, ev
        )
        self.assertEqual(out.data, before)

    def test_no_data(self):
        ev = event()
        ev.data = None
        out = self.run_with({"remove": "data.healthEvent"}, ev)
        self.assertIsNone(out.data)

    def test_non_json_data_is_an_error(self):
        message = self.error_with(
            {"remove": "data.healthEvent"}, event(contenttype="text/plain", raw=b"hi")
        )
        self.assertIn("not JSON", message)
        message = self.error_with({"remove": "data.healthEvent"}, event(raw=b"{oops"))
        self.assertIn("not valid JSON", message)
        # Attribute paths alone do not look at the data.
        out = self.run_with({"remove": "subject"}, event(contenttype="text/plain", raw=b"hi"))
        self.assertEqual(out.data, b"hi")

    def test_json_media_types(self):
        for ct in ("application/json; charset=utf-8", "application/cloudevents+json", None):
            out = self.run_with({"remove": "data.metadata"}, event(contenttype=ct))
            self.assertNotIn("metadata", json.loads(out.data))

    def test_config_errors(self):
        for config, needle in [
            ({"remove": "data.a,,data.b"}, "empty path"),
            ({"remove": "data.a,"}, "empty path"),
            ({"hash": "data..a"}, "empty segment"),
            ({"hash": "data"}, "needs a field"),
            ({"hash": "time"}, "must start with"),
            ({"remove": "ext.a.b"}, "ext.<name>"),
            ({}, "nothing to do"),
            ({"hash": "subject", "salt": ""}, "salt"),
            ({"hash": "subject", "remove": "subject"}, "also listed"),
        ]:
            with self.subTest(config=config):
                self.assertIn(needle, self.error_with(config, event()))


if __name__ == "__main__":
    unittest.main()
