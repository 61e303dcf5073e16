"""One sync pass over one connection: read both sides' changes, plan, save the plan, apply it.

The order is what makes a pass safe to crash at any point (see ARCHITECTURE.md):
lease → finish pending writes → read changes → plan (pure engine) → guard → save pending writes
(cursors last) → apply in chunks within the time budget → release. Work left when the budget runs
out stays pending and the caller queues a continuation.

The modules, by what they do:

- ``run``: the lease around a pass, and how the way it stopped becomes its result (and previews);
- ``sync_pass``: the steps of one pass, in order;
- ``feeds``: reading a side's changes (cursors, full listings, renames, missed deletes);
- ``engine_input``: the engine's input from what was read, and the plan;
- ``look_around``: looking for copies before creating, and claims among a user's connections;
- ``mass_changes``: the settle period and the change window the guard judges;
- ``findings``: possible duplicates and look-alike persons, kept for the support questions;
- ``chunks``: applying pending writes a chunk at a time, cursors last;
- ``sending``: one side's writes, receipts, and finding a create whose answer was lost;
- ``recording``: what a finished write leaves (mapping, base, audit), as a pure function;
- ``hints``: contacts re-read by id; ``status``: what a pass answers and the connection says.
"""

from contactsync.sync.reconcile.context import PassContext, Sides
from contactsync.sync.reconcile.run import preview_pass, run_pass
from contactsync.sync.reconcile.status import PassResult

__all__ = ["PassContext", "PassResult", "Sides", "preview_pass", "run_pass"]
