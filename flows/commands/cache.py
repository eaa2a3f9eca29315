"""`nerflow cache ls | prune`: the stage cache, never pruning what an aliased model or a live run depends on."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from nerflow.config import CACHE_DIR_ENV, ConfigError

DEFAULT_CACHE_DIR = Path(".cache/nerflow")   # PipelineConfig.cache_dir's default


def cache_dir_of(args: argparse.Namespace) -> Path:
    """--cache-dir, else NERFLOW_CACHE_DIR, else the config's default: the folder `nerflow run` on this machine
    writes to when its config sets no cache_dir (nerflow.config.load_config reads the same variable)."""
    return args.cache_dir or Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR)


def cmd_cache_ls(args: argparse.Namespace) -> int:
    from nerflow import cache

    args.cache_dir = cache_dir_of(args)
    entries = cache.list_entries(args.cache_dir)
    total = 0
    for e in entries:
        total += e.bytes
        note = "" if e.complete and e.current else "  (partial: checkpoints of an unfinished run)" if e.current \
            else "  (replaced by a forced recompute; pruned once no run reads it)"
        when = time.strftime('%Y-%m-%d %H:%M', time.localtime(e.modified))
        print(f"{e.stage:<9} {e.key}  {e.bytes / 1e6:>9.1f} MB  {when}{note}")
    print(f"{len(entries)} entries, {total / 1e6:.1f} MB in {args.cache_dir}")
    return 0


def protected_keys(cache_dir: Path) -> set[str]:
    """Stage keys that a model with an alias or a live run depends on, and the generations live runs read."""
    from nerflow.locks import held_locks
    from nerflow.prefect_tasks import mlflow_pages, tracking

    client = tracking.configure()
    # every page of models (past the first 100), and the versions of the aliased ones in batches of names: the
    # calls grow with pages, not with aliases
    aliased = {(m.name, str(v)) for m in mlflow_pages.registered_models(client) for v in (m.aliases or {}).values()}
    keys: set[str] = set()
    for version in mlflow_pages.versions_of_models(client, {name for name, _ in aliased}):
        if (version.name, str(version.version)) in aliased:
            keys |= {v for k, v in version.tags.items() if k.startswith("nerflow.") and k.endswith("_key")}
    for lock in held_locks(cache_dir):
        keys |= set(lock.get("keys", {}).values()) | set(lock.get("generations", {}).values())
    return keys


def cmd_cache_prune(args: argparse.Namespace) -> int:
    from nerflow import cache

    if args.keep is None and args.older_than is None:
        raise ConfigError("nerflow cache prune needs --keep N and/or --older-than DAYS")
    args.cache_dir = cache_dir_of(args)
    protected = protected_keys(args.cache_dir)
    doomed = cache.select_prunable(cache.list_entries(args.cache_dir), args.keep,
                                   args.older_than * 86400 if args.older_than is not None else None, protected)
    verb = "would remove" if args.dry_run else "removing"
    for e in doomed:
        name = e.path.name if not e.current or e.path.name.endswith(".work") else e.key
        print(f"{verb} {e.stage}/{name} ({e.bytes / 1e6:.1f} MB)")
        if not args.dry_run:
            cache.remove(e)
    # what killed writes left (never read); a key a live process holds may be mid-write: kept
    for stage, key, path in cache.leftovers(args.cache_dir):
        if key not in protected:
            size = cache.folder_size(path) if path.is_dir() and not path.is_symlink() else 0
            print(f"{verb} {stage}/{path.name} ({size / 1e6:.1f} MB, left by an interrupted write)")
            if not args.dry_run:
                cache.remove_path(path)
    print(f"{len(doomed)} entries, {sum(e.bytes for e in doomed) / 1e6:.1f} MB"
          f"{' would be' if args.dry_run else ''} freed; {len(protected)} keys protected (aliased models, live runs)")
    return 0


def add_parsers(sub) -> None:
    cache_p = sub.add_parser("cache", help="stage cache: list or prune")
    cache_sub = cache_p.add_subparsers(dest="cache_command", required=True)
    ls = cache_sub.add_parser("ls", help="entries and sizes")
    where = f"default: ${CACHE_DIR_ENV}, else {DEFAULT_CACHE_DIR}"
    ls.add_argument("--cache-dir", type=Path, help=where)
    ls.set_defaults(func=cmd_cache_ls)
    prune = cache_sub.add_parser("prune", help="remove old entries (never those of aliased models or live runs)")
    prune.add_argument("--cache-dir", type=Path, help=where)
    prune.add_argument("--keep", type=int, help="keep the newest N entries of each stage")
    prune.add_argument("--older-than", type=float, metavar="DAYS", help="remove entries older than DAYS")
    prune.add_argument("--dry-run", action="store_true")
    prune.set_defaults(func=cmd_cache_prune)
