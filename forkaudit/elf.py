"""Symbol tables of ELF files: the symbol that covers an address.

dladdr names only exported symbols; a static mutex (``static pthread_mutex_t``)
is named only by the file's .symtab. This reads .symtab (or .dynsym when the
file is stripped) and answers "which object symbol covers this offset".
"""
import bisect
import struct

SHT_SYMTAB, SHT_DYNSYM = 2, 11
STT_OBJECT, STT_TLS = 1, 6
PT_LOAD = 1

_cache = {}


class SymbolTable:
    def __init__(self, starts, ends, names, min_vaddr, is_exec):
        self.starts, self.ends, self.names = starts, ends, names
        self.min_vaddr = min_vaddr
        self.is_exec = is_exec

    def covering(self, vaddr):
        i = bisect.bisect_right(self.starts, vaddr) - 1
        while i >= 0 and self.starts[i] <= vaddr:
            if vaddr < self.ends[i]:
                return self.names[i]
            i -= 1
            if i >= 0 and vaddr - self.starts[i] > 1 << 20:
                break
        return None


def _read_table(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None  # 64-bit little-endian only
    (e_type, _m, _v, _entry, e_phoff, e_shoff, _flags, _ehsize, e_phentsize, e_phnum,
     e_shentsize, e_shnum, _shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
    min_vaddr = None
    for i in range(e_phnum):
        p_type, _fl, _off, p_vaddr = struct.unpack_from("<IIQQ", data, e_phoff + i * e_phentsize)
        if p_type == PT_LOAD:
            min_vaddr = p_vaddr if min_vaddr is None else min(min_vaddr, p_vaddr)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize) for i in range(e_shnum)]
    chosen = [s for s in sections if s[1] == SHT_SYMTAB] or [s for s in sections if s[1] == SHT_DYNSYM]
    entries = []
    for sh in chosen:
        _name, _t, _f, _a, sh_offset, sh_size, sh_link, _i, _al, sh_entsize = sh
        strtab = sections[sh_link]
        str_off, str_size = strtab[4], strtab[5]
        for st_name, st_info, _other, st_shndx, st_value, st_size in struct.iter_unpack(
                "<IBBHQQ", data[sh_offset:sh_offset + sh_size - sh_size % (sh_entsize or 24)]):
            if st_size == 0 or st_shndx == 0 or (st_info & 0xF) not in (STT_OBJECT,):
                continue
            end = data.find(b"\0", str_off + st_name, str_off + str_size)
            entries.append((st_value, st_value + st_size,
                            data[str_off + st_name:end].decode(errors="replace")))
    entries.sort()
    return SymbolTable([e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries],
                       (min_vaddr or 0) & ~0xFFF, e_type == 2)


def table(path):
    """The SymbolTable of an ELF file (cached), or None if it cannot be read."""
    if path not in _cache:
        try:
            _cache[path] = _read_table(path)
        except (OSError, struct.error, IndexError, ValueError):
            _cache[path] = None
    return _cache[path]


def symbol_at(path, load_base, addr):
    """Name of the object symbol of file `path` (mapped at load_base) that covers addr."""
    t = table(path)
    if t is None:
        return None
    vaddr = addr if t.is_exec else addr - load_base + t.min_vaddr
    return t.covering(vaddr)
