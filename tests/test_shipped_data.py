"""The tests carry their own data (tests/data/): the report schema and the seed example,
copies of ../shared/report.schema.json and ../shared/examples/pool_logging_deadlock.py.
When ../shared is beside the repository the copies must match it; without it they are
still checked for what they are, and nothing skips."""
import copy
import json
import os

import jsonschema

from conftest import HERE, SCHEMA, SHARED

EXAMPLE = os.path.join(HERE, "data", "pool_logging_deadlock.py")
SHARED_SCHEMA = os.path.join(SHARED, "report.schema.json")
SHARED_EXAMPLE = os.path.join(SHARED, "examples", "pool_logging_deadlock.py")

# The one addition of this copy, until ../shared/report.schema.json has it too:
# `c_level`, whether the C-level scan ran for the fork and, if not, why.
C_LEVEL = {"type": "string", "pattern": "^(checked|unavailable: .+|off: .+)$"}
# and, in a hazard: `reach` (how the child can reach the lock), `owner_code` (shared objects
# whose code is on the owner's stack), `known` (a known library's key); all optional.
LOCK_ADDED = ("reach", "owner_code", "known")
# And the policy 'abort-now' (a child with a predicted hazard exits 86 at the fork: what
# 'abort' did before the stuck-fork watchdog made 'abort' act on a child actually stuck).
ABORT_NOW = "abort-now"


def load(path):
    with open(path) as f:
        return json.load(f)


def test_schema_copy_is_a_valid_schema_with_c_level():
    schema = load(SCHEMA)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["c_level"] == C_LEVEL
    assert "c_level" not in schema["required"]      # optional: older records have none
    v = jsonschema.Draft202012Validator(schema["properties"]["c_level"])
    for good in ("checked", "unavailable: musl libc", "off: scan disabled"):
        assert v.is_valid(good), good
    for bad in ("", "unavailable", "yes", "unavailable: "):
        assert not v.is_valid(bad), bad
    lock = schema["$defs"]["lock"]
    assert not set(LOCK_ADDED) & set(lock["required"])  # optional: older records have none
    reach = jsonschema.Draft202012Validator(lock["properties"]["reach"])
    for good in ("logging", "global", "local", "internal", "c-library", "c-heap", "unreachable", None):
        assert reach.is_valid(good), good
    for bad in ("", "likely", 1):
        assert not reach.is_valid(bad), bad


def test_schema_copy_matches_shared():
    if not os.path.exists(SHARED_SCHEMA):
        return  # nothing to compare with (test_schema_copy_is_a_valid_schema_with_c_level checks the copy)
    ours, shared = load(SCHEMA), load(SHARED_SCHEMA)
    if "c_level" in shared["properties"]:
        # shared caught up: then the files must be the same, byte for byte
        with open(SCHEMA, "rb") as a, open(SHARED_SCHEMA, "rb") as b:
            assert a.read() == b.read(), "tests/data/report.schema.json differs from %s" % SHARED_SCHEMA
    else:
        without = copy.deepcopy(ours)
        del without["properties"]["c_level"]
        for name in LOCK_ADDED:
            if name not in shared["$defs"]["lock"]["properties"]:
                del without["$defs"]["lock"]["properties"][name]
        if ABORT_NOW not in shared["properties"]["policy"]["enum"]:
            without["properties"]["policy"]["enum"].remove(ABORT_NOW)
        assert without == shared, "tests/data/report.schema.json differs from %s (beyond c_level)" % SHARED_SCHEMA


def test_example_copy_matches_shared():
    with open(EXAMPLE, "rb") as f:
        ours = f.read()
    compile(ours, EXAMPLE, "exec")
    assert b"def main(" in ours and b"QueueHandler" in ours
    if os.path.exists(SHARED_EXAMPLE):
        with open(SHARED_EXAMPLE, "rb") as f:
            assert ours == f.read(), "tests/data/pool_logging_deadlock.py differs from %s" % SHARED_EXAMPLE
