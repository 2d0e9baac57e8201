"""The persistent compilation cache: where it goes and that the switch turns it off.

Each case runs the console entry point in a fresh process (JAX opens the cache once
per process) with a tiny jitted function in place of the Typer app.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nqs import compile_cache

# main() as the console script calls it, with the app replaced by one small compile;
# the compile-time threshold is lowered so that this tiny function is written.
_SCRIPT = """
import jax, jax.numpy as jnp
from nqs import compile_cache
import nqs_cli.app as app_mod
compile_cache.MIN_COMPILE_TIME = 0.0
app_mod.app = lambda: print(float(jax.jit(lambda x: jnp.sin(x) * 3.0)(1.0)))
app_mod.main()
print(jax.config.jax_compilation_cache_dir)
"""


def _main(env_update: dict[str, str], tmp_path: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NQS_", "JAX_"))}
    env["HOME"] = str(tmp_path / "home")
    env.pop("XDG_CACHE_HOME", None)
    env.update(env_update)
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.split()


def _entries(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*")) if directory.exists() else []


def test_cache_dir_from_environment_gets_entries(tmp_path):
    cache = tmp_path / "cache"
    out = _main({"NQS_CACHE_DIR": str(cache)}, tmp_path)
    assert float(out[0]) == pytest.approx(3.0 * 0.8414709848)
    assert out[1] == str(cache.resolve())
    assert _entries(cache)


def test_no_cache_switch_writes_nothing(tmp_path):
    cache = tmp_path / "cache"
    _main({"NQS_CACHE_DIR": str(cache), "NQS_NO_CACHE": "1"}, tmp_path)
    assert not _entries(cache)
    assert not _entries(tmp_path / "home")


def test_default_cache_dir_is_under_the_user_cache_dir(tmp_path):
    _main({"XDG_CACHE_HOME": str(tmp_path / "xdg")}, tmp_path)
    assert _entries(tmp_path / "xdg" / "nqs" / "jax")
    _main({}, tmp_path)
    assert _entries(tmp_path / "home" / ".cache" / "nqs" / "jax")


def test_default_directory():
    home = Path("/home/u")
    assert compile_cache.default_directory(None, home) == home / ".cache/nqs/jax"
    assert compile_cache.default_directory(Path("/c"), home) == Path("/c/nqs/jax")
