-- 0003_lifecycle: revises 0001_init's subject states and name rules, which storage/lifecycle.py
-- now owns. Why:
--   * A cancelled or revoked training went back to 'draft' (losing 'revoked'); the sweep then
--     tried to delete a "draft" that had consents and stopped on the append-only rule.
--     Subjects now end in their own states, and 'draft' means "no consent yet" only.
--   * States renamed for what they mean: pending_review -> consented (consent recorded, waiting
--     for review or for room in the queue), ready -> trained, rejected -> revoked (a moderator
--     took it away); new: cancelled.
--   * A subject that ended (failed, cancelled, revoked) no longer holds its name or its
--     identifier token: UNIQUE (owner, guild, name) and UNIQUE (owner, token) become partial
--     unique indexes over live subjects, so the name can be trained again.
-- Also adds:
--   photos.size_bytes  what a stored photo costs, for the per-user storage cap
--   rate_limits        the last accepted /train and /imagine per user, so a cooldown is checked
--                      and recorded in the same transaction as the write it limits
-- The table is rebuilt (SQLite cannot change a CHECK); storage.migrate turns foreign keys off
-- around a migration and checks them before it commits.

CREATE TABLE subjects_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: ids name folders on disk
    owner_id    INTEGER NOT NULL,
    guild_id    INTEGER,                       -- NULL for subjects made from the command line
    name        TEXT NOT NULL,                 -- what the owner calls it ("rex")
    token       TEXT NOT NULL,                 -- rare identifier token used in prompts ("sks")
    class_noun  TEXT NOT NULL,                 -- "dog"
    state       TEXT NOT NULL DEFAULT 'draft'
                CHECK (state IN ('draft', 'consented', 'queued', 'training', 'trained',
                                 'failed', 'cancelled', 'revoked')),
    adapter_artifact_id INTEGER,               -- the adapter in use once trained
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);

INSERT INTO subjects_new (id, owner_id, guild_id, name, token, class_noun, state, adapter_artifact_id,
                          created_at, updated_at)
SELECT id, owner_id, guild_id, name, token, class_noun,
       CASE state WHEN 'pending_review' THEN 'consented' WHEN 'ready' THEN 'trained'
                  WHEN 'rejected' THEN 'revoked' ELSE state END,
       adapter_artifact_id, created_at, updated_at
FROM subjects;

DROP TABLE subjects;
ALTER TABLE subjects_new RENAME TO subjects;
CREATE INDEX subjects_guild ON subjects (guild_id, state);
CREATE INDEX subjects_owner ON subjects (owner_id, state);
CREATE UNIQUE INDEX subjects_live_name ON subjects (owner_id, coalesce(guild_id, 0), name)
    WHERE state NOT IN ('failed', 'cancelled', 'revoked');
CREATE UNIQUE INDEX subjects_live_token ON subjects (owner_id, token)
    WHERE state NOT IN ('failed', 'cancelled', 'revoked');

ALTER TABLE photos ADD COLUMN size_bytes INTEGER NOT NULL DEFAULT 0;  -- 0 for photos stored before 0003

CREATE TABLE rate_limits (
    user_id  INTEGER NOT NULL,
    action   TEXT NOT NULL,                    -- train or imagine
    last_at  REAL NOT NULL,                    -- when the last request was accepted
    PRIMARY KEY (user_id, action)
);
