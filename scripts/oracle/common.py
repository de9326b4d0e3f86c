"""Shared helpers of the oracle scripts: paths, stamps that skip up-to-date work, atomic writes."""
import hashlib
import json
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ASSETS = os.path.join(ROOT, ".assets")
ORACLE = os.path.join(ASSETS, "oracle")
SMOLLM2 = os.path.join(ASSETS, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
GSM8K = os.path.join(ASSETS, "data", "gsm8k", "test.jsonl")


def stamp_ok(topic: str, script: str) -> bool:
    """True when `topic`'s outputs were made by this exact script (its hash is the stamp)."""
    path = os.path.join(ORACLE, topic, ".stamp")
    return os.path.exists(path) and open(path).read() == _digest(script)


def write_stamp(topic: str, script: str) -> None:
    with open(os.path.join(ORACLE, topic, ".stamp"), "w") as f:
        f.write(_digest(script))


def _digest(script: str) -> str:
    h = hashlib.sha256()
    for p in (script, __file__):
        h.update(open(p, "rb").read())
    return h.hexdigest()


def gsm8k_rows(n=None):
    rows = []
    with open(GSM8K) as f:
        for line in f:
            rows.append(json.loads(line))
            if n is not None and len(rows) == n:
                break
    return rows


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
