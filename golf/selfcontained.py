"""The self-contained train_gpt.py: the trainer plus the golf/quant modules it imports, in one file.

A record's counted code must live in its train_gpt.py, yet the repo's trainer imports golf and
quant. `pack` turns it into one file: a short stdlib-only bootstrap holding every source
(lzma-compressed, base85 in a string literal) that serves `golf.*`/`quant.*` imports from memory
and then runs the trainer's own source as `__main__`. Same sources → same bytes, so the trainer
can log the size of its packed form before it is ever written (`running_code`), and a record's
logged code size is the size of the file it ships.

The trainer imports this module, so it is itself packed into every submission: keep it small and
stdlib-only. Checking, smoke runs and record folders live in golf/record/.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import hashlib
import importlib.util
import json
import lzma
from pathlib import Path

from golf.errors import GolfError
from quant.limits import loads_json

ROOTS = ("golf", "quant")  # the packages a packed file embeds; everything else stays an import
PAYLOAD_NAME = "_GOLF_SOURCES"  # the string literal holding the payload in a packed file
# Raw LZMA2, no container: the xz header/index would be ~60 bytes of counted code for nothing.
# The dictionary is fixed so that the bootstrap can decode what any payload up to 16 MiB encodes.
_DICT_SIZE = 1 << 24
_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": _DICT_SIZE}]
MAX_PAYLOAD_BYTES = _DICT_SIZE  # decoding more than this is refused (a hostile folder's lzma bomb)

# The packed file, around the payload. Stdlib only; it must not need golf, a folder or a file.
# Unknown golf/quant names raise instead of falling back to an installed copy, so a packed run
# never mixes the embedded sources with other ones. Sources go into linecache so tracebacks
# (printed by the traceback module, which reads it) and inspect.getsource show their lines.
_BOOTSTRAP = '''"""train_gpt.py, self-contained: made by `golf pack` (golf {version}) from the repo's train_gpt.py and
the {count} golf/quant modules it imports ({source_bytes} bytes of source, sha256 {digest}).
The sources are embedded below ({payload_name}: lzma + base85) and imported from memory, so this
file runs alone, like the official one: torchrun --standalone --nproc_per_node=8 train_gpt.py
Third-party requirements: see requirements.txt. Extract the sources: golf pack --unpack train_gpt.py DIR
"""
import base64, importlib.abc, importlib.machinery, json, linecache, lzma, sys, traceback

{payload_name} = "{payload}"


class _EmbeddedSources(importlib.abc.MetaPathFinder, importlib.abc.InspectLoader):
    def __init__(self, payload):
        self.golf_payload = payload
        self.roots = {{name.split(".")[0] for name in payload["modules"]}}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in self.roots:
            return None
        if name not in self.golf_payload["modules"]:
            raise ModuleNotFoundError(f"{{name}} is not embedded in this train_gpt.py", name=name)
        return importlib.machinery.ModuleSpec(name, self, is_package=name in self.golf_payload["packages"])

    def get_source(self, name):
        return self.golf_payload["modules"][name]

    def get_code(self, name):
        return _compile(self.get_source(name), name.replace(".", "/") + ".py")


def _compile(source, name):
    filename = "<golf pack>/" + name
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return compile(source, filename, "exec", dont_inherit=True)


_payload = json.loads(lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[{{"id": lzma.FILTER_LZMA2, "dict_size": {dict_size}}}]
                                             ).decompress(base64.b85decode({payload_name})))
sys.meta_path.insert(0, _EmbeddedSources(_payload))
sys.excepthook = traceback.print_exception  # unlike the C default, it reads linecache: embedded lines show
exec(_compile(_payload["script"], "train_gpt.py"), globals())
'''


@dataclasses.dataclass(frozen=True)
class Sources:
    """The code a submission ships: the trainer's source and {module name: source} of golf/quant."""

    script: str
    modules: dict[str, str]
    packages: tuple[str, ...]

    def payload(self) -> bytes:
        # Canonical JSON: the payload, hence the packed file, is a function of the sources alone.
        return json.dumps({"script": self.script, "modules": self.modules, "packages": list(self.packages)},
                          sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()

    def sha256(self) -> str:
        return hashlib.sha256(self.payload()).hexdigest()

    def source_bytes(self) -> int:
        return len(self.script.encode()) + sum(len(s.encode()) for s in self.modules.values())

    def files(self) -> dict[str, str]:
        """{relative path: source}, as the files sit in the repo (train_gpt.py, golf/..., quant/...)."""
        out = {"train_gpt.py": self.script}
        for name, source in self.modules.items():
            out[name.replace(".", "/") + ("/__init__.py" if name in self.packages else ".py")] = source
        return out


@dataclasses.dataclass(frozen=True)
class RunningCode:
    """What the running trainer ships: its sources and the byte size of its packed train_gpt.py."""

    sources: Sources
    packed_bytes: int
    packed: bool  # True when running as the packed file itself


# ----------------------------------------------------------------------------- finding the sources


def _module_file(module: str) -> Path | None:
    """The source file of a golf/quant module, found on disk without importing it."""
    parts = module.split(".")
    if parts[0] not in ROOTS:
        return None
    spec = importlib.util.find_spec(parts[0])  # a top-level spec runs nothing
    if spec is None or not spec.submodule_search_locations:
        return None
    base = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts[1:])
    for path in (base.with_suffix(".py") if len(parts) > 1 else None, base / "__init__.py"):
        if path is not None and path.is_file():
            return path.resolve()
    return None


def code_modules(script: Path) -> dict[Path, str]:
    """{file: module name} for `script` ("__main__") and every golf/quant module it imports,
    transitively: lazy imports included (a packed script must carry them), with the packages on
    the way (their __init__ runs too). Found by reading the sources (ast), never by importing."""
    files, todo = {script.resolve(): "__main__"}, [(script.resolve(), "__main__")]
    while todo:
        path, module = todo.pop()
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        names: list[str] = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                names += [base] + [f"{base}.{a.name}" for a in node.names]  # `from pkg import submodule`
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                sub = ".".join(parts[:i])
                found = _module_file(sub)
                if found is not None and found not in files:
                    files[found] = sub
                    todo.append((found, sub))
    return files


def code_files(script: Path) -> list[Path]:
    """`script` plus every golf/quant module it imports (see `code_modules`), sorted."""
    return sorted(code_modules(script))


def read_sources(script: Path) -> Sources:
    """The sources `pack` embeds, read from disk as they are (bytes decoded as UTF-8, unchanged)."""
    found = code_modules(script)
    modules = {name: path.read_text(encoding="utf-8") for path, name in found.items() if name != "__main__"}
    packages = tuple(sorted(name for path, name in found.items() if path.name == "__init__.py"))
    return Sources(script.read_text(encoding="utf-8"), dict(sorted(modules.items())), packages)


# ----------------------------------------------------------------------------- packing and reading back


def pack(sources: Sources) -> bytes:
    """The self-contained train_gpt.py for `sources`, deterministic (same sources → same bytes)."""
    payload = sources.payload()
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise GolfError(f"sources are {len(payload)} bytes; the packed format holds at most {MAX_PAYLOAD_BYTES}")
    encoded = base64.b85encode(lzma.compress(payload, format=lzma.FORMAT_RAW, filters=_FILTERS)).decode()
    return _BOOTSTRAP.format(
        version=_golf_version(), count=len(sources.modules), source_bytes=f"{sources.source_bytes():,}",
        digest=sources.sha256(), payload_name=PAYLOAD_NAME, payload=encoded, dict_size=_DICT_SIZE).encode()


def unpack(text: str) -> Sources | None:
    """The sources embedded in a packed train_gpt.py, read as data (parsed, never executed);
    None if `text` is not a packed file. Raises ValueError if it is one but its payload is bad."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # not Python (or too deep to be ours)
        return None
    literal = next((node.value.value for node in tree.body if isinstance(node, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == PAYLOAD_NAME for t in node.targets)
                    and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)), None)
    if literal is None:
        return None
    try:
        decoder = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "dict_size": _DICT_SIZE}])
        raw = decoder.decompress(base64.b85decode(literal), max_length=MAX_PAYLOAD_BYTES)
        if not decoder.eof:
            raise ValueError(f"payload is truncated or larger than {MAX_PAYLOAD_BYTES} bytes")
        data = loads_json(raw, "payload", MAX_PAYLOAD_BYTES)  # bounded depth: a QuantError is a ValueError
        modules = {str(k): str(v) for k, v in data["modules"].items()}
        packages = tuple(str(p) for p in data["packages"])
        # Names become file paths (Sources.files, `golf pack --unpack`): only dotted identifiers,
        # so a hostile payload cannot name "../x" or "/etc/x".
        bad = [n for n in [*modules, *packages] if not all(part.isidentifier() for part in n.split("."))]
        if bad or not set(packages) <= set(modules):
            raise ValueError(f"module names {bad or sorted(set(packages) - set(modules))!r} are not embedded modules")
        return Sources(str(data["script"]), modules, packages)
    except (ValueError, lzma.LZMAError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{PAYLOAD_NAME} is not a valid golf payload ({type(e).__name__}: {e})") from None


def running_code(script: Path) -> RunningCode:
    """The sources of the running trainer and the size of its packed form. Run from the repo, the
    sources are read from disk and packed in memory; run as a packed file (this module was then
    served by the bootstrap's loader), they are the embedded ones and the size is the file's own."""
    payload = getattr(globals().get("__loader__"), "golf_payload", None)
    if payload is None:
        sources = read_sources(script)
        return RunningCode(sources, len(pack(sources)), packed=False)
    sources = Sources(payload["script"], dict(payload["modules"]), tuple(payload["packages"]))
    return RunningCode(sources, script.stat().st_size, packed=True)


def _golf_version() -> str:
    from golf import __version__

    return __version__
