"""Small units: settings, /proc/self/maps names, ELF symbols, the human report."""
import os
import threading

import pytest

from forkaudit import elf, render, settings
from forkaudit.errors import SettingsError
from forkaudit.maps import Mapping, Maps


@pytest.mark.parametrize("environ,expected", [
    ({}, None),
    ({"FORKAUDIT": ""}, None),
    ({"FORKAUDIT": "1"}, ("warn", None, "full")),
    ({"FORKAUDIT": "RECORD", "FORKAUDIT_SCAN": "libs"}, ("record", None, "libs")),
    ({"FORKAUDIT": "abort", "FORKAUDIT_SCAN": "off"}, ("abort", None, "off")),
    ({"FORKAUDIT": "raise"}, ("raise", None, "full")),
])
def test_settings_from_environ(environ, expected):
    got = settings.from_environ(environ)
    assert (None if got is None else (got.policy, got.json_path, got.scan)) == expected


@pytest.mark.parametrize("environ", [{"FORKAUDIT": "yes"}, {"FORKAUDIT": "1", "FORKAUDIT_SCAN": "most"},
                                     {"FORKAUDIT": "1", "FORKAUDIT_JSON": "/proc/forkaudit/x"}])
def test_bad_settings_raise_one_clear_error(environ):
    with pytest.raises(SettingsError) as info:
        settings.from_environ(environ)
    assert "\n" not in str(info.value)


def test_report_path_is_created_private_and_absolute(tmp_path):
    os.chdir(tmp_path)
    s = settings.make("record", "rel.jsonl", "full")
    assert s.json_path == str(tmp_path / "rel.jsonl")
    assert oct(os.stat(s.json_path).st_mode & 0o777) == "0o600"


def test_maps_names_regions():
    maps = Maps([Mapping(0x1000, 0x2000, "r-xp", 0, "/lib/libx.so"),
                 Mapping(0x2000, 0x3000, "rw-p", 0x1000, "/lib/libx.so"),
                 Mapping(0x3000, 0x4000, "rw-p", 0, ""),           # right after the file
                 Mapping(0x5000, 0x6000, "rw-p", 0, "[heap]"),
                 Mapping(0x7000, 0x8000, "rw-p", 0, "")])
    assert maps.region_name(0x2100) == "/lib/libx.so"
    assert maps.region_name(0x3100) == "[anon]"   # .bss or not, only dladdr can tell
    assert maps.region_name(0x5100) == "[heap]"
    assert maps.region_name(0x7100) == "[anon]"
    assert maps.region_name(0x4800) is None
    assert maps.file_base("/lib/libx.so") == 0x1000


def test_real_maps_name_this_process():
    maps = Maps.read()
    big = bytearray(64 << 20)          # large: its own anonymous mapping
    import ctypes
    libc_addr = ctypes.cast(ctypes.CDLL(None).malloc, ctypes.c_void_p).value
    assert maps.region_name(id(big)) in ("[heap]", "[anon]")
    buf = (ctypes.c_char * len(big)).from_buffer(big)
    assert Maps.read().region_name(ctypes.addressof(buf)) == "[anon]"
    assert "libc" in (maps.region_name(libc_addr) or "")


def test_elf_names_a_static_object(build_c):
    so = build_c("elfsym", "static int hidden_counter[16];\nint visible = 3;\n"
                           "int *where(void) { return hidden_counter; }\n")
    table = elf.table(so)
    assert table is not None
    names = set(table.names)
    assert {"hidden_counter", "visible"} <= names
    i = table.names.index("hidden_counter")
    start = table.starts[i]
    assert elf.symbol_at(so, 0x10000, 0x10000 - table.min_vaddr + start + 8) == "hidden_counter"


def test_human_report_order_and_content():
    frame = {"file": "app.py", "line": 12, "function": "put"}
    ev = {"pid": 20, "parent_pid": 10, "policy": "warn", "side": "child",
          "forking_thread": {"native_id": 10, "name": "MainThread", "stack": [{"file": "m.py", "line": 3, "function": "main"}]},
          "threads": [], "hazards": [{"kind": "python_lock", "owner": {"native_id": 11, "name": "w"},
                                      "object": {"type": "_thread.lock", "path": "app.LOCK"}, "address": "0x10",
                                      "library": None, "symbol": None, "held_at": [frame], "by": None,
                                      "why": "held by thread 'w'"}],
          "reinitialized": [{"kind": "python_rlock", "owner": {"native_id": 11, "name": "w"},
                             "object": {"type": "_thread.RLock", "path": "h.lock"}, "address": "0x20",
                             "library": None, "symbol": None, "held_at": None, "by": "logging", "why": "reset"}]}
    text = render.text(ev)
    assert text.startswith("forkaudit: fork of pid 10 -> child 20: 1 lock is held")
    order = [text.index(s) for s in ("[1] python_lock app.LOCK", "owner: thread 'w' (native id 11)",
                                     'File "app.py", line 12, in put', "fork called from thread 'MainThread'",
                                     "reset in the child", "reset by logging", "fix:")]
    assert order == sorted(order)


def _event(kind, origin_stack):
    hazard = {"kind": kind, "owner": {"native_id": 11, "name": "w"}, "object": {"type": "?", "path": None},
              "address": "0x10", "library": None, "symbol": None, "held_at": None, "by": None, "why": "held",
              "reach": "c-heap" if kind == "pthread_mutex" else "global"}
    return {"pid": 20, "parent_pid": 10, "policy": "warn", "side": "child", "threads": [], "reinitialized": [],
            "forking_thread": {"native_id": 10, "name": "MainThread", "stack": origin_stack}, "hazards": [hazard]}


RAW_FORK = [{"file": "/srv/app.py", "line": 3, "function": "main"}]
POOL_FORK = RAW_FORK + [{"file": "/usr/lib/python3.12/multiprocessing/popen_fork.py", "line": 66,
                         "function": "_launch"}]


@pytest.mark.parametrize("kind", ["pthread_mutex", "python_internal", "python_lock"])
def test_fix_line_for_a_raw_os_fork_gives_no_start_method_advice(kind):
    # a raw os.fork has no start method to change: the advice is about this fork
    [raw] = render.advice(_event(kind, RAW_FORK))
    assert "forkserver" not in raw and "start method" not in raw and raw.startswith("fix: "), raw
    # positive control: the same hazard in a multiprocessing Pool's fork gets the start method
    [pool] = render.advice(_event(kind, POOL_FORK))
    assert "forkserver" in pool, pool


def test_unreachable_locks_are_counted_under_a_report_and_listed_by_the_report_command():
    ev = _event("python_lock", RAW_FORK)
    ev["hazards"][0]["object"]["path"] = "app.LOCK"
    span = dict(ev["hazards"][0], reach="unreachable", owner={"native_id": 12, "name": "span-thread"},
                object={"type": "_thread.lock", "path": None})
    ev["unreachable"] = [span]
    warn = render.text(ev)                       # what the child prints under 'warn'
    assert "[1] python_lock app.LOCK" in warn and "[2]" not in warn, warn
    assert "and 1 more lock held at the fork that nothing in the child can reach" in warn, warn
    assert "span-thread" not in warn, warn
    full = render.text(ev, unreachable_in_full=True)   # `forkaudit report`
    assert "held at the fork, but nothing in the child can reach it (not a hazard):" in full, full
    assert "span-thread" in full and "and 1 more lock" not in full, full
    assert "1 unreachable" in render.summary(ev)
