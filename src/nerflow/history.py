"""The history of an alias (`champion`), kept as registered-model tags, and the stack it replays into.

Where it lives: on the registered model itself, one tag per move, key `nerflow.champion.<alias>.<seq:06d>`, value the
JSON of one `Entry`. Everyone on the same tracking server sees it, and it survives any run or version being deleted.
MLflow caps a tag value at 5,000 characters, so the history cannot be one growing value; one entry per key keeps each
value small (the reason is truncated, `encode` refuses anything near the cap) and the number of entries unbounded.

Why no entry is lost, under the caller's lock (a file lock on a local store, a Prefect global concurrency limit on
a team server): the writer takes the lock, re-reads the model's tags, takes `next_seq` from what it read, and sets
ONE NEW key. Setting a tag is an upsert of that key only; it never rewrites another writer's entry, so appending
cannot clobber history. Holding the lock from the re-read to the write is what makes the seq unique.

Without the lock two writers can read the same tags, pick the same seq and set the same key: the later write
silently overwrites the earlier entry (MLflow has no compare-and-set). That is why the lock is required, not an
optimisation. The key format also sorts by seq, so a reader needs no index.

The stack: promote / approve / force / external push the new version, rollback pops. The top of the replayed stack
is where the alias should point; when it does not, the alias was moved outside nerflow (the MLflow UI) and the caller
records an "external" entry first, so the history names the real predecessor of its own move.

Crash consistency: a move writes its entry FIRST, as "intended", then moves the alias, then rewrites the same key
as "done". A process killed anywhere in between leaves an intended entry that the next reader settles with the
alias it finds (`settle`): the alias is where the entry says, so the move happened ("done"); it is not, so it never
did ("abandoned", kept as evidence, never replayed). Only done entries replay into the stack, so a kill can neither
leave a move unrecorded (which would read as an "external" move by "unknown") nor record one that did not happen.

A tag that is not a readable entry (anyone can add tags in the MLflow UI) is skipped with a warning: one bad tag
must not block every promotion of the model.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

# approve: a person moved the alias to a version the gate had accepted in approval mode (`nerflow approve`)
ACTIONS = ("promote", "force", "rollback", "external", "approve")
INTENDED, DONE, ABANDONED = "intended", "done", "abandoned"
STATES = (INTENDED, DONE, ABANDONED)
UNREADABLE = "unreadable"   # a placeholder for a tag that does not decode: holds its seq, never replayed
log = logging.getLogger("nerflow.history")
PREFIX = "nerflow.champion"
MAX_VALUE = 5000  # MLflow's cap on a registered-model tag value (characters)
MAX_REASON = 500  # keeps an entry far below MAX_VALUE whatever the user typed
_MAX_FIELD = 200  # actor, versions, evidence strings: ids and hashes are short; anything longer is a mistake


@dataclass(frozen=True)
class Evidence:
    challenger_f1: float | None = None
    champion_f1: float | None = None
    test_data_hash: str | None = None
    mlflow_run_id: str | None = None
    prefect_flow_run_id: str | None = None


@dataclass(frozen=True)
class Entry:
    seq: int
    time: str  # ISO 8601, UTC
    action: str  # one of ACTIONS
    actor: str
    from_version: str | None  # what the alias pointed at before (None: no alias yet)
    to_version: str | None  # what it points at after (None: an external move deleted the alias)
    reason: str
    evidence: Evidence = field(default_factory=Evidence)
    state: str = DONE   # intended -> done | abandoned (see the module docstring); entries before states are done


def entry_tag(alias: str, seq: int) -> str:
    """`nerflow.champion.champion.000003`: zero-padded so keys sort in seq order."""
    return f"{PREFIX}.{alias}.{seq:06d}"


def _clip(value: str | None, limit: int) -> str | None:
    return value if value is None or len(value) <= limit else value[: limit - 1] + "…"


def new_entry(entries: list[Entry], action: str, actor: str, from_version: str | None, to_version: str | None,
              reason: str, evidence: Evidence = Evidence(), now: datetime | None = None, state: str = DONE) -> Entry:
    """The next entry after `entries` (re-read under the lock), with seq and time filled in."""
    if action not in ACTIONS:
        raise ValueError(f"unknown history action {action!r}; expected one of {', '.join(ACTIONS)}")
    if state not in STATES:
        raise ValueError(f"unknown history entry state {state!r}; expected one of {', '.join(STATES)}")
    when = (now or datetime.now(UTC)).astimezone(UTC)
    return Entry(next_seq(entries), when.isoformat(timespec="seconds"), action, actor,
                 from_version, to_version, reason, evidence, state)


def encode(entry: Entry) -> str:
    """Compact JSON for one tag value; long free text is truncated so the value stays far below MLflow's cap."""
    if entry.action not in ACTIONS:
        raise ValueError(f"unknown history action {entry.action!r}")
    ev = {k: (_clip(v, _MAX_FIELD) if isinstance(v, str) else v) for k, v in asdict(entry.evidence).items()}
    data = {"seq": entry.seq, "time": entry.time, "action": entry.action, "actor": _clip(entry.actor, _MAX_FIELD),
            "from_version": _clip(entry.from_version, _MAX_FIELD), "to_version": _clip(entry.to_version, _MAX_FIELD),
            "reason": _clip(entry.reason, MAX_REASON), "evidence": ev, "state": entry.state}
    # ensure_ascii=False: MLflow counts characters, and \uXXXX escapes would make a non-Latin reason 6x longer.
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if len(text) >= MAX_VALUE:  # a real check, not assert: it must hold under python -O too
        raise ValueError(f"history entry {entry.seq} encodes to {len(text)} characters (limit {MAX_VALUE})")
    return text


def _decode(key: str, seq: int, value: str) -> Entry:
    try:
        data = json.loads(value)
        ev = Evidence(**{k: data.get("evidence", {}).get(k) for k in Evidence.__dataclass_fields__})
        entry = Entry(int(data["seq"]), str(data["time"]), str(data["action"]), str(data["actor"]),
                      data.get("from_version"), data.get("to_version"), str(data.get("reason", "")), ev,
                      str(data.get("state", DONE)))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"registry tag {key}: not a nerflow history entry ({e})") from None
    # The key is what makes an entry unique; a value that disagrees was edited by hand, so do not guess.
    if entry.seq != seq or entry.action not in ACTIONS or entry.state not in STATES:
        raise ValueError(f"registry tag {key}: seq {entry.seq} / action {entry.action!r} / state {entry.state!r} "
                         "do not fit the key")
    return entry


def decode_all(tags: dict[str, str], alias: str) -> list[Entry]:
    """The alias's entries, sorted by seq. Tags of other aliases and unrelated tags are ignored; a tag in this
    alias's namespace that is not a readable entry (malformed, hand-edited, foreign) is skipped with a warning that
    names it, never fatal: anyone can add a tag in the MLflow UI. One with an entry's key stays in the list as an
    UNREADABLE placeholder, so that its seq is not reused; nothing replays it."""
    namespace = f"{PREFIX}.{alias}."
    pattern = re.compile(rf"{re.escape(namespace)}(\d{{6,}})")
    found = []
    for key in tags:
        if (m := pattern.fullmatch(key)) is not None:
            found.append((int(m.group(1)), key))
        elif key.startswith(namespace):
            log.warning("registry tag %s is not a nerflow history entry (its key has no 6-digit seq): skipped", key)
    entries = []
    for seq, key in sorted(found):
        try:
            entries.append(_decode(key, seq, tags[key]))
        except ValueError as e:
            log.warning("%s: skipped", e)
            # kept as a placeholder so its seq is never written over (it may be a newer nerflow's entry)
            entries.append(Entry(seq, "", "?", "?", None, None, str(e), state=UNREADABLE))
    return entries


def next_seq(entries: list[Entry]) -> int:
    """One past the highest seq (1 for an empty history); gaps from deleted tags are never reused. (A skipped,
    unreadable tag's seq can be reused: its key is then overwritten by a readable entry, which is the repair.)"""
    return max((e.seq for e in entries), default=0) + 1


def settle(entries: list[Entry], alias_version: str | None) -> list[Entry]:
    """Each intended entry decided by where the alias is now: the newest entry, intended, whose `to_version` is
    the alias's version moved it (done); any other intended entry never moved it (abandoned: a writer settles
    the previous move under the lock before it writes its own, so only the newest can still be in flight). The
    caller holds the promotion lock and writes back the entries that changed."""
    newest = max((e.seq for e in entries if e.state != UNREADABLE), default=None)
    out = []
    for e in entries:
        if e.state == INTENDED:
            moved = e.seq == newest and e.to_version == alias_version
            e = replace(e, state=DONE if moved else ABANDONED)
        out.append(e)
    return out


def _done(entries: list[Entry]) -> list[Entry]:
    """The moves that happened, in seq order. An intended entry counts only once `settle` has made it done."""
    return sorted((e for e in entries if e.state == DONE), key=lambda e: e.seq)


def stack(entries: list[Entry]) -> list[str]:
    """Replay entries into the stack of champion versions, oldest first, current champion last.

    Pushing the version already on top changes nothing, so re-promoting the champion does not make a later
    rollback land on the same version. After a rollback the top is forced to the entry's `to_version`, so the top
    always equals where the alias was set, even if older entries were deleted by hand. An external deletion of
    the alias (to_version None) empties the stack: there is no champion to go back from.
    """
    out: list[str] = []
    for e in _done(entries):
        if e.to_version is None:
            out.clear()
        elif e.action == "rollback":
            if out:
                out.pop()
            if not out or out[-1] != e.to_version:
                out.append(e.to_version)
        elif not out or out[-1] != e.to_version:
            out.append(e.to_version)
    return out


def rollback_target(entries: list[Entry]) -> tuple[str, str] | None:
    """(current champion, the version before it), or None when there is nothing before it to go back to.

    The caller first records an external move if `external_move` says so, so "current" is where the alias is.
    """
    s = stack(entries)
    return (s[-1], s[-2]) if len(s) >= 2 else None


def rolled_back_versions(entries: list[Entry]) -> set[str]:
    """Versions a rollback left and no one has put back since (a person can, with a forced or UI move)."""
    out: set[str] = set()
    for e in _done(entries):
        if e.action == "rollback" and e.from_version is not None:
            out.add(e.from_version)
        elif e.action in ("force", "external", "approve") and e.to_version is not None:
            out.discard(e.to_version)
    return out


def external_move(entries: list[Entry], current_alias_version: str | None) -> bool:
    """True when the alias points somewhere the history's top does not: it was moved (or set, or deleted)
    outside nerflow, and the caller must record an "external" entry before its own."""
    s = stack(entries)
    return (s[-1] if s else None) != current_alias_version
