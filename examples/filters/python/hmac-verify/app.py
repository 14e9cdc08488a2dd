"""hmac-verify: a Ferrox filter that verifies HMAC-signed requests.

A client that shares a secret with the API signs each request:

    timestamp = str(int(time.time()))
    message   = f"{timestamp}\n{METHOD}\n{path}\n{query}"      # query without '?', may be empty
    signature = hex(HMAC-SHA256(secret, message))

and sends `x-signature-key: <key id>`, `x-signature-timestamp: <timestamp>` and
`x-signature: v1=<signature>`. The filter recomputes the HMAC with the key's secret, compares in
constant time, and refuses timestamps outside the window (replays of old requests). A verified
request goes on with the key id as its consumer (so later filters, e.g. rate-limit by consumer,
and the upstream see who signed it) and without the signature headers.

Configuration (JSON):

    {
      "keys": {"partner-a": "secret-a", "partner-b": "secret-b"},   # key id -> shared secret
      "window": 300,                  # seconds a timestamp stays valid, both ways (default 300)
      "header": "x-signature",        # optional header names
      "key_header": "x-signature-key",
      "timestamp_header": "x-signature-timestamp",
      "fault_injection": false        # true: honour `x-ferrox-fault: raise|loop` (for testing
                                      # the route's on_error policy; never enable in production)
    }

Host services used (grants): log, clock.
"""

import hashlib
import hmac
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import clock, log, types

# The component is a snapshot of the interpreter taken after this module was imported, and it
# has no files at run time: a module imported lazily during a request cannot be loaded and the
# call traps. `hmac.new` imports its backend on first use, so use it once here.
hmac.compare_digest(hmac.new(b"key", b"message", hashlib.sha256).hexdigest(), "")

DEFAULTS = {
    "window": 300,
    "header": "x-signature",
    "key_header": "x-signature-key",
    "timestamp_header": "x-signature-timestamp",
    "fault_injection": False,
}


def deny(status: int, message: str) -> types.Flow:
    body = json.dumps({"error": message}).encode()
    headers = [("content-type", "application/json")]
    if status == 401:
        headers.append(("www-authenticate", 'HMAC realm="api"'))
    return types.Flow_Respond(types.Reply(status=status, headers=headers, body=body))


def signature_message(timestamp: str, req: types.Request) -> bytes:
    query = req.query() or ""
    return f"{timestamp}\n{req.method()}\n{req.path()}\n{query}".encode()


def parse_config(text: str) -> dict:
    try:
        raw = json.loads(text or "{}")
    except ValueError as e:
        raise ValueError(f"config is not valid JSON: {e}")
    if not isinstance(raw, dict):
        raise ValueError("config must be an object")
    unknown = set(raw) - set(DEFAULTS) - {"keys"}
    if unknown:
        raise ValueError(f"unknown config field(s): {', '.join(sorted(unknown))}")
    config = dict(DEFAULTS, **raw)
    keys = config.get("keys")
    if not isinstance(keys, dict) or not keys:
        raise ValueError("`keys` must be a non-empty object of key id -> secret")
    for key_id, secret in keys.items():
        if not isinstance(secret, str) or len(secret) < 16:
            raise ValueError(f"keys.{key_id}: the secret must be a string of 16 characters or more")
    window = config["window"]
    if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= 86400:
        raise ValueError("`window` must be a whole number of seconds between 1 and 86400")
    for field in ("header", "key_header", "timestamp_header"):
        if not isinstance(config[field], str) or not config[field]:
            raise ValueError(f"`{field}` must be a non-empty header name")
    if not isinstance(config["fault_injection"], bool):
        raise ValueError("`fault_injection` must be true or false")
    config["keys"] = {k: v.encode() for k, v in keys.items()}
    return config


class WitWorld(wit_world.WitWorld):
    config: dict = {}

    def init(self, config: str) -> None:
        try:
            WitWorld.config = parse_config(config)
        except ValueError as e:
            raise Err(str(e))

    def on_request(self, req: types.Request) -> types.Flow:
        c = WitWorld.config
        if c["fault_injection"]:
            fault = req.header("x-ferrox-fault")
            if fault == "raise":
                raise RuntimeError("fault injected by x-ferrox-fault: raise")
            if fault == "loop":
                while True:
                    pass
        key_id = req.header(c["key_header"])
        timestamp = req.header(c["timestamp_header"])
        presented = req.header(c["header"])
        if key_id is None or timestamp is None or presented is None:
            return deny(401, "the request is not signed")
        secret = c["keys"].get(key_id)
        if secret is None:
            log.log(log.Level.WARN, f"unknown signing key {key_id!r}")
            return deny(401, "unknown signing key")
        if not timestamp.isdigit():
            return deny(401, "the signature timestamp must be Unix seconds")
        now = clock.now_ms() // 1000
        if abs(now - int(timestamp)) > c["window"]:
            return deny(401, "the signature timestamp is outside the allowed window")
        expected = "v1=" + hmac.new(secret, signature_message(timestamp, req), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), presented.encode()):
            log.log(log.Level.WARN, f"bad signature from key {key_id!r}")
            return deny(401, "bad signature")
        req.set_consumer(key_id)
        for name in (c["header"], c["key_header"], c["timestamp_header"]):
            req.remove_header(name)
        return types.Flow_Continue()

    def on_response(self, req: types.Request, resp: types.Response) -> None:
        pass
