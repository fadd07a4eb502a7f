"""C-level locks found by the child-side scan, turned into report entries.

Each hit is re-read here, in the child after every at-fork handler that ran
before this point: still held means a hazard; released means an at-fork
handler reset it (reinitialized).
"""
from . import native
from .symbols import locate

MUTEX_TYPES = {0: "normal", 1: "recursive", 2: "error-checking", 3: "adaptive"}


def describe_mutex(hit):
    kind = hit["type"]
    words = [MUTEX_TYPES[kind & 3]]
    if kind & 16:
        words.append("robust")
    if kind & 32:
        words.append("priority-inheritance")
    if kind & 64:
        words.append("priority-protect")
    text = " ".join(words) + " mutex"
    if kind & 3 == 1 and hit["count"] > 1:
        text += " (locked %d times)" % hit["count"]
    return text


def resetter(library):
    """Who plausibly reset a C lock, from where it lives."""
    if not library:
        return None
    base = library.rsplit("/", 1)[-1]
    if base.startswith(("libc.so", "libc-", "ld-linux", "libpthread")):
        return "glibc"
    if base.startswith(("python", "libpython")):
        return "cpython"
    return None


def entries(owners, read_maps):
    """(hazards, reinitialized) for the hits of the last scan.

    owners: {tid: (name, stack)} of the threads that vanished at the fork; read_maps: what
    gives the process's maps.Maps, called only when there is a hit to place (a clean fork's
    child does not read /proc/self/maps).
    """
    hazards, reinit = [], []
    hits = native.hits()
    maps = read_maps() if hits else None
    for hit in hits:
        tid = hit["owner"]
        name, stack = owners.get(tid, (None, []))
        library, symbol = locate(hit["addr"], maps)
        if hit["kind"] == native.KIND_MUTEX:
            kind, what = "pthread_mutex", describe_mutex(hit)
        else:
            kind, what = "pthread_rwlock", "rwlock held for writing"
        who = "thread %r (TID %d)" % (name, tid) if name else "thread TID %d" % tid
        entry = {
            "kind": kind,
            "owner": {"native_id": tid, "name": name},
            "object": None,
            "address": "0x%x" % hit["addr"],
            "library": library,
            "symbol": symbol,
            "held_at": stack,
            "by": None,
        }
        if native.still_held(hit["addr"], hit["kind"], tid) == 1:
            entry["why"] = "%s held by %s, which does not exist in the child" % (what, who)
            hazards.append(entry)
        else:
            entry["by"] = resetter(library)
            entry["why"] = "%s was held by %s at the fork; an at-fork handler reset it in the child" % (what, who)
            reinit.append(entry)
    return hazards, reinit
