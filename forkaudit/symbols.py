"""Where a lock lives: the library (mapping) and the symbol that covers it."""
from . import elf, native
from .maps import Maps


def locate(addr, maps):
    """(library, symbol) for an address: the file (or [heap]/[stack]/[anon]) and covering symbol."""
    info = native.dladdr(addr) if native.lib is not None else None
    library = maps.region_name(addr)
    base = None
    if info is not None and info[0] and info[0].startswith("/"):
        library, base = info[0], info[2]
    symbol = None
    if library and library.startswith("/"):
        if base is None:
            base = maps.file_base(library)
        if base is not None:
            symbol = elf.symbol_at(library, base, addr)
    if symbol is None and info is not None and info[1] and info[3] == addr:
        symbol = info[1]
    return library, symbol


__all__ = ["locate", "Maps"]
