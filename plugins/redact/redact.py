"""Switchyard transform plugin: removes or hashes configured fields of events.

Built into a WebAssembly component with componentize-py (see README.md); the
bindings module `wit_world` is generated at build time from wit/switchyard.wit.

Config (all values are strings):

  remove   comma-separated paths to delete
  hash     comma-separated paths whose values become "sha256:<hex>"
  salt     optional key; when set, the digest is HMAC-SHA256 keyed with it

A path is `data.<field>[.<field>...]` into the JSON data (arrays are
transparent: a path applies to every element), `subject`, or `ext.<name>`
for an extension attribute. Paths that do not exist in an event are ignored.
"""

import hashlib
import hmac
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host

# Attribute paths besides data.* and ext.<name>.
_ATTRIBUTES = ("subject",)


class ConfigError(Exception):
    pass


class Path:
    """One configured path, parsed: kind is 'data', 'ext' or an attribute name."""

    __slots__ = ("text", "kind", "keys")

    def __init__(self, text, kind, keys):
        self.text = text
        self.kind = kind
        self.keys = keys


def parse_path(text, key):
    if text == "":
        raise ConfigError(
            f"config '{key}': empty path (check for doubled or trailing commas)"
        )
    parts = text.split(".")
    if any(p == "" for p in parts):
        raise ConfigError(f"config '{key}': path '{text}' has an empty segment")
    root = parts[0]
    if root == "data":
        if len(parts) < 2:
            raise ConfigError(
                f"config '{key}': path 'data' needs a field, like data.healthEvent.nodeName"
            )
        return Path(text, "data", parts[1:])
    if root == "ext":
        if len(parts) != 2:
            raise ConfigError(
                f"config '{key}': path '{text}' must be ext.<name> (one extension name)"
            )
        return Path(text, "ext", parts[1:])
    if root in _ATTRIBUTES and len(parts) == 1:
        return Path(text, root, [])
    raise ConfigError(
        f"config '{key}': path '{text}' must start with 'data.', 'ext.' or be one of: "
        + ", ".join(_ATTRIBUTES)
    )


def parse_paths(value, key):
    if value is None:
        return []
    value = value.strip()
    if value == "":
        return []
    return [parse_path(item.strip(), key) for item in value.split(",")]


class Config:
    def __init__(self, get):
        """`get(key)` returns the config value of key or None."""
        self.remove = parse_paths(get("remove"), "remove")
        self.hash = parse_paths(get("hash"), "hash")
        salt = get("salt")
        if salt is not None and salt == "":
            raise ConfigError(
                "config 'salt' is empty; leave it out for plain SHA-256, or give a secret"
            )
        self.salt = None if salt is None else salt.encode("utf-8")
        if not self.remove and not self.hash:
            raise ConfigError("config: nothing to do, set 'remove' and/or 'hash'")
        seen = {}
        for key, paths in (("remove", self.remove), ("hash", self.hash)):
            for p in paths:
                other = seen.get(p.text)
                if other is not None:
                    raise ConfigError(
                        f"config '{key}': path '{p.text}' is also listed in '{other}'"
                    )
                seen[p.text] = key
        self.uses_data = any(p.kind == "data" for p in self.remove + self.hash)

    def digest(self, value):
        """The replacement for a value: text is hashed as its UTF-8 bytes,
        anything else as compact JSON with sorted keys."""
        if isinstance(value, str):
            raw = value.encode("utf-8")
        else:
            raw = json.dumps(
                value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode("utf-8")
        if self.salt is None:
            hexdigest = hashlib.sha256(raw).hexdigest()
        else:
            hexdigest = hmac.new(self.salt, raw, hashlib.sha256).hexdigest()
        return "sha256:" + hexdigest


# --- data paths ------------------------------------------------------------


def _remove(node, keys):
    """Deletes keys[-1] under node along keys; returns whether anything changed."""
    if isinstance(node, list):
        changed = False
        for item in node:
            changed = _remove(item, keys) or changed
        return changed
    if not isinstance(node, dict) or keys[0] not in node:
        return False
    if len(keys) == 1:
        del node[keys[0]]
        return True
    return _remove(node[keys[0]], keys[1:])


def _hash_value(value, config):
    """Hashes a value; arrays stay arrays with each element hashed; null stays null."""
    if value is None:
        return None
    if isinstance(value, list):
        return [_hash_value(v, config) for v in value]
    return config.digest(value)


def _hash(node, keys, config):
    if isinstance(node, list):
        changed = False
        for item in node:
            changed = _hash(item, keys, config) or changed
        return changed
    if not isinstance(node, dict) or keys[0] not in node:
        return False
    if len(keys) == 1:
        node[keys[0]] = _hash_value(node[keys[0]], config)
        return True
    return _hash(node[keys[0]], keys[1:], config)


def _is_json(contenttype):
    if contenttype is None:
        # CloudEvents: without datacontenttype, data is JSON.
        return True
    media = contenttype.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


# --- the event -------------------------------------------------------------


def redact(event, config):
    """Applies config to event in place; raises ValueError when it cannot."""
    if config.uses_data and event.data is not None:
        if not _is_json(event.datacontenttype):
            raise ValueError(
                f"event {event.id}: data is '{event.datacontenttype}', not JSON, "
                "so the configured data.* paths cannot apply"
            )
        try:
            data = json.loads(bytes(event.data).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"event {event.id}: data is not valid JSON: {e}") from None
        changed = False
        for p in config.remove:
            if p.kind == "data":
                changed = _remove(data, p.keys) or changed
        for p in config.hash:
            if p.kind == "data":
                changed = _hash(data, p.keys, config) or changed
        if changed:
            event.data = json.dumps(
                data, separators=(",", ":"), ensure_ascii=False
            ).encode("utf-8")

    for p in config.remove:
        if p.kind == "subject":
            event.subject = None
        elif p.kind == "ext":
            event.extensions = [(n, v) for (n, v) in event.extensions if n != p.keys[0]]
    for p in config.hash:
        if p.kind == "subject":
            if event.subject is not None:
                event.subject = config.digest(event.subject)
        elif p.kind == "ext":
            event.extensions = [
                (n, config.digest(v) if n == p.keys[0] else v)
                for (n, v) in event.extensions
            ]
    return event


# --- build-time warm-up ---------------------------------------------------------

# componentize-py runs this module at build time and snapshots the heap. At
# run time there is no standard library on disk (the host preopens nothing),
# so a module first imported during a call fails with ModuleNotFoundError
# (hmac imports `warnings` lazily, for one). Running every code path once
# here pulls in whatever they import while the library is still reachable.
def _warm_up():
    for salt in (None, b"salt"):
        config = Config.__new__(Config)
        config.salt = salt
        config.digest("text")
        config.digest({"a": [1, 2.5, True, None]})
    for bad in (b"{", b"\xff"):
        try:
            json.loads(bad.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            str(e)
    json.dumps({"k": "\u00e9"}, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_warm_up()


# --- the component export ----------------------------------------------------

# The config is read on the first call (imports cannot be called while
# componentize-py pre-initialises the module at build time) and kept: either
# a Config or the error text to return on every call.
_config = None


def _load_config():
    global _config
    if _config is None:
        try:
            _config = Config(host.config)
            host.log(
                host.Level.DEBUG,
                f"redact: removing {len(_config.remove)} path(s), hashing "
                f"{len(_config.hash)} path(s)" + (" with salt" if _config.salt else ""),
            )
        except ConfigError as e:
            _config = f"redact: {e}"
    return _config


class WitWorld(wit_world.WitWorld):
    def transform(self, event):
        config = _load_config()
        if isinstance(config, str):
            raise Err(config)
        try:
            return [redact(event, config)]
        except ValueError as e:
            raise Err(f"redact: {e}")
        except Exception as e:  # a bug here must not trap the instance
            raise Err(f"redact: internal error: {type(e).__name__}: {e}")
