"""Fuzzing with hypothesis: the /proc/self/maps parser (forkaudit/maps.py; the C parser in
csrc/scan.c has no entry point exposed through forkaudit.native, so only the Python one is
fuzzed) and the `forkaudit report` reader with the renderer behind it."""
import io
import json
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forkaudit import naming, render
from forkaudit.commands import report as report_cmd
from forkaudit.maps import Mapping, Maps

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def maps_from_text(data):
    fd, path = tempfile.mkstemp()
    try:
        os.write(fd, data)
        os.close(fd)
        return Maps.read(path)
    finally:
        os.unlink(path)


# -- /proc/self/maps -------------------------------------------------------------------------

hexes = st.integers(min_value=0, max_value=2 ** 64 - 1)
perms = st.tuples(*(st.sampled_from(c) for c in ("r-", "w-", "x-", "ps"))).map("".join)
paths = st.one_of(st.just(""), st.sampled_from(["[heap]", "[stack]", "[vdso]", "/lib/x86_64-linux-gnu/libc.so.6"]),
                  st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)),
                          max_size=40).map(lambda s: "/" + s.strip()))


@st.composite
def mappings(draw):
    start = draw(hexes)
    end = draw(st.integers(min_value=start, max_value=2 ** 64 - 1))
    return Mapping(start, end, draw(perms), draw(hexes), draw(paths).rstrip())


def maps_line(m, dev, inode):
    line = "%x-%x %s %08x %s %d" % (m.start, m.end, m.perms, m.offset, dev, inode)
    return line + ("                          " + m.path if m.path else " ") + "\n"


@FUZZ
@given(st.lists(st.tuples(mappings(), st.sampled_from(["00:00", "fd:01", "103:02"]),
                          st.integers(min_value=0, max_value=2 ** 40)), max_size=20))
def test_maps_parser_reads_what_the_kernel_writes(entries):
    text = "".join(maps_line(m, dev, inode) for m, dev, inode in entries)
    maps = maps_from_text(text.encode("utf-8", "surrogateescape"))
    assert sorted(maps.mappings, key=lambda m: m.start) == maps.mappings
    assert sorted(maps.mappings, key=repr) == sorted((m for m, _d, _i in entries), key=repr)


@FUZZ
@given(st.binary(max_size=2000))
def test_maps_parser_never_raises_on_garbage(data):
    maps = maps_from_text(data)
    for m in maps.mappings:
        maps.find(m.start)
        maps.region_name(m.start)
    maps.find(0)
    maps.file_base("/x")


@FUZZ
@given(st.lists(st.text(max_size=80), max_size=20))
def test_maps_parser_never_raises_on_lines_of_text(lines):
    maps_from_text("\n".join(lines).encode("utf-8", "surrogatepass"))


# -- the report reader and the renderer ---------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=12)


def maybe(strategy):
    """A field that is mostly well-typed, sometimes any JSON value (so that a record with one
    wrong field among many good ones is common)."""
    return st.one_of(*[strategy] * 6, json_values)


frames = st.lists(maybe(st.fixed_dictionaries({}, optional={
    "file": maybe(st.text(max_size=10)), "line": maybe(st.integers()), "function": maybe(st.text(max_size=10))})),
    max_size=3)
entries = st.lists(maybe(st.fixed_dictionaries({}, optional={
    "kind": maybe(st.sampled_from(["python_lock", "pthread_mutex", "semaphore"])),
    "object": maybe(st.fixed_dictionaries({}, optional={"type": maybe(st.text(max_size=6)),
                                                        "path": maybe(st.text(max_size=6))})),
    "owner": maybe(st.fixed_dictionaries({}, optional={"name": json_values, "native_id": json_values})),
    "address": maybe(st.text(max_size=6)), "library": maybe(st.text(max_size=6)),
    "symbol": maybe(st.text(max_size=6)), "held_at": maybe(frames), "why": maybe(st.text(max_size=6)),
    "by": maybe(st.text(max_size=6))})), max_size=3)
records = st.fixed_dictionaries({"forkaudit": maybe(st.just(1))}, optional={
    "pid": maybe(st.integers()), "parent_pid": maybe(st.integers()), "policy": maybe(st.text(max_size=6)),
    "side": maybe(st.sampled_from(["child", "parent"])), "hazards": maybe(entries),
    "reinitialized": maybe(entries), "threads": maybe(st.lists(json_values, max_size=3)),
    "forking_thread": maybe(st.fixed_dictionaries({}, optional={"name": json_values, "native_id": json_values,
                                                                "stack": maybe(frames)})),
})


@FUZZ
@given(records)
def test_a_record_the_reader_accepts_always_renders(rec):
    if report_cmd.problem(rec) is None:
        render.text(rec)
        render.summary(rec)


def read_all(data):
    fd, path = tempfile.mkstemp()
    try:
        os.write(fd, data)
        os.close(fd)
        err = io.StringIO()
        reader = report_cmd.Reader(path, err=err)
        got = list(reader.records())
        return got, reader.bad, err.getvalue()
    finally:
        os.unlink(path)


@FUZZ
@given(st.lists(st.one_of(records.map(lambda r: json.dumps(r).encode()), st.binary(max_size=60),
                          json_values.map(lambda v: json.dumps(v).encode())), max_size=8))
def test_the_reader_never_raises_and_accounts_for_every_line(lines):
    data = b"\n".join(lines) + b"\n"
    got, bad, said = read_all(data)
    def blank(line):
        try:
            return not line.decode("utf-8").strip()
        except UnicodeDecodeError:
            return False
    non_blank = sum(1 for line in data.split(b"\n") if not blank(line))
    # every non-blank line is either a record or a bad line (the reader splits on \n only)
    assert len(got) + bad == non_blank
    assert len(said.splitlines()) == min(bad, report_cmd.MAX_BAD_SHOWN) + (bad > report_cmd.MAX_BAD_SHOWN)
    for _n, rec in got:
        render.text(rec)
        render.summary(rec)


@FUZZ
@given(st.one_of(st.text(max_size=50), st.integers(), st.binary(max_size=20), st.floats(), st.none(),
                 st.booleans(), st.tuples(st.integers())))
def test_key_text_is_one_short_bracketed_step(key):
    for show in (False, True):
        text = naming.key_text(key, show=show)
        assert text.startswith("[") and text.endswith("]")
        if not show:
            assert len(text) <= 2 + 2 * naming.KEY_CHARS + 4
