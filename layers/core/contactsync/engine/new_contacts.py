"""Planning contacts no mapping holds yet: links of matched pairs, copies to the other side,
contacts made again where another sync already made them, and copies held because the other
side has the contact linked already or out of scope."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from contactsync.contacts.model import Contact
from contactsync.engine.matching import MATCH_KEYS, DuplicateCandidate, Match, email_keys
from contactsync.engine.merge import Side, SyncSettings
from contactsync.engine.plan import SIDE_NAMES, Outcome, PairInput, PassInput, Write, other_side
from contactsync.engine.updates import merged_outcome
from contactsync.providers.base import RemoteContact


def link_match(match: Match, settings: SyncSettings, mapping_id: str) -> Outcome:
    """Two unmapped contacts found to be one person: merge them over an empty base."""
    reason = f"matched by {match.key}"
    return merged_outcome(
        mapping_id, Contact(), match.crm, match.provider, settings, kind="link", reason=reason
    )


def copy_new(
    source: Side, remote: RemoteContact, settings: SyncSettings, new_mapping_id: Callable[[], str]
) -> Outcome:
    """A contact new on ``source`` with no match: create it on the other side."""
    target: Side = "provider" if source == "crm" else "crm"
    base = remote.contact.only(settings.carried(source))
    write = Write(target, "create", "", "", Contact(), base.only(settings.carried(target)))
    return Outcome(
        mapping_id=new_mapping_id(),
        crm_id=remote.id if source == "crm" else "",
        provider_id=remote.id if source == "provider" else "",
        new_base=base,
        writes=(write,),
        kind="create",
        reason=f"new in {SIDE_NAMES[source]}",
    )


def made_again_elsewhere(
    pairs: Sequence[PairInput],
    outcomes: list[Outcome],
    unmapped: dict[Side, list[RemoteContact]],
    settings: SyncSettings,
) -> None:
    """A contact deleted on one side but edited on the other is made again where it was deleted
    (the edit wins). Another connection over the same CRM may have made it again already: then
    it is here, new and unmapped, with the same email, and is linked instead of made a second
    time. Changes ``outcomes`` and ``unmapped`` in place."""
    for i, (pair, outcome) in enumerate(zip(pairs, outcomes, strict=True)):
        if outcome.kind != "merge" or [w.kind for w in outcome.writes] != ["create"]:
            continue
        gone = outcome.writes[0].side
        survivor = pair.provider if gone == "crm" else pair.crm
        if not isinstance(survivor, RemoteContact):
            continue
        emails = email_keys(survivor.contact)
        twins = [r for r in unmapped[gone] if r.in_scope and emails & email_keys(r.contact)]
        if len(twins) != 1:
            continue  # none, or not clear which: made again as planned
        twin = twins[0]
        unmapped[gone].remove(twin)
        crm, provider = (twin, survivor) if gone == "crm" else (survivor, twin)
        merged = merged_outcome(
            pair.mapping.mapping_id, pair.mapping.base, crm, provider, settings, kind="merge"
        )
        reason = f"{outcome.reason.split(', recreated')[0]}; made again in {SIDE_NAMES[gone]} "
        reason += "meanwhile (by another sync): linked to it"
        outcomes[i] = replace(merged, kind="merge", reason=reason)  # saved: the pair moves


KeyIndex = list[dict[str, list[RemoteContact]]]  # per MATCH_KEYS function: key -> holders


def key_index(contacts: Sequence[RemoteContact], region: str) -> KeyIndex:
    index: KeyIndex = [{} for _ in MATCH_KEYS]
    for remote in contacts:
        for by_key, keys_of in zip(index, MATCH_KEYS, strict=True):
            for key in keys_of(remote.contact, region):
                by_key.setdefault(key, []).append(remote)
    return index


def taken_elsewhere(
    remote: RemoteContact, source: Side, blockers: KeyIndex, inp: PassInput
) -> DuplicateCandidate | None:
    """A contact about to be copied that shares a match key with a contact the look-up found on
    the other side which cannot be linked to it (linked already, or out of scope): held."""
    region = inp.settings.phone_region
    target = other_side(source)
    for by_key, keys_of in zip(blockers, MATCH_KEYS, strict=True):
        shared = sorted(k for k in keys_of(remote.contact, region) if k in by_key)
        if not shared:
            continue
        key = shared[0]
        hits = list({b.id: b for k in shared for b in by_key[k]}.values())
        why = [
            "linked to another contact already"
            if (target, b.id) in inp.found_linked
            else (b.scope_reason or "out of scope")
            for b in hits
        ]
        reason = f"exists in {SIDE_NAMES[target]}, {'; '.join(dict.fromkeys(why))} ({key})"
        ids = {source: (remote.id,), target: tuple(b.id for b in hits)}
        return DuplicateCandidate(ids["crm"], ids["provider"], key, reason)
    return None
