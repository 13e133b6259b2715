"""Sphinx extension: the execution cache is only as fresh as the code the chapters import.

jupyter-cache keys a notebook on its code cells alone, so after a change to the companion
package (``llmbook/``), its data files, the pinned ``requirements.txt`` or the installed
versions of the libraries the book reports, a cached build would publish outputs that the
old code computed. This extension fingerprints those inputs before anything is read:

- sha256 over the sorted relative paths and bytes of the files matched by
  ``freshcache_globs`` (relative to the book's source folder; hidden files, ``__pycache__``
  and ``*.pyc`` are skipped), plus the installed versions (``importlib.metadata``) of
  ``freshcache_packages``;
- the fingerprint the cached outputs were computed with is kept next to them, in
  ``freshcache.json`` inside the jupyter cache folder (resolved as myst-nb does:
  ``nb_execution_cache_path``, else ``<outdir>/../.jupyter_cache``). When it differs, or
  is missing while the cache holds executed notebooks (unknown provenance), the cache is
  cleared and the log says why in one line;
- clearing the cache alone would change nothing: Sphinx does not re-read a notebook whose
  source is unchanged, so myst-nb would never look in the cache. The fingerprint is
  therefore also the ``env``-rebuild config value ``freshcache_fingerprint``: when it
  differs from the one in the pickled environment, Sphinx re-reads (so re-executes) every
  document. Sphinx pickles the environment only after a complete read, so a build killed
  after the cache was cleared (CI timeout, OOM, Ctrl-C: Sphinx deletes its pickle only on
  an exception) still re-reads every document next time; and ``env-get-outdated`` marks
  every document when this build cleared the cache while that value still matched
  (a cache of unknown provenance).

Everything runs in the main process: the check on ``config-inited``, before Sphinx loads
its pickled environment and before myst-nb (``builder-inited``) resolves its cache, so
``parallel_read_safe`` holds. It costs a few tens of milliseconds.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Inputs of every chapter that jupyter-cache does not see (relative to the source folder).
DEFAULT_GLOBS = (
    "llmbook/**/*.py",
    "llmbook/data/*",
    "requirements.txt",
    "requirements-nodeps.txt",
)
#: Must equal ``llmbook.env.REPORTED_PACKAGES`` (a test checks it); not imported, to keep
#: the build from importing the package.
DEFAULT_PACKAGES = (
    "torch",
    "transformers",
    "accelerate",
    "bitsandbytes",
    "peft",
    "numpy",
)
FINGERPRINT_FILE = "freshcache.json"
_MYST_NB_UNSET = "--unset--"  # myst-nb's marker for an unset legacy config name


def matched_files(srcdir: Path, globs) -> list[Path]:
    files = set()
    for pattern in globs:
        for path in srcdir.glob(pattern):
            rel = path.relative_to(srcdir)
            if not path.is_file() or path.suffix == ".pyc":
                continue
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            files.add(rel)
    return sorted(files, key=lambda p: p.as_posix())


def package_versions(names) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def fingerprint(srcdir: Path, globs, packages) -> dict:
    """``{"fingerprint": hex, "files": {path: sha256}, "packages": {name: version}}``."""
    total = hashlib.sha256()
    files = {}
    for rel in matched_files(srcdir, globs):
        data = (srcdir / rel).read_bytes()
        files[rel.as_posix()] = hashlib.sha256(data).hexdigest()
        total.update(
            rel.as_posix().encode() + b"\0" + len(data).to_bytes(8, "big") + data
        )
    versions = package_versions(packages)
    total.update(json.dumps(versions, sort_keys=True).encode())
    return {"fingerprint": total.hexdigest(), "files": files, "packages": versions}


def cache_path(app, config) -> Path:
    """The jupyter cache folder, resolved as myst-nb's ``create_mystnb_config`` does."""
    path = getattr(config, "nb_execution_cache_path", "") or ""
    legacy = getattr(config, "jupyter_cache", _MYST_NB_UNSET)
    if legacy != _MYST_NB_UNSET:
        path = legacy
    if not path:
        return Path(app.outdir).parent.joinpath(".jupyter_cache").resolve()
    return Path(path).absolute()


def execution_mode(config) -> str:
    mode = getattr(config, "nb_execution_mode", "auto")
    legacy = getattr(config, "jupyter_execute_notebooks", _MYST_NB_UNSET)
    return str(legacy if legacy != _MYST_NB_UNSET else mode)


def _names(items: list[str], limit: int = 3) -> str:
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f" and {len(items) - limit} more"


def what_changed(old: dict, new: dict) -> str:
    """A few words on what differs between two fingerprints."""
    old_files, new_files = old.get("files", {}), new["files"]
    changed = sorted(
        p for p in new_files.keys() & old_files.keys() if new_files[p] != old_files[p]
    )
    added = sorted(new_files.keys() - old_files.keys())
    removed = sorted(old_files.keys() - new_files.keys())
    old_pkgs, new_pkgs = old.get("packages", {}), new["packages"]
    pkgs = sorted(
        n
        for n in old_pkgs.keys() | new_pkgs.keys()
        if old_pkgs.get(n) != new_pkgs.get(n)
    )
    parts = []
    if changed:
        parts.append(f"{_names(changed)} changed")
    if added:
        parts.append(f"{_names(added)} added")
    if removed:
        parts.append(f"{_names(removed)} removed")
    if pkgs:
        parts.append(
            "installed "
            + _names(
                [
                    f"{n} {old_pkgs.get(n) or 'none'} -> {new_pkgs.get(n) or 'none'}"
                    for n in pkgs
                ]
            )
        )
    return "; ".join(parts) or "the fingerprint's inputs changed"


def _cache_has_records(path: Path) -> bool:
    if not (path / "global.db").is_file():
        return False
    from jupyter_cache import get_cache

    try:
        return bool(get_cache(path).list_cache_records())
    except Exception:  # an unreadable database is no evidence of freshness
        return True


def check_cache(app, config) -> None:
    srcdir = Path(app.srcdir)
    new = fingerprint(srcdir, config.freshcache_globs, config.freshcache_packages)
    # read by Sphinx when it compares this build's config with the pickled environment
    config.freshcache_fingerprint = new["fingerprint"]

    path = cache_path(app, config)
    stamp = path / FINGERPRINT_FILE
    reason = None
    if stamp.is_file():
        try:
            old = json.loads(stamp.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        if old.get("fingerprint") != new["fingerprint"]:
            reason = f"{what_changed(old, new)} since the cached outputs were computed"
    elif _cache_has_records(path):
        reason = "the cached outputs carry no record of the llmbook/requirements they were computed with"

    app._freshcache_cleared = bool(reason)
    if reason:
        logger.info(f"llmbook: {reason}: re-executing every chapter")
        if path.exists():
            from jupyter_cache import get_cache

            get_cache(path).clear_cache()
    if reason or not stamp.is_file():
        if path.exists() or execution_mode(config) == "cache":
            path.mkdir(parents=True, exist_ok=True)
            stamp.write_text(
                json.dumps(new, indent=1, sort_keys=True) + "\n", encoding="utf-8"
            )


def reread_all_after_clearing(app, env, added, changed, removed):
    """Every document, when this build cleared the cache; else none.

    A changed fingerprint already makes Sphinx re-read everything (``env`` config value);
    this covers a cache cleared while the environment's fingerprint still matches (cache
    of unknown provenance, or a cache folder shared by two output folders).
    """
    return set(env.found_docs) if getattr(app, "_freshcache_cleared", False) else set()


def setup(app):
    app.add_config_value("freshcache_globs", list(DEFAULT_GLOBS), "", (list, tuple))
    app.add_config_value(
        "freshcache_packages", list(DEFAULT_PACKAGES), "", (list, tuple)
    )
    # set on config-inited, never by hand: a change makes Sphinx re-read every document
    app.add_config_value("freshcache_fingerprint", "", "env", str)
    app.connect("config-inited", check_cache, priority=400)
    app.connect("env-get-outdated", reread_all_after_clearing)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
