"""JAX's persistent compilation cache: compiled steps reused across processes.

XLA executables are written to a directory keyed by the computation, the compile
options, the JAX/jaxlib version and the device, so a second run of the same config
(same shapes, same static objects) loads its compiled step instead of compiling it
again. Results do not change: a cache hit is the executable a compile would produce.

The caller decides where (``nqs`` reads no environment variables); ``cli/app.py``
takes ``NQS_CACHE_DIR`` / ``NQS_NO_CACHE``.
"""

from __future__ import annotations

from pathlib import Path

import jax

#: Computations that took less than this to compile (s) are not written. Start-up of
#: a run is many small compilations (parameter initialisation, the sampler's warm-up,
#: the exact energy) besides the step, so a low bar pays for itself.
MIN_COMPILE_TIME = 0.05
#: Entries of any size are written (-1: no size threshold, no backend override).
MIN_ENTRY_SIZE = -1


def default_directory(cache_home: Path | None, home: Path) -> Path:
    """The cache directory under the user's cache dir: ``<cache_home>/nqs/jax``.

    Args:
        cache_home: ``$XDG_CACHE_HOME`` if set (None otherwise).
        home: the user's home directory (``~/.cache`` is used without cache_home).
    Returns:
        the directory (not created).
    """
    base = cache_home if cache_home is not None else home / ".cache"
    return base / "nqs" / "jax"


def enable(
    directory: Path | None,
    min_compile_time: float | None = None,
    min_entry_size: int | None = None,
) -> Path | None:
    """Switch the persistent compilation cache on in ``directory`` (None: off).

    Call before the first computation is compiled: JAX opens the cache once.

    Args:
        directory: cache directory (created if missing); None leaves the cache off.
        min_compile_time: seconds a compilation must take to be written (None:
            ``MIN_COMPILE_TIME``).
        min_entry_size: bytes an entry must have to be written (-1: any size; None:
            ``MIN_ENTRY_SIZE``).
    Returns:
        the resolved directory, or None if the cache is off (``directory`` None, or
        it cannot be created).
    """
    if directory is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    directory = Path(directory).expanduser().resolve()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    if min_compile_time is None:
        min_compile_time = MIN_COMPILE_TIME
    if min_entry_size is None:
        min_entry_size = MIN_ENTRY_SIZE
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_time)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", min_entry_size)
    return directory
