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
# And a second record kind: {"event": "watchdog", ...}, the stuck-fork watchdog's report
# (the fork record is the schema's "else", the watchdog record its "then", $defs/watchdog).


def fork_part(schema):
    """The fork record's schema: the copy's "else", or the whole of an older schema."""
    return schema["else"] if "else" in schema else schema


def load(path):
    with open(path) as f:
        return json.load(f)


def test_schema_copy_is_a_valid_schema_with_c_level():
    schema = fork_part(load(SCHEMA))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["c_level"] == C_LEVEL
    assert "c_level" not in schema["required"]      # optional: older records have none
    v = jsonschema.Draft202012Validator(schema["properties"]["c_level"])
    for good in ("checked", "unavailable: musl libc", "off: scan disabled"):
        assert v.is_valid(good), good
    for bad in ("", "unavailable", "yes", "unavailable: "):
        assert not v.is_valid(bad), bad
    lock = load(SCHEMA)["$defs"]["lock"]
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
        if "watchdog" not in shared["$defs"]:  # the watchdog record kind is this copy's addition
            fork = without.pop("else")
            for name in ("if", "then"):
                del without[name]
            del without["$defs"]["watchdog"]
            without.update(fork)
            without["title"] = shared["title"]
        del without["properties"]["c_level"]
        if "unreachable" not in shared["properties"]:   # this copy's addition, like c_level
            del without["properties"]["unreachable"]
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


def test_watchdog_records_validate_and_fork_records_still_must_be_whole():
    v = jsonschema.Draft202012Validator(load(SCHEMA))
    record = {"forkaudit": 1, "event": "watchdog", "kind": "child-hooks", "time": "2026-01-01T00:00:00.000000Z",
              "pid": 12, "parent_pid": 11, "policy": "abort", "after_seconds": 1.5, "side": "child",
              "where": "before-python-hooks", "c_handler_ran": True, "forking_tid": 11,
              "waiting_on": {"futex": "0x7f00", "kind": "glibc_mutex", "owner_tid": 13, "owner_alive": False},
              "syscall": 202, "threads": 1, "library": "/x/libstuck.so",
              "stack": [{"address": "0x7f01", "object": "/x/libstuck.so", "symbol": "handler"}], "action": "reported"}
    assert not list(v.iter_errors(record))
    for bad in ({"action": "maybe"}, {"kind": "other"}, {"waiting_on": {"futex": 5, "kind": "futex"}}, {"pid": 0}):
        assert list(v.iter_errors(dict(record, **bad))), bad
    assert list(v.iter_errors({"forkaudit": 1, "event": "fork"}))          # a fork record stays checked whole
    assert list(v.iter_errors({"forkaudit": 1, "event": "watchdog"}))      # and so does a watchdog record
