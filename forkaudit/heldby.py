"""Which locks a thread holds, read off its frames.

A plain threading.Lock records no owner. But the other threads are frozen at
the fork, and their frames say what they are doing: a frame whose current
line is inside the body of ``with <expr>:`` holds what <expr> names, and one
past ``<expr>.acquire()`` with no ``<expr>.release()`` in between holds it
too. The expression is evaluated in the frame without running any user code
(names, attributes found in instance or class dicts, constant subscripts).

A frame inside Condition.wait() has released the Condition's lock (and holds
only its private waiter lock, which no other thread ever takes): both are
recorded so that callers can drop them.
"""
import ast
import linecache
import threading
import types

from . import safeattr
from .locktypes import underlying

# Code objects are looked up by id(): hashing one runs over its names and constants (about
# 0.6 us, several times a frame, every fork). Each cache entry keeps its code object alive,
# so the id stays that object's.
WAIT_CODE_IDS = {id(threading.Condition.wait.__code__), id(threading.Condition.wait_for.__code__)}
_sources = {}   # filename -> its source lines (linecache's list), or [] if it has none: read once
_regions = {}   # id(code) -> (code, Regions or None)
_held = {}      # (id(code), line, inside __exit__) -> held_expressions' answer (its code pinned by _regions)
_MISSING = safeattr.MISSING


class Regions:
    """Lock-holding constructs of one function: with-blocks and acquire()/release() calls."""

    __slots__ = ("withs", "acquires", "releases")

    def __init__(self):
        self.withs = []      # (with_line, body_first, body_last, expr)
        self.acquires = []   # (line, expr, ast.dump(expr))
        self.releases = []   # (line, dump of expr)


# True while the snapshot reads the frames (flow.take_snapshot): no file is read then. Reading
# one releases the GIL, and the other threads would move on from the frames being read: what
# the snapshot says a thread holds and where it was would be from two different moments.
cached_only = False


def _lines(filename):
    """The source lines of a file (linecache's), or, under cached_only, only if already read."""
    if cached_only:
        entry = linecache.cache.get(filename)
        return entry[2] if type(entry) is tuple and len(entry) > 2 and type(entry[2]) is list else []
    return linecache.getlines(filename)


def _source(filename):
    """The lines of a file, read at most once; under cached_only, None if not read yet."""
    lines = _sources.get(filename)
    if lines is None:
        if cached_only:
            return None   # not read yet: this frame's locks are not known from its source
        lines = _sources[filename] = _lines(filename)
    return lines


def _parse(text, filename):
    try:
        return ast.parse(text, filename)
    except (SyntaxError, ValueError, MemoryError):
        return None


def _code_lines(code):
    """The line numbers a code object's instructions come from, nested code objects' too."""
    out = []
    stack = [code]
    while stack:
        c = stack.pop()
        if hasattr(c, "co_lines"):
            out.extend(line for _, _, line in c.co_lines() if line is not None)
        else:   # 3.9: co_lnotab, pairs of (offset, line) increments, the line's signed
            line = c.co_firstlineno
            out.append(line)
            table = c.co_lnotab
            for k in range(1, len(table), 2):
                step = table[k]
                line += step - 256 if step >= 128 else step
                out.append(line)
        stack.extend(k for k in c.co_consts if type(k) is types.CodeType)
    return out


def _indent(line):
    return len(line) - len(line.lstrip(" \t"))


def _function_text(lines, code):
    """The source of code's function alone, at its own line numbers in the file (blank lines
    before it, and an 'if 1:' line for one that is indented), or None.

    It ends past its last instruction's line, at the first line that is indented no deeper
    than its first one (a decorator or its def): the rest of its last statement is there."""
    first = code.co_firstlineno
    if not 1 <= first <= len(lines):
        return None
    last = max([first] + _code_lines(code))
    depth = _indent(lines[first - 1])
    while last < len(lines):
        line = lines[last]   # (the line after `last`: lines[] counts from 0)
        if line.strip() and not line.lstrip().startswith("#") and _indent(line) <= depth:
            break
        last += 1
    body = "".join(lines[first - 1:last])
    if not body.endswith("\n"):
        body += "\n"
    if depth == 0:
        return "\n" * (first - 1) + body
    if first < 2:
        return None
    return "\n" * (first - 2) + "if 1:\n" + body


def _function_node(code):
    """The ast of code's function, parsed from its own lines (a whole file's tree costs about
    twenty times the memory of one function's, and its pages stay dirty after it is freed: a
    fork copies them, the scan reads them), or from the whole file where those do not parse
    (the function's last statement goes on in a line indented less than its def). A module's
    code is its whole file."""
    if code.co_name.startswith("<") and code.co_name != "<module>":
        return None   # a lambda's or a comprehension's: no def to find (no with statement)
    lines = _source(code.co_filename)
    if not lines:
        return None
    if code.co_name == "<module>":
        return _parse("".join(lines), code.co_filename)
    text = _function_text(lines, code)
    tree = _parse(text, code.co_filename) if text is not None else None
    if tree is None:
        tree = _parse("".join(lines), code.co_filename)
    return _find_function(tree, code) if tree is not None else None   # (None: a class body's)


def _with_opcodes():
    """The opcodes a with or async-with statement compiles to on this Python (pseudo-opcodes,
    256 and up, never appear in co_code), or None where there are none to know it by."""
    try:
        import opcode
    except ImportError:
        return None
    names = ("SETUP_WITH", "BEFORE_WITH", "SETUP_ASYNC_WITH", "BEFORE_ASYNC_WITH")
    ops = [opcode.opmap[n] for n in names if opcode.opmap.get(n, 256) < 256]
    return bytes(ops) or None


_WITH_OPS = _with_opcodes()
_may_hold = {}  # id(code) -> (code, answer): co_code is a fresh copy on each read (3.11+)


def may_hold(code):
    """Can a frame of `code` hold a lock the way regions() reads it (a with statement, an
    .acquire() call)? Told by the code object itself: a with statement compiles to one of
    _WITH_OPS (opcodes sit at the even offsets of co_code), x.acquire() puts "acquire" in
    co_names. A file none of whose functions on a stack can hold one is never parsed."""
    entry = _may_hold.get(id(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    if _WITH_OPS is None or "acquire" in code.co_names:
        answer = True
    else:
        ops = code.co_code[0::2]
        answer = any(op in ops for op in _WITH_OPS)
    _may_hold[id(code)] = (code, answer)
    return answer


def prefetch(thread_infos):
    """Load the sources of every frame that may hold a lock now. Reading a file releases the
    GIL, which lets the other threads move: returns True if any file was read, so that the
    caller can take its snapshot again, this time without I/O."""
    loaded = False
    for info in thread_infos:
        for frame in info.frames or ():
            code = frame.f_code
            name = code.co_filename
            if name not in _sources and may_hold(code):
                _source(name)
                loaded = True
    return loaded


def _find_function(tree, code):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == code.co_name:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if first == code.co_firstlineno or node.lineno == code.co_firstlineno:
                return node
    return None


_NESTED_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _own_nodes(fn):
    """The nodes of a function's (or module's) own code: nested functions, classes and
    lambdas run in frames of their own, so their bodies are left out."""
    stack = [node for node in fn.body if not isinstance(node, _NESTED_SCOPES)]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, _NESTED_SCOPES):
                stack.append(child)


def regions(code):
    entry = _regions.get(id(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    result = None
    fn = _function_node(code) if may_hold(code) else None
    if fn is not None:
        result = Regions()
        for node in _own_nodes(fn):
            if isinstance(node, (ast.With, ast.AsyncWith)) and node.body:
                last = node.body[-1]
                end = getattr(last, "end_lineno", None) or last.lineno
                for item in node.items:
                    result.withs.append((node.lineno, node.body[0].lineno, end, item.context_expr))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr == "acquire":
                    result.acquires.append((node.lineno, node.func.value, ast.dump(node.func.value)))
                elif node.func.attr == "release":
                    result.releases.append((node.lineno, ast.dump(node.func.value)))
    _regions[id(code)] = (code, result)
    return result


def held_expressions(code, line, inner=None):
    """The expressions whose locks a frame at `line` of `code` holds: [(expr, how)].

    how is "with" (inside a with body), "acquire" (past expr.acquire() with no release
    since), "exiting" (on the with line, inside __exit__: still held) or "acquiring" (on
    the with line or the acquire() call: waiting for the lock, or just granted it).
    inner is the code object of the next frame in (its callee), if any.
    """
    exiting = inner is not None and inner.co_name == "__exit__"
    key = (id(code), line, exiting)
    out = _held.get(key)
    if out is not None and _regions[key[0]][0] is code:
        return out
    out = _held_expressions(code, line, exiting)
    _held[key] = out
    return out


def _held_expressions(code, line, exiting):
    r = regions(code)
    if r is None or line is None:
        return ()
    out = []
    for with_line, first, last, expr in r.withs:
        if first <= line <= last and line > with_line:
            out.append((expr, "with"))
        elif line == with_line:
            out.append((expr, "exiting" if exiting else "acquiring"))
    for acq_line, expr, dump in r.acquires:
        # (dumped once, with the regions: ast.dump leaves a reference cycle behind each call)
        if acq_line < line:
            if not any(d == dump and acq_line < rel_line <= line for rel_line, d in r.releases):
                out.append((expr, "acquire"))
        elif acq_line == line:
            out.append((expr, "acquiring"))
    return tuple(out)


def _attr(obj, name):
    """obj.name without running user code (see safeattr)."""
    return safeattr.attr(obj, name)


def evaluate(expr, f_locals, f_globals):
    """Evaluate a name/attribute/constant-subscript expression safely; _MISSING if it can't be."""
    if isinstance(expr, ast.Name):
        for scope in (f_locals, f_globals, f_globals.get("__builtins__", {})):
            if safeattr.is_a(scope, types.ModuleType):
                scope = safeattr.module_dict(scope)
            # a dict, or on 3.13 a FrameLocalsProxy (a mapping over the frame's fast locals)
            try:
                if expr.id in scope:
                    return scope[expr.id]
            except (TypeError, KeyError):
                continue
        return _MISSING
    if isinstance(expr, ast.Attribute):
        base = evaluate(expr.value, f_locals, f_globals)
        return _MISSING if base is _MISSING else _attr(base, expr.attr)
    if isinstance(expr, ast.Subscript):
        base = evaluate(expr.value, f_locals, f_globals)
        key = expr.slice
        if isinstance(key, ast.Index):  # Python 3.8 ast
            key = key.value
        if base is _MISSING or not isinstance(key, ast.Constant) or type(base) not in (dict, list, tuple):
            return _MISSING
        try:
            return base[key.value]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return _MISSING


_texts = {}   # expression node -> its source text (the nodes live as long as the cached trees)


def _source_text(expr, how):
    if not hasattr(ast, "unparse"):   # 3.8's ast
        return how
    text = _texts.get(expr)
    if text is None:
        text = _texts[expr] = ast.unparse(expr)
    return text


class Held:
    """A lock a thread holds according to its frames."""

    __slots__ = ("lock", "wrapper", "frame_index", "how", "text", "root")

    def __init__(self, lock, wrapper, frame_index, how, text, root=None):
        self.lock, self.wrapper, self.frame_index, self.how, self.text = lock, wrapper, frame_index, how, text
        self.root = root  # ("global" | "local", object): the name the expression starts from


def root_of(expr, f_locals, f_globals):
    """("global" | "local", object) for the name a name/attribute/subscript expression
    starts from (a module global, or a local of the frame), or None."""
    while isinstance(expr, (ast.Attribute, ast.Subscript)):
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    scopes = ((("global", f_globals),) if f_locals is f_globals else
              (("local", f_locals), ("global", f_globals)))
    for scope, names in scopes:
        try:  # a dict, or on 3.13 a FrameLocalsProxy; the key is a str: no user code runs
            if expr.id in names:
                return scope, names[expr.id]
        except (TypeError, KeyError):
            return None
    return None


def analyse(frames):
    """(held, acquiring, private) for one thread's frames (outermost first).

    held: [Held] locks the thread holds; acquiring: [Held] locks it is at the point of
    acquiring (waiting for, or granted but not yet back from acquire()); private:
    Condition.wait waiter locks (never a hazard). Locks a Condition.wait() in progress
    gave up are in neither list.
    """
    held, acquiring, released, private = [], [], set(), []
    for index, frame in enumerate(frames):
        code = frame.f_code
        if id(code) in WAIT_CODE_IDS:
            f_locals = frame.f_locals
            cond = f_locals.get("self")
            if safeattr.is_a(cond, threading.Condition):
                lines = _lines(code.co_filename)
                line = lines[frame.f_lineno - 1] if 0 < frame.f_lineno <= len(lines) else ""
                reacquiring = "_acquire_restore" in line
                for lock, _ in underlying(cond):
                    released.add(id(lock))
                    if reacquiring:  # woken: taking the Condition's lock back
                        acquiring.append(Held(lock, "Condition", index, "acquiring", "Condition.wait"))
                # one C call copies the deque: a generator over it would let the GIL go between
                # items, and other threads waiting on or notifying this Condition change it
                private.extend(tuple(safeattr.get(cond, "_waiters", ())))
            waiter = f_locals.get("waiter")
            if waiter is not None:
                private.append(waiter)
            continue
        inner = frames[index + 1].f_code if index + 1 < len(frames) else None
        exprs = held_expressions(code, frame.f_lineno, inner)
        if not exprs:
            continue
        f_locals, f_globals = frame.f_locals, frame.f_globals
        for expr, how in exprs:
            obj = evaluate(expr, f_locals, f_globals)
            if obj is _MISSING and how in ("with", "exiting"):
                obj = generator_held(expr, f_locals, f_globals)  # with a @contextmanager call
            if obj is _MISSING:
                continue
            text = _source_text(expr, how)
            root = root_of(expr, f_locals, f_globals)
            for lock, wrapper in underlying(obj):
                h = Held(lock, wrapper, index, how, text, root)
                (acquiring if how == "acquiring" else held).append(h)
    return [h for h in held if id(h.lock) not in released], acquiring, private


# --- locks held by a suspended @contextmanager generator ----------------------------------------
# Inside ``with self._guard():`` where _guard is a @contextmanager generator that yields inside
# ``with self._lock:``, the generator is suspended and its frame is on no thread's stack: the
# lock is held by the thread running the with-body. The generator function's source says which
# with-blocks hold a yield; their expressions are evaluated with the generator's first argument
# bound to the receiver of the call (``self``), without running any code.

_CO_GENERATOR = 0x20


def _class_function(obj, name):
    """The plain function `name` of obj's class (from class dicts only), or None."""
    for klass in safeattr.mro(type(obj)):
        entry = safeattr.class_dict(klass).get(name, _MISSING)
        if entry is not _MISSING:
            return entry if type(entry) is types.FunctionType else None
    return None


def _yield_holders(code):
    """The with-expressions of a generator function whose body holds a yield."""
    fn = _function_node(code) if may_hold(code) else None
    if fn is None:
        return []
    out = []
    for node in _own_nodes(fn):
        if isinstance(node, ast.With) and any(
                isinstance(n, (ast.Yield, ast.YieldFrom)) for b in node.body for n in ast.walk(b)):
            out.extend(item.context_expr for item in node.items)
    return out


def generator_held(expr, f_locals, f_globals):
    """The lock a suspended @contextmanager generator holds for ``with <call>:``, or _MISSING."""
    if not isinstance(expr, ast.Call):
        return _MISSING
    receiver = _MISSING
    if isinstance(expr.func, ast.Attribute):
        receiver = evaluate(expr.func.value, f_locals, f_globals)
        func = _class_function(receiver, expr.func.attr) if receiver is not _MISSING else None
    else:
        func = evaluate(expr.func, f_locals, f_globals)
    gen = safeattr.get(func, "__wrapped__") if type(func) is types.FunctionType else None
    if type(gen) is not types.FunctionType or not gen.__code__.co_flags & _CO_GENERATOR:
        return _MISSING
    code = gen.__code__
    scope = {}
    if receiver is not _MISSING and code.co_argcount:
        scope[code.co_varnames[0]] = receiver
    for held in _yield_holders(code):
        obj = evaluate(held, scope, gen.__globals__)
        if obj is not _MISSING and underlying(obj):
            return obj
    return _MISSING
