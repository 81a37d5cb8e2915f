-- 0001_init: the first schema. Revises nothing.
-- Subjects and their photos, append-only consents, the job queue with leases,
-- artifacts, the outbox the bot delivers from, the append-only audit log and usage.
-- Times are UNIX seconds (REAL); Discord ids are INTEGER.

CREATE TABLE subjects (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: ids name folders on disk
    owner_id    INTEGER NOT NULL,
    guild_id    INTEGER,                       -- NULL for subjects made from the command line
    name        TEXT NOT NULL,                 -- what the owner calls it ("rex")
    token       TEXT NOT NULL,                 -- rare identifier token used in prompts ("sks")
    class_noun  TEXT NOT NULL,                 -- "dog"
    state       TEXT NOT NULL DEFAULT 'draft'
                CHECK (state IN ('draft', 'pending_review', 'queued', 'training', 'ready',
                                 'failed', 'rejected', 'revoked')),
    adapter_artifact_id INTEGER,               -- the adapter in use once trained
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    UNIQUE (owner_id, guild_id, name),
    UNIQUE (owner_id, token)
);
CREATE INDEX subjects_guild ON subjects (guild_id, state);

CREATE TABLE photos (
    id          INTEGER PRIMARY KEY,
    subject_id  INTEGER NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,              -- order the user gave them in
    sha256      TEXT NOT NULL,                 -- of the cleaned PNG as stored
    path        TEXT NOT NULL,                 -- relative to the data directory
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    findings    TEXT NOT NULL DEFAULT '[]',    -- JSON list of warnings
    created_at  REAL NOT NULL,
    UNIQUE (subject_id, sha256)
);

CREATE TABLE consents (
    id            INTEGER PRIMARY KEY,
    subject_id    INTEGER NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL,
    guild_id      INTEGER,
    text_version  TEXT NOT NULL,
    text_sha256   TEXT NOT NULL,
    text          TEXT NOT NULL,               -- the exact text shown
    scope         TEXT NOT NULL,               -- what was agreed to, e.g. 'train+generate'
    granted_at    REAL NOT NULL,
    revoked_at    REAL,
    revoked_by    INTEGER,
    revoke_reason TEXT
);
CREATE INDEX consents_subject ON consents (subject_id);
CREATE INDEX consents_user ON consents (user_id);

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: ids name folders on disk
    kind             TEXT NOT NULL CHECK (kind IN ('train', 'generate')),
    state            TEXT NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'dead')),
    priority         INTEGER NOT NULL DEFAULT 0,      -- higher runs first
    user_id          INTEGER NOT NULL,
    guild_id         INTEGER,
    channel_id       INTEGER,                         -- where results are posted
    subject_id       INTEGER REFERENCES subjects (id) ON DELETE SET NULL,
    params           TEXT NOT NULL DEFAULT '{}',      -- JSON, resolved at enqueue
    idempotency_key  TEXT UNIQUE,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_after        REAL NOT NULL,                   -- backoff: not claimable before this
    lease_owner      TEXT,
    lease_token      TEXT,
    lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress_step    INTEGER NOT NULL DEFAULT 0,
    progress_total   INTEGER NOT NULL DEFAULT 0,
    progress_message TEXT NOT NULL DEFAULT '',
    result           TEXT,                            -- JSON on success
    error            TEXT,                            -- last error, kept through retries
    created_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    updated_at       REAL NOT NULL
);
CREATE INDEX jobs_claim ON jobs (state, priority DESC, run_after, id);
CREATE INDEX jobs_lease ON jobs (state, lease_expires_at);
CREATE INDEX jobs_user ON jobs (user_id, state);

CREATE TABLE artifacts (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('class_images', 'checkpoint', 'adapter', 'adapter_kohya',
                                              'grid', 'image')),
    job_id      INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    subject_id  INTEGER REFERENCES subjects (id) ON DELETE CASCADE,
    user_id     INTEGER,                       -- NULL for shared artifacts (class-image sets)
    cache_key   TEXT UNIQUE,                   -- for shared, reusable artifacts
    path        TEXT NOT NULL,                 -- relative to the data directory (file or folder)
    sha256      TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    meta        TEXT NOT NULL DEFAULT '{}',
    created_at  REAL NOT NULL
);
CREATE INDEX artifacts_subject ON artifacts (subject_id, kind);
CREATE INDEX artifacts_job ON artifacts (job_id);
CREATE INDEX artifacts_user ON artifacts (user_id);

CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY,
    job_id        INTEGER REFERENCES jobs (id) ON DELETE CASCADE,
    user_id       INTEGER,
    guild_id      INTEGER,
    channel_id    INTEGER,
    kind          TEXT NOT NULL,               -- progress, grid, result, failed, cancelled, ...
    payload       TEXT NOT NULL DEFAULT '{}',  -- JSON; artifact ids, never photo paths
    created_at    REAL NOT NULL,
    delivered_at  REAL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
);
CREATE INDEX outbox_pending ON outbox (delivered_at, id);

CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY,
    at              REAL NOT NULL,
    actor_id        INTEGER,                   -- who did it (NULL: the system)
    action          TEXT NOT NULL,             -- dotted verb: consent.granted, subject.revoked, user.forgotten
    guild_id        INTEGER,
    target_user_id  INTEGER,
    subject_id      INTEGER,                   -- kept as a number: subjects may be deleted
    job_id          INTEGER,
    detail          TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_guild ON audit_log (guild_id, id);
CREATE INDEX audit_target ON audit_log (target_user_id);

CREATE TABLE usage (
    id           INTEGER PRIMARY KEY,
    at           REAL NOT NULL,
    user_id      INTEGER NOT NULL,
    guild_id     INTEGER,
    subject_id   INTEGER,
    job_id       INTEGER,
    kind         TEXT NOT NULL,                -- train or generate
    gpu_seconds  REAL NOT NULL DEFAULT 0,
    images       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX usage_user ON usage (user_id);
CREATE INDEX usage_guild ON usage (guild_id);

-- Append-only rules. A user's rows may be erased only once the erasure tombstone for that
-- user is written in the audit log (storage.privacy.forget_user writes it first).
CREATE TRIGGER consents_no_rewrite BEFORE UPDATE ON consents
WHEN OLD.revoked_at IS NOT NULL
  OR NEW.subject_id IS NOT OLD.subject_id OR NEW.user_id IS NOT OLD.user_id
  OR NEW.text IS NOT OLD.text OR NEW.text_sha256 IS NOT OLD.text_sha256
  OR NEW.text_version IS NOT OLD.text_version OR NEW.scope IS NOT OLD.scope
  OR NEW.granted_at IS NOT OLD.granted_at OR NEW.guild_id IS NOT OLD.guild_id
BEGIN SELECT RAISE(ABORT, 'consents are append-only: only an unrevoked consent may be revoked'); END;

CREATE TRIGGER consents_no_delete BEFORE DELETE ON consents
WHEN NOT EXISTS (SELECT 1 FROM audit_log WHERE action = 'user.forgotten' AND target_user_id = OLD.user_id)
BEGIN SELECT RAISE(ABORT, 'consents are append-only: they are deleted only when their user is forgotten'); END;

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_log
WHEN OLD.action = 'user.forgotten'
  OR NOT EXISTS (SELECT 1 FROM audit_log WHERE action = 'user.forgotten'
                 AND target_user_id IS NOT NULL
                 AND target_user_id IN (OLD.target_user_id, OLD.actor_id))
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: entries go only when their user is forgotten'); END;
