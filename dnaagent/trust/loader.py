"""Installing and loading signed test modules, and fetching them from peers.

:class:`ModuleStore` keeps verified packages in ``STATE_DIR/modules`` as
``NAME.dnapkg`` files. :meth:`ModuleStore.load` verifies the stored package
again (the file may have changed on disk) and imports it from the verified
bytes in memory, as the package ``dnaagent_ext.NAME``; its ``__init__.py``
must define ``make_module(reactor, agent)`` returning an ITestModule.

Peers that lack a module fetch it from the agent that has it with the
``dna.module.get`` request, in chunks that fit a datagram
(:func:`serve_packages`, :func:`fetch_package`), and install it only after
the same verification.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Sequence
from typing import Any

from twisted.logger import Logger

from dnaagent.errors import DnaAgentError
from dnaagent.guard.limits import TokenBuckets
from dnaagent.trust.package import MAX_PACKAGE, Package
from dnaagent.trust.store import TrustStore, UntrustedPackage

PACKAGE_SUFFIX = ".dnapkg"
NAMESPACE = "dnaagent_ext"
CHUNK = 4096
GET_HANDLER = "dna.module.get"
CHUNK_RATE = 20.0
CHUNK_BURST = 80

log = Logger()


class ModuleLoadError(DnaAgentError, ImportError):
    """A verified package could not be imported or has no usable entry point."""


class _SourceLoader(importlib.abc.Loader):
    """Runs one verified source file as a module."""

    def __init__(self, fullname: str, source: bytes, origin: str) -> None:
        self.fullname = fullname
        self.source = source
        self.origin = origin

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        """Use the default module object."""
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        """Compile and run the verified source."""
        code = compile(self.source, self.origin, "exec")
        exec(code, module.__dict__)  # noqa: S102 (the source is signed by a trusted key)


class _PackageFinder(importlib.abc.MetaPathFinder):
    """Finds the modules of one verified package under ``dnaagent_ext.NAME``."""

    def __init__(self, package: Package) -> None:
        self.prefix = f"{NAMESPACE}.{package.manifest.name}"
        self.package = package

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        """A spec for the package or one of its modules, else None."""
        if fullname != self.prefix and not fullname.startswith(self.prefix + "."):
            return None
        rel = fullname[len(self.prefix) :].lstrip(".").replace(".", "/")
        files = self.package.files
        for candidate, is_pkg in (
            (f"{rel}/__init__.py" if rel else "__init__.py", True),
            (f"{rel}.py", False),
        ):
            if candidate in files:
                origin = f"<{self.prefix}>/{candidate}"
                spec = importlib.util.spec_from_loader(
                    fullname,
                    _SourceLoader(fullname, files[candidate], origin),
                    origin=origin,
                    is_package=is_pkg,
                )
                if spec is not None and is_pkg:
                    spec.submodule_search_locations = []
                return spec
        return None


class ModuleStore:
    """Verified packages on disk, loaded on demand; see the module docstring."""

    def __init__(self, directory: str, trust: TrustStore) -> None:
        self.directory = directory
        self.trust = trust
        self.loaded: dict[str, types.ModuleType] = {}

    def path(self, name: str) -> str:
        """Where the package ``name`` is kept."""
        return os.path.join(self.directory, name + PACKAGE_SUFFIX)

    def install(self, data: bytes) -> Package:
        """Verify ``data`` and keep it; raises :class:`UntrustedPackage`."""
        package = self.trust.verify(data)
        os.makedirs(self.directory, mode=0o750, exist_ok=True)
        path = self.path(package.manifest.name)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        log.info(
            "installed module {name} {version} signed by {key}",
            name=package.manifest.name,
            version=package.manifest.version,
            key=package.key_id,
        )
        return package

    def installed(self) -> list[str]:
        """Names of the kept packages."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(n[: -len(PACKAGE_SUFFIX)] for n in names if n.endswith(PACKAGE_SUFFIX))

    def read(self, name: str) -> bytes:
        """The bytes of a kept package (FileNotFoundError when absent)."""
        with open(self.path(name), "rb") as f:
            return f.read(MAX_PACKAGE + 1)

    def load(self, name: str) -> types.ModuleType:
        """Verify the kept package ``name`` again and import it."""
        if name in self.loaded:
            return self.loaded[name]
        package = self.trust.verify(self.read(name))
        if package.manifest.name != name:
            raise UntrustedPackage(
                "bad_manifest", f"{self.path(name)} holds {package.manifest.name}"
            )
        finder = _PackageFinder(package)
        if NAMESPACE not in sys.modules:
            ns = types.ModuleType(NAMESPACE)
            ns.__path__ = []
            sys.modules[NAMESPACE] = ns
        sys.meta_path.insert(0, finder)
        try:
            module = importlib.import_module(finder.prefix)
        except Exception as e:
            log.failure("importing module package {name} failed", name=name)
            raise ModuleLoadError(f"module package {name} does not import: {e}") from None
        finally:
            sys.meta_path.remove(finder)
        self.loaded[name] = module
        return module

    def make(self, name: str, reactor: Any, agent: Any = None) -> Any:
        """Load ``name`` and build its test module with ``make_module(reactor, agent)``."""
        module = self.load(name)
        factory = getattr(module, "make_module", None)
        if not callable(factory):
            raise ModuleLoadError(f"module package {name} has no make_module(reactor, agent)")
        return factory(reactor, agent)


def serve_packages(node: Any, store: ModuleStore, clock: Any = None) -> None:
    """Answer ``dna.module.get`` {name, offset} with a chunk of a kept package.

    Each peer may fetch ``CHUNK_BURST`` chunks at once and ``CHUNK_RATE`` per
    second after that (with a ``clock``; without one there is no limit).
    """
    buckets: TokenBuckets[bytes] = TokenBuckets(CHUNK_RATE, CHUNK_BURST)

    def get(body: Any, sender: Any) -> dict[str, Any]:
        if clock is not None and not buckets.take(sender.node_id, clock.seconds()):
            raise UntrustedPackage("rate", "too many chunk requests; slow down")
        if not isinstance(body, dict):
            raise UntrustedPackage("malformed", "the request must be a map")
        name, offset = body.get("name"), body.get("offset", 0)
        if not isinstance(name, str) or name not in store.installed():
            raise UntrustedPackage("missing_file", f"no module package {name!r} here")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise UntrustedPackage("malformed", "offset must be a non-negative integer")
        data = store.read(name)
        return {
            "name": name,
            "total": len(data),
            "offset": offset,
            "data": data[offset : offset + CHUNK],
        }

    node.register_handler(GET_HANDLER, get)


async def fetch_package(node: Any, peer: Any, name: str, store: ModuleStore) -> Package:
    """Fetch ``name`` from ``peer`` in chunks, verify it, keep it; :class:`UntrustedPackage`."""
    data = b""
    total = None
    while total is None or len(data) < total:
        answer = await node.request(peer, GET_HANDLER, {"name": name, "offset": len(data)})
        size = answer.get("total") if isinstance(answer, dict) else None
        chunk = answer.get("data") if isinstance(answer, dict) else None
        if (
            isinstance(size, bool)
            or not isinstance(size, int)
            or not 0 < size <= MAX_PACKAGE
            or not isinstance(chunk, bytes)
            or not chunk
            or (total is not None and size != total)
        ):
            raise store.trust.reject("malformed", f"peer sent a bad chunk of {name}")
        total = size
        data += chunk
    if len(data) != total:
        raise store.trust.reject("malformed", f"{name} arrived with the wrong size")
    return store.install(data)


def open_store(state_dir: str) -> ModuleStore:
    """The module store of an agent: ``STATE/modules``, trusting ``STATE/trusted_keys``."""
    trust = TrustStore(os.path.join(state_dir, "trusted_keys"))
    return ModuleStore(os.path.join(state_dir, "modules"), trust)


def load_signed_modules(store: ModuleStore, reactor: Any, agent: Any = None) -> list[Any]:
    """Every kept package that still verifies, built into test modules.

    A package that fails verification or does not load is logged, counted
    by the trust store and left out; the agent starts without it.
    """
    modules = []
    for name in store.installed():
        try:
            modules.append(store.make(name, reactor, agent))
        except (UntrustedPackage, ModuleLoadError, OSError):
            log.failure("module package {name} not loaded", name=name)
    return modules
