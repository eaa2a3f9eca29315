"""What code a stage runs, found from the source: the nerflow modules its adapter and library function import,
transitively, and the versions of the libraries those modules import. A stage's key hashes this, so an edit
recomputes exactly the stages that run the edited module; there is no hand-kept module list.

Found from the code (`ast`, nothing is imported to find it):
- every `import` and `from ... import`, at module level or inside functions (a lazy import is still code the
  stage can run), including relative imports and the packages a dotted import runs (`nerflow/ner/__init__.py`);
- imports by name: a string constant that names a nerflow module (`"nerflow.ner.training"`, or
  `"nerflow.x:function"`), as `importlib.import_module` or `-m` would import it (a logger's name is not one).

Three tables name modules by name for dispatch: the task types (nerflow.task_types.IMPLEMENTATIONS), a task type's
entry points (`TASK.entries`) and the stage graph's adapters and shared functions (nerflow.graph). Followed
whole, every stage would reach every stage's code. Their entries are followed in context instead: the stage's own
adapter and entry, and its task type's module where the task type computes the stage (not for a shared
"module:function" such as pretrain's); another task type's package is never this task's code (the seam guarantees
no shared module imports one).

tests/integration/test_code_identity.py checks this against what each stage really imports, measured by running it.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = "nerflow"
MODULE_NAME = re.compile(r"^(nerflow(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?::[A-Za-z_][A-Za-z0-9_.]*)?$")
# MLflow tag names that are also module names: the tag `nerflow.drift` (true/false on a drift check's run) is not
# the module. Only the exact string is a tag; "nerflow.drift:assess" would still name the module.
TAG_NAMES = frozenset({"nerflow.drift"})


def package_roots() -> dict[str, Path]:
    """nerflow's packages and the folders their source is read from (pyproject maps tasks/ and flows/ into the
    package): {"nerflow": src/nerflow, "nerflow.prefect_tasks": tasks, "nerflow.flows": flows}."""
    import importlib.util

    import nerflow

    roots = {ROOT: Path(nerflow.__file__).parent}
    for name in (f"{ROOT}.prefect_tasks", f"{ROOT}.flows"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            roots[name] = Path(list(spec.submodule_search_locations)[0])
    return roots


@dataclass(frozen=True)
class ModuleSource:
    name: str
    path: Path
    is_package: bool
    digest: str                          # sha256 of the source bytes
    imports: frozenset[str]              # absolute names imported (modules or names inside modules)
    by_name: frozenset[str]              # nerflow modules named in string constants
    libraries: frozenset[str]            # top-level names of third-party imports


class SourceIndex:
    """Every nerflow module's source under `roots`, parsed once."""

    def __init__(self, roots: dict[str, Path]):
        self.roots = dict(roots)
        self.files: dict[str, tuple[Path, bool]] = {}
        for package, folder in sorted(self.roots.items(), key=lambda kv: len(kv[0])):
            for path in sorted(folder.rglob("*.py")):
                if "__pycache__" in path.parts:
                    continue
                rel = path.relative_to(folder).with_suffix("").parts
                is_package = rel[-1] == "__init__"
                parts = rel[:-1] if is_package else rel
                self.files[".".join((package, *parts))] = (path, is_package)
        self._parsed: dict[str, ModuleSource] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def add_outside(self, name: str) -> bool:
        """A stage's adapter or library function outside nerflow's packages (a plugin, a test's toy stage): its
        own file is indexed too, so its source is in the stage's key. True when found."""
        if name in self.files:
            return True
        import importlib.util

        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return False
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return False
        self.files[name] = (Path(spec.origin), spec.submodule_search_locations is not None)
        return True

    def module(self, name: str) -> ModuleSource:
        if name not in self._parsed:
            path, is_package = self.files[name]
            stat = path.stat()
            # parsed once per file version and process: an edit re-parses that file only (the index of the other
            # files' names, which by-name references resolve against, is the same)
            stamp = (name, str(path), stat.st_mtime_ns, stat.st_size, frozenset(self.files))
            if stamp not in _PARSED:
                _PARSED[stamp] = _parse(name, path, is_package, self)
            self._parsed[name] = _PARSED[stamp]
        return self._parsed[name]

    def owner(self, name: str) -> str | None:
        """The module that `name` is or lives in (`nerflow.ner.data.Sentence` -> `nerflow.ner.data`)."""
        while name and name not in self.files:
            name = name.rpartition(".")[0]
        return name or None


def _parse(name: str, path: Path, is_package: bool, index: SourceIndex) -> ModuleSource:
    source = path.read_bytes()
    tree = ast.parse(source, filename=str(path))
    package = name if is_package else name.rpartition(".")[0]
    imports, by_name, libraries = set(), set(), set()

    def add(target: str) -> None:
        if target == ROOT or target.startswith(ROOT + "."):
            imports.add(target)
        elif target and not target.startswith("__future__"):
            top = target.split(".")[0]
            if top not in sys.stdlib_module_names:
                libraries.add(top)

    # a logger's name is not an import, though it is often a module's name (`getLogger("nerflow.train")`)
    logger_names = {id(arg) for node in ast.walk(tree) if isinstance(node, ast.Call)
                    and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) == "getLogger"
                    for arg in node.args}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base = ".".join(base_parts[:len(base_parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            add(module)
            for alias in node.names:
                if module.startswith(ROOT):
                    add(f"{module}.{alias.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in logger_names \
                and node.value not in TAG_NAMES:
            match = MODULE_NAME.match(node.value)
            if match and index.owner(match.group(1)):
                by_name.add(index.owner(match.group(1)))
    return ModuleSource(name, path, is_package, hashlib.sha256(source).hexdigest(), frozenset(imports),
                        frozenset(by_name), frozenset(libraries))


@dataclass(frozen=True)
class Context:
    """Whose code: a stage of the graph for a task type. `roots`: the stage's adapter, its computing module and its
    task type's config module; `dispatched`: every module a dispatch table names; `allowed`: those this stage may
    reach by name; `foreign`: the packages of the other task types."""

    roots: frozenset[str]
    dispatched: frozenset[str]
    allowed: frozenset[str]
    foreign: tuple[str, ...]


def stage_context(stage, task: str, graph) -> Context:
    """The dispatch context of `stage` (a nerflow.graph.Stage) of `graph` for the task type `task`."""
    from nerflow import task_types

    kind = task_types.get(task)
    own = _entry_module(stage, kind)
    dispatched = set(task_types.IMPLEMENTATIONS.values())
    for name in task_types.IMPLEMENTATIONS:
        dispatched |= set(task_types.get(name).entries.values())
    for s in (*graph.stages, *getattr(graph, "optional", ())):   # an optional stage that is off: still dispatched,
        dispatched.add(s.adapter_module)                       # so no other stage's code follows it by name
        if ":" in s.entry:
            dispatched.add(s.entry.partition(":")[0])
    own_package = task_types.IMPLEMENTATIONS[kind.name].rpartition(".")[0]
    foreign = tuple(sorted({m.rpartition(".")[0] for m in task_types.IMPLEMENTATIONS.values()} - {own_package}))
    # every stage holds the config as an instance of its task type's class, so that class's module runs in it
    roots = frozenset({stage.adapter_module, own, kind.config.__module__})
    # a stage computed by the task type's entry runs its task module (task_types.get imports it by name); a shared
    # "module:function" (pretrain) does not, unless its own code imports it (then it is found as an import)
    task_module = set() if ":" in stage.entry else {task_types.IMPLEMENTATIONS[kind.name]}
    return Context(roots, frozenset(dispatched), frozenset({*roots, *task_module}), foreign)


def _entry_module(stage, kind) -> str:
    if ":" in stage.entry:
        return stage.entry.partition(":")[0]
    return kind.entries[stage.entry]


def closure(index: SourceIndex, context: Context) -> set[str]:
    """The nerflow modules a stage runs: its roots and everything they import, directly, inside functions, or by
    name, with the dispatch tables followed in context."""
    def foreign(name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in context.foreign)

    seen: set[str] = set()
    todo = [m for m in context.roots if m in index or index.add_outside(m)]
    while todo:
        name = todo.pop()
        if name in seen or foreign(name):
            continue
        seen.add(name)
        # running a module runs the packages above it first
        parent = name.rpartition(".")[0]
        while parent:
            if parent in index and parent not in seen:
                todo.append(parent)
            parent = parent.rpartition(".")[0]
        source = index.module(name)
        for target in source.imports:
            owner = index.owner(target)
            if owner:
                todo.append(owner)
        for target in source.by_name:
            if target in context.dispatched and target not in context.allowed:
                continue
            todo.append(target)
    return seen


@functools.lru_cache(maxsize=1)
def _top_level_names() -> dict[str, list[str]]:
    """import name -> distributions, from their `top_level.txt` (small files: ~0.1 s for every installed package)."""
    out: dict[str, list[str]] = {}
    for dist in importlib.metadata.distributions():
        for name in (dist.read_text("top_level.txt") or "").split():
            out.setdefault(name, []).append(dist.metadata["Name"])
    return out


def _distributions_of(name: str) -> list[str]:
    """The distributions that provide the import name `name` ("yaml" -> ["PyYAML"]). The import name itself is
    tried first (most are their distribution's name); `packages_distributions()`, which reads every package's file
    list (seconds on a cold disk, on every plan), only for a name nothing else resolves."""
    try:
        importlib.metadata.distribution(name)
        return [name]
    except importlib.metadata.PackageNotFoundError:
        pass
    return _top_level_names().get(name) or importlib.metadata.packages_distributions().get(name, [name])


@functools.cache
def _versions_of(name: str) -> tuple[tuple[str, str], ...]:
    """((distribution, version), ...) behind one import name. Once per process: each lookup reads package metadata
    from disk, and a plan asks for the same libraries for every stage (a process imports one version anyway)."""
    out = []
    for dist in _distributions_of(name):
        try:
            out.append((dist, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            out.append((dist, "not installed"))
    return tuple(out)


def library_versions(top_level_names: set[str]) -> dict[str, str]:
    """{distribution: version} of the libraries behind these import names ("yaml" -> PyYAML)."""
    return dict(pair for name in sorted(top_level_names) for pair in _versions_of(name))


def stage_code(stage, task: str, graph, roots: dict[str, Path] | None = None) -> dict:
    """The code identity of a stage for a task type: {"modules": {name: sha256}, "libraries": {dist: version}}."""
    index = _index(tuple(sorted((roots or package_roots()).items())))
    modules = closure(index, stage_context(stage, task, graph))
    sources = [index.module(m) for m in sorted(modules)]
    libraries = set().union(*(s.libraries for s in sources)) if sources else set()
    return {"modules": {s.name: s.digest for s in sources}, "libraries": library_versions(libraries)}


def _index(roots: tuple[tuple[str, Path], ...]) -> SourceIndex:
    """One parsed index per process and set of roots, rebuilt when a file changes (tests edit copies)."""
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for _, folder in roots
                  for p in sorted(Path(folder).rglob("*.py")))
    key = (roots, stamp)
    cached = _CACHE.get(roots)
    if cached is None or cached[0] != key:
        cached = (key, SourceIndex(dict(roots)))
        _CACHE[roots] = cached
    return cached[1]


_CACHE: dict[tuple, tuple] = {}
_PARSED: dict[tuple, ModuleSource] = {}
