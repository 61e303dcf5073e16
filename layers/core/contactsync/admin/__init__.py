"""The admin services: what the admin API asks of a connection, one module per question.

- ``access``: the tenant rule (who may act on which connection, user, company);
- ``errors``: what goes wrong, as plain exceptions the handler maps to HTTP once;
- ``context``: what every service works with (wiring, queue, the connection's two sides);
- ``sign_in``, ``connections``, ``choices``, ``change_feeds``, ``erasure``: the lifecycle;
- ``preview``, ``explain``, ``duplicates``, ``undo``, ``held``, ``health``: the support questions.

They orchestrate engine, providers and store; they own no storage format and no HTTP.
"""
