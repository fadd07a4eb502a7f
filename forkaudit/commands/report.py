"""forkaudit report PATH [--pid N] [--all]

Renders a JSON-lines report file as the human report: every record that has
hazards (or every record, with --all). The file is read one line at a time
(its size does not matter). A line that is not a forkaudit record (not
UTF-8, not JSON, a field of the wrong type, longer than 16 MiB) is named on
stderr with its line number and skipped; blank lines are ignored. Exit
status: 0 when every line was a good record, 1 when some lines were bad, 2
when the file cannot be read."""
import json
import os
import sys

from .. import render
from ..settings import shown_path

MAX_LINE = 16 << 20   # bytes; a longer line is reported bad and skipped without being held
MAX_BAD_SHOWN = 20    # bad lines named one by one; the rest are counted


def add_parser(sub):
    p = sub.add_parser("report", help="render a JSON-lines report file as text",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("path")
    p.add_argument("--pid", type=int, help="only the record of this child pid")
    p.add_argument("--all", action="store_true", help="also records without hazards (one line each)")
    p.set_defaults(func=main)
    return p


def numbered_lines(f):
    """(line number, bytes) for each line of a binary file, bytes None for a line longer than
    MAX_LINE (skipped in pieces, never held whole)."""
    number = 0
    while True:
        line = f.readline(MAX_LINE + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while True:
                rest = f.readline(MAX_LINE)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, None
        else:
            yield number, line


# -- what render.py relies on, checked before rendering --------------------------------------

def _type_name(value):
    return "null" if value is None else {dict: "an object", list: "an array", str: "a string",
                                        bool: "a boolean", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__)


def _is(value, kinds, nullable=False):
    if value is None:
        return nullable
    if int in kinds and type(value) is bool:
        return False
    return isinstance(value, kinds)


def _frames_problem(frames, where):
    if not isinstance(frames, list):
        return "%s is %s, not an array" % (where, _type_name(frames))
    for i, f in enumerate(frames):
        if not isinstance(f, dict):
            return "%s[%d] is %s, not an object" % (where, i, _type_name(f))
        for key, kinds in (("file", (str,)), ("function", (str,)), ("line", (int,))):
            if not _is(f.get(key), kinds, nullable=True):
                return "%s[%d].%s is %s" % (where, i, key, _type_name(f.get(key)))
    return None


def _entry_problem(h, where):
    if not isinstance(h, dict):
        return "%s is %s, not an object" % (where, _type_name(h))
    for key in ("object", "owner"):
        if not _is(h.get(key), (dict,), nullable=True):
            return "%s.%s is %s, not an object or null" % (where, key, _type_name(h.get(key)))
    for key in ("kind", "address", "library", "symbol", "why", "by"):
        if not _is(h.get(key), (str,), nullable=True):
            return "%s.%s is %s, not a string" % (where, key, _type_name(h.get(key)))
    for key in ("path", "type"):
        if h.get("object") and not _is(h["object"].get(key), (str,), nullable=True):
            return "%s.object.%s is %s, not a string" % (where, key, _type_name(h["object"].get(key)))
    if h.get("held_at") is not None:
        return _frames_problem(h["held_at"], where + ".held_at")
    return None


def problem(rec):
    """Why a parsed line is not a record render.py can show, or None."""
    if not isinstance(rec, dict):
        return "it is %s, not a forkaudit record" % _type_name(rec)
    if "forkaudit" not in rec:
        return "not a forkaudit record (no \"forkaudit\" key)"
    if rec["forkaudit"] != 1 or type(rec["forkaudit"]) is not int:
        return "format version %s is not supported (this reader knows 1)" % shown_path(repr(rec["forkaudit"]))
    for key in ("pid", "hazards"):
        if key not in rec:
            return "the \"%s\" key is missing" % key
    if not _is(rec["pid"], (int,)):
        return "\"pid\" is %s, not an integer" % _type_name(rec["pid"])
    if not _is(rec.get("parent_pid"), (int,), nullable=True):
        return "\"parent_pid\" is %s, not an integer" % _type_name(rec.get("parent_pid"))
    for key in ("policy", "side"):
        if not _is(rec.get(key), (str,), nullable=True):
            return "\"%s\" is %s, not a string" % (key, _type_name(rec.get(key)))
    for key in ("hazards", "reinitialized", "threads"):
        value = rec.get(key, [])
        if not isinstance(value, list):
            return "\"%s\" is %s, not an array" % (key, _type_name(value))
    for key in ("hazards", "reinitialized"):
        for i, h in enumerate(rec.get(key, [])):
            why = _entry_problem(h, "%s[%d]" % (key, i))
            if why:
                return why
    ft = rec.get("forking_thread")
    if not _is(ft, (dict,), nullable=True):
        return "\"forking_thread\" is %s, not an object" % _type_name(ft)
    if ft and ft.get("stack") is not None:
        return _frames_problem(ft["stack"], "forking_thread.stack")
    return None


class Reader:
    """Reads a report one line at a time; says which lines are bad on stderr."""

    def __init__(self, path, err=None):
        self.path = path
        self.err = err if err is not None else sys.stderr
        self.bad = 0

    def bad_line(self, number, why):
        self.bad += 1
        if self.bad <= MAX_BAD_SHOWN:
            self.err.write("forkaudit report: %s line %d: %s; skipped\n" % (shown_path(self.path), number, why))
        elif self.bad == MAX_BAD_SHOWN + 1:
            self.err.write("forkaudit report: more bad lines are not shown one by one (see the count at the end)\n")

    def records(self):
        """(line number, record) for each good record, in file order. Raises OSError."""
        with open(self.path, "rb") as f:
            for number, raw in numbered_lines(f):
                if raw is None:
                    self.bad_line(number, "longer than %d bytes" % MAX_LINE)
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    self.bad_line(number, "not UTF-8 (byte %d)" % e.start)
                    continue
                text = text.strip()
                if not text:
                    continue
                try:
                    rec = json.loads(text)
                except ValueError as e:
                    self.bad_line(number, "not JSON (%s)" % getattr(e, "msg", "invalid"))
                    continue
                except RecursionError:
                    self.bad_line(number, "not JSON (nested too deeply)")
                    continue
                why = problem(rec)
                if why:
                    self.bad_line(number, why)
                    continue
                yield number, rec


def read_records(path):
    """(records, bad line count): for small files and tests; the command itself streams."""
    reader = Reader(path, err=open(os.devnull, "w"))
    try:
        records = [rec for _n, rec in reader.records()]
    finally:
        reader.err.close()
    return records, reader.bad


def main(args):
    out = sys.stdout
    try:
        out.reconfigure(errors="backslashreplace")  # a record may carry lone surrogates ("\udcff")
    except (AttributeError, ValueError):
        pass
    reader = Reader(args.path)
    total = hazardous = shown = 0
    try:
        for number, rec in reader.records():
            if args.pid is not None and rec.get("pid") != args.pid:
                continue
            try:
                if rec.get("hazards"):
                    text = render.text(rec, unreachable_in_full=True)
                elif args.all:
                    text = "%s\n" % render.summary(rec)
                else:
                    text = None
            except Exception as e:  # noqa: BLE001 - a malformed record is one bad line
                reader.bad_line(number, "cannot be shown (%s: %s)" % (type(e).__name__, shown_path(str(e))))
                continue
            total += 1
            if rec.get("hazards"):
                hazardous += 1
                if shown:
                    out.write("\n")
                shown += 1
            if text:
                out.write(text)
        out.write("%d record(s), %d with hazards%s\n" % (
            total, hazardous, ", %d bad line(s)" % reader.bad if reader.bad else ""))
        out.flush()
    except OSError as e:
        if isinstance(e, BrokenPipeError):  # `forkaudit report f | head`: the reader left
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
            except (OSError, ValueError):
                pass
            return 1 if reader.bad else 0
        print("forkaudit report: cannot read %s: %s" % (shown_path(args.path), e.strerror or e), file=sys.stderr)
        return 2
    return 1 if reader.bad else 0
