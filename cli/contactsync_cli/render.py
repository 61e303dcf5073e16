"""Turning the API's JSON into text people read: aligned tables, times, a progress bar.

Everything here is pure (give it ``now`` for repeatable output). The connection view is read
tolerantly: a field the API does not send yet shows as "-", and any answer whose shape we do not
know is still shown, generically, as key/value lines and tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

NONE = "-"
BAR_WIDTH = 30
ERROR_WIDTH = 60
NO_CONNECTIONS = "No connections yet. Add one with: contactsync connect microsoft"


# --- tables -------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns aligned on the widest cell, two spaces apart, no trailing blanks."""
    body = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in body]) for i, h in enumerate(headers)]
    lines = [list(headers), *body]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


# --- times --------------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def duration(seconds: float) -> str:
    """3s, 4m 10s, 2h 5m, 3d 4h: the two largest units are enough to act on."""
    seconds = max(0, round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def ago(value: Any, now: datetime) -> str:
    moment = parse_time(value)
    if moment is None:
        return NONE
    seconds = (now - moment).total_seconds()
    return "just now" if seconds < 1 else f"{duration(seconds)} ago"


def until(value: Any, now: datetime) -> str:
    moment = parse_time(value)
    if moment is None:
        return NONE
    seconds = (moment - now).total_seconds()
    return f"in {duration(seconds)}" if seconds >= 0 else f"expired {duration(-seconds)} ago"


# --- reading a connection view ------------------------------------------------------------------


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _progress(view: dict[str, Any]) -> dict[str, Any]:
    return _mapping(view.get("progress"))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def eta_seconds(view: dict[str, Any], now: datetime) -> float | None:
    """The API's ETA if it sends one, else the pace so far projected over what is left."""
    progress = _progress(view)
    for given in (progress.get("eta_seconds"), view.get("eta_seconds")):
        if _number(given) is not None:
            return _number(given)
    for at in (progress.get("eta_at"), progress.get("eta"), view.get("eta_at")):
        moment = parse_time(at)
        if moment is not None:
            return max(0.0, (moment - now).total_seconds())
    done, total = _number(progress.get("done")) or 0, _number(progress.get("total")) or 0
    started = parse_time(progress.get("started_at"))
    if started is None or not 0 < done < total:
        return None
    elapsed = (now - started).total_seconds()
    return elapsed / done * (total - done) if elapsed > 0 else None


def progress_text(view: dict[str, Any]) -> str:
    """``120/300 (40%)``; "-" when nothing is being counted."""
    progress = _progress(view)
    done, total = int(_number(progress.get("done")) or 0), int(_number(progress.get("total")) or 0)
    if not total:
        return f"{done}" if done else NONE
    return f"{done}/{total} ({100 * done // total}%)"


def eta_text(view: dict[str, Any], now: datetime) -> str:
    eta = eta_seconds(view, now)
    return NONE if eta is None else duration(eta)


def cursor_age_seconds(view: dict[str, Any], now: datetime) -> float | None:
    """How long ago the oldest side's change feed was read (the staler side is what matters)."""
    for key in ("cursor_age_seconds", "cursor_age"):
        if _number(view.get(key)) is not None:
            return _number(view.get(key))
    taken = [parse_time(view.get("cursor_taken_at"))]
    cursors = view.get("cursors")
    entries = list(cursors.values()) if isinstance(cursors, dict) else cursors
    ages: list[float] = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict):
            if _number(entry.get("age_seconds")) is not None:
                ages.append(float(entry["age_seconds"]))
            taken.append(parse_time(entry.get("taken_at")))
        else:
            taken.append(parse_time(entry))
    ages += [(now - moment).total_seconds() for moment in taken if moment is not None]
    return max(ages) if ages else None


def subscription_expiry(view: dict[str, Any]) -> str | None:
    """The first change subscription to lapse (if none is renewed, pushes stop then)."""
    candidates: list[Any] = [view.get("subscription_expires_at")]
    subscription = view.get("subscription")
    if isinstance(subscription, dict):
        candidates.append(subscription.get("expires_at"))
    for entry in view.get("subscriptions") or []:
        if isinstance(entry, dict):
            candidates.append(entry.get("expires_at"))
    moments = [(parse_time(c), c) for c in candidates]
    known = sorted((m, c) for m, c in moments if m is not None)
    return str(known[0][1]) if known else None


def folder_text(view: dict[str, Any]) -> str:
    for key in ("folder", "group"):
        place = view.get(key)
        if isinstance(place, dict) and (place.get("name") or place.get("id")):
            return str(place.get("name") or place.get("id"))
        if isinstance(place, str) and place:
            return place
    return NONE


def mapped_text(view: dict[str, Any]) -> str:
    counts = view.get("counts")
    mapped = counts.get("mapped") if isinstance(counts, dict) else None
    return NONE if mapped is None else str(mapped)


def error_text(view: dict[str, Any]) -> str:
    error = view.get("last_error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or NONE)
    return str(error) if error else NONE


# --- connection tables and detail ---------------------------------------------------------------


def render_connections_table(connections: list[dict[str, Any]], now: datetime | None = None) -> str:
    """``contactsync list``: what each connection is set up to do."""
    if not connections:
        return NO_CONNECTIONS
    now = now or datetime.now(UTC)
    headers = (
        "ID",
        "PROVIDER",
        "ACCOUNT",
        "STATE",
        "FOLDER/GROUP",
        "DIRECTION",
        "MAPPED",
        "LAST SUCCESS",
    )
    rows = [
        (
            str(view.get("id", NONE)),
            str(view.get("provider") or NONE),
            str(view.get("account") or NONE),
            str(view.get("state") or NONE),
            folder_text(view),
            str(view.get("direction") or NONE),
            mapped_text(view),
            ago(view.get("last_success_at"), now),
        )
        for view in connections
    ]
    return table(headers, rows)


def render_status_table(connections: list[dict[str, Any]], now: datetime | None = None) -> str:
    """``contactsync status``: how each connection is doing right now (one row each)."""
    if not connections:
        return NO_CONNECTIONS
    now = now or datetime.now(UTC)
    headers = (
        "ID",
        "PROVIDER",
        "STATE",
        "PHASE",
        "PROGRESS",
        "ETA",
        "LAST SUCCESS",
        "CURSOR AGE",
        "SUBSCRIPTION",
        "MAPPED",
        "LAST ERROR",
    )
    rows = []
    for view in connections:
        age = cursor_age_seconds(view, now)
        rows.append(
            (
                str(view.get("id", NONE)),
                str(view.get("provider") or NONE),
                str(view.get("state") or NONE),
                str(_progress(view).get("phase") or NONE),
                progress_text(view),
                eta_text(view, now),
                ago(view.get("last_success_at"), now),
                NONE if age is None else duration(age),
                until(subscription_expiry(view), now),
                mapped_text(view),
                shorten(error_text(view), ERROR_WIDTH),
            )
        )
    return table(headers, rows)


NEXT_STEP = {
    "configuring": "choose a folder or group, then start: contactsync settings {id} --folder NAME",
    "needs_reauth": "the provider sign-in expired; sign in again: contactsync reconnect {id}",
    "needs_attention": "a pass is held back; review it, then: contactsync confirm {id} "
    "(or contactsync discard {id})",
    "stopped": "start it again with: contactsync start {id}",
    "paused": "start it again with: contactsync start {id}",
}


def render_connection(view: dict[str, Any], now: datetime | None = None) -> str:
    """``contactsync status ID``: one connection, every detail on its own line."""
    now = now or datetime.now(UTC)
    cid = str(view.get("id", NONE))
    progress = progress_text(view)
    eta = eta_seconds(view, now)
    if eta is not None:
        progress += f", about {duration(eta)} left"
    error = view.get("last_error")
    error_line = error_text(view)
    if isinstance(error, dict) and error.get("at"):
        error_line += f" ({ago(error.get('at'), now)})"
    age = cursor_age_seconds(view, now)
    expiry = subscription_expiry(view)
    counts = _mapping(view.get("counts"))
    lines = [
        ("connection", cid),
        ("provider", f"{view.get('provider') or NONE} ({view.get('account') or 'not signed in'})"),
        ("state", str(view.get("state") or NONE)),
        ("folder/group", folder_text(view)),
        ("direction", str(view.get("direction") or NONE)),
        ("conflict policy", str(view.get("conflict_policy") or NONE)),
        ("phone region", str(view.get("phone_region") or NONE)),
        ("phase", str(_progress(view).get("phase") or NONE)),
        ("progress", progress),
        ("last success", _when(view.get("last_success_at"), now)),
        ("last error", error_line if error_line != NONE else "none"),
        ("cursor age", NONE if age is None else duration(age)),
        ("subscription", NONE if expiry is None else f"expires {until(expiry, now)}"),
        ("counts", ", ".join(f"{k} {v}" for k, v in counts.items()) or NONE),
    ]
    held = view.get("held")
    if held:
        lines.append(("held pass", _held_text(held)))
    hint = NEXT_STEP.get(str(view.get("state")))
    if hint:
        lines.append(("next step", hint.format(id=cid)))
    width = max(len(label) for label, _ in lines)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in lines)


def render_settings(view: dict[str, Any]) -> str:
    """What ``contactsync settings`` changed, as the API now holds it."""
    lines = [
        ("connection", str(view.get("id", NONE))),
        ("state", str(view.get("state") or NONE)),
        ("folder/group", folder_text(view)),
        ("direction", str(view.get("direction") or NONE)),
        ("conflict policy", str(view.get("conflict_policy") or NONE)),
        ("phone region", str(view.get("phone_region") or NONE)),
    ]
    width = max(len(label) for label, _ in lines)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in lines)


def _when(value: Any, now: datetime) -> str:
    moment = parse_time(value)
    if moment is None:
        return "never"
    return f"{moment.strftime('%Y-%m-%d %H:%M:%S %Z')} ({ago(value, now)})"


def _held_text(held: Any) -> str:
    if isinstance(held, dict):
        message = held.get("message") or held.get("reason")
        if message:
            return str(message)
        return ", ".join(f"{k} {v}" for k, v in held.items() if _is_flat(v))
    return str(held)


def progress_line(
    view: dict[str, Any], now: datetime | None = None, *, eta: float | None = None
) -> str:
    """One line for ``status --watch``: ``syncing_initial [#####.....] 120/300 (40%) ETA 35s``.

    ``eta``: the watcher's own estimate, used when the view brings none.
    """
    now = now or datetime.now(UTC)
    progress = _progress(view)
    done, total = int(_number(progress.get("done")) or 0), int(_number(progress.get("total")) or 0)
    filled = min(BAR_WIDTH, BAR_WIDTH * done // total) if total else 0
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    line = f"{view.get('state') or NONE}  [{bar}]  {progress_text(view)}"
    given = eta_seconds(view, now)
    eta = given if given is not None else eta
    if eta is not None:
        line += f"  ETA {duration(eta)}"
    if progress.get("phase"):
        line += f"  ({progress['phase']})"
    return line


# --- anything else ------------------------------------------------------------------------------


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _is_flat(value: Any) -> bool:
    """One cell's worth: a scalar, a list of scalars, or an empty map."""
    if isinstance(value, list):
        return all(_is_scalar(item) for item in value)
    if isinstance(value, dict):
        return not value
    return _is_scalar(value)


def cell(value: Any) -> str:
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(cell(item) for item in value) or "none"
    if isinstance(value, dict):
        return "none"
    return str(value)


def label(key: Any) -> str:
    return str(key).replace("_", " ")


def records_table(records: list[dict[str, Any]], indent: str = "") -> list[str]:
    """Flat records as a table; columns in the order the keys first appear."""
    columns: list[str] = []
    for record in records:
        columns += [key for key in record if key not in columns]
    headers = [label(c).upper() for c in columns]
    rows = [[cell(record.get(c)) for c in columns] for record in records]
    return [indent + line for line in table(headers, rows).splitlines()]


def render_data(value: Any) -> str:
    """Any JSON answer as readable text: aligned ``key  value`` lines, tables for flat records."""
    return "\n".join(_lines(value, ""))


def _lines(value: Any, indent: str) -> Iterator[str]:
    if isinstance(value, dict):
        yield from _dict_lines(value, indent)
    elif isinstance(value, list):
        yield from _list_lines(value, indent)
    else:
        yield indent + cell(value)


def _dict_lines(value: dict[str, Any], indent: str) -> Iterator[str]:
    if not value:
        yield indent + "none"
        return
    records = list(value.values())
    if len(value) > 1 and all(
        isinstance(r, dict) and r and all(_is_flat(v) for v in r.values()) for r in records
    ):
        # One record per name (per provider, per side): a table reads better than sections.
        yield from records_table([{"name": k, **r} for k, r in value.items()], indent)
        return
    width = max([len(label(k)) for k, item in value.items() if _is_flat(item)] or [0])
    for key, item in value.items():
        if _is_flat(item):
            yield f"{indent}{label(key).ljust(width)}  {cell(item)}".rstrip()
        else:
            yield f"{indent}{label(key)}:"
            yield from _lines(item, indent + "  ")


def _list_lines(value: list[Any], indent: str) -> Iterator[str]:
    if not value:
        yield indent + "none"
    elif all(isinstance(i, dict) and i and all(_is_flat(v) for v in i.values()) for i in value):
        yield from records_table(value, indent)
    else:
        for item in value:
            block = list(_lines(item, indent + "  "))
            yield indent + "- " + block[0][len(indent) + 2 :]
            yield from block[1:]


# --- activity -----------------------------------------------------------------------------------


def change_text(entry: dict[str, Any]) -> str:
    """``title: CEO -> CTO; phone: - -> +1 415...``: what a write changed, or lost in a conflict."""
    before, after = _mapping(entry.get("before")), _mapping(entry.get("after"))
    fields = [
        k
        for k in {**before, **after}
        if before.get(k) != after.get(k) and not (_blank(before.get(k)) and _blank(after.get(k)))
    ]
    if not before and fields:
        return "new: " + ", ".join(f"{f} {_compact(after[f])}" for f in fields)
    return "; ".join(f"{f}: {_compact(before.get(f))} -> {_compact(after.get(f))}" for f in fields)


def _blank(value: Any) -> bool:
    return value is None or value in ("", [], {})


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_compact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_compact(v) for v in value) + "]"
    return cell(value)


def render_activity(entries: list[dict[str, Any]], now: datetime | None = None) -> str:
    """``contactsync activity``: newest first, one line per entry, changes summarised."""
    if not entries:
        return "No activity recorded."
    now = now or datetime.now(UTC)
    headers = ("ENTRY", "WHEN", "KIND", "SIDE", "CRM", "PROVIDER", "UNDO", "MESSAGE", "CHANGE")
    rows = [
        (
            str(entry.get("id") or entry.get("entry_id") or NONE),
            ago(entry.get("at"), now),
            str(entry.get("kind") or NONE),
            str(entry.get("side") or NONE),
            str(entry.get("crm_id") or NONE),
            shorten(str(entry.get("provider_id") or NONE), 24),
            "yes" if entry.get("undoable") else "",
            shorten(str(entry.get("message") or NONE), ERROR_WIDTH),
            shorten(change_text(entry), ERROR_WIDTH) or NONE,
        )
        for entry in entries
    ]
    return table(headers, rows)


# --- explain ------------------------------------------------------------------------------------


def render_explanation(answer: Any, now: datetime | None = None) -> str:
    """``contactsync explain``: the verdict and its reasons first, the evidence, its history."""
    if not isinstance(answer, dict) or "syncing" not in answer:
        return render_data(answer)
    lines = [f"syncing  {cell(bool(answer['syncing']))}"]
    reasons = answer.get("reasons") or []
    if reasons:
        lines.append("why:")
        for reason in reasons if isinstance(reasons, list) else [reasons]:
            text = cell(reason) if _is_scalar(reason) else _compact(reason)
            lines.append(f"  - {text}")
    found = answer.get("history")
    history = found if isinstance(found, list) and all(isinstance(e, dict) for e in found) else None
    shown_apart = (
        ("syncing", "reasons", "history") if history is not None else ("syncing", "reasons")
    )
    rest = {k: v for k, v in answer.items() if k not in shown_apart}
    if rest:
        lines.append(render_data(rest))
    if history is not None:
        lines.append("history:")
        lines += ["  " + line for line in render_activity(history, now).splitlines()]
    return "\n".join(lines)
