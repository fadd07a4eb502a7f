"""/proc/self/maps: which mapping an address lives in, by name."""
import bisect
from collections import namedtuple

# One line of /proc/self/maps. path: a file path, "[heap]", "[stack]", ... or "" for anonymous
# memory. (A named tuple, not a dataclass: dataclasses imports inspect, 11 ms at the first fork.)
Mapping = namedtuple("Mapping", ("start", "end", "perms", "offset", "path"))


class Maps:
    def __init__(self, mappings):
        self.mappings = sorted(mappings, key=lambda m: m.start)
        self._starts = [m.start for m in self.mappings]

    @classmethod
    def read(cls, path="/proc/self/maps"):
        out = []
        try:
            # file names are bytes, and may hold a "\r" (only "\n" is escaped by the kernel)
            with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as f:
                for line in f:
                    parts = line.split(None, 5)
                    if len(parts) < 5:
                        continue
                    try:
                        lo, hi = parts[0].split("-")
                        out.append(Mapping(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16),
                                           parts[5].strip() if len(parts) > 5 else ""))
                    except ValueError:  # not a line of the kernel's format: skip it
                        continue
        except OSError:
            pass
        return cls(out)

    def find(self, addr):
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and self.mappings[i].start <= addr < self.mappings[i].end:
            return self.mappings[i]
        return None

    def region_name(self, addr):
        """The report's `library`: a file path, [heap], [stack], [anon], or None if unmapped.

        Anonymous memory is "[anon]" even right after a file's mapping: that may be the
        file's .bss or an unrelated mmap (a malloc arena) placed there; dladdr, which knows
        each object's segments, is what names a .bss (see symbols.locate).
        """
        m = self.find(addr)
        if m is None:
            return None
        return m.path or "[anon]"

    def file_base(self, path):
        """Load address of a file: start of its mapping with file offset 0."""
        for m in self.mappings:
            if m.path == path and m.offset == 0:
                return m.start
        return None
