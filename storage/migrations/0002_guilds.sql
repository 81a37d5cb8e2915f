-- 0002_guilds: revises 0001_init, which kept no per-guild moderation and nothing the bot needs
-- to find its own Discord messages again after a restart. Adds, without touching 0001's tables:
--   guild_policy     one row per guild that changed the defaults (review, quotas); NULL = config default
--   guild_bans       users a guild's moderators barred from the bot in that guild
--   prompt_blocklist words a guild refuses in /imagine prompts
--   train_requests   what a /train asked for (preset, channel) while its subject waits for consent or review
--   deliveries       per job: the channel status message the bot edits, and the interaction token
--                    (valid 15 minutes) used to edit the command's own reply; the token is cleared
--                    once the result is delivered or the token has expired.

CREATE TABLE guild_policy (
    guild_id              INTEGER PRIMARY KEY,
    review_required       INTEGER,             -- 0/1; NULL: [bot] review_required
    max_subjects_per_user INTEGER,             -- NULL: no limit
    max_images_per_day    INTEGER,             -- per user, rolling 24 hours; NULL: no limit
    updated_by            INTEGER,
    updated_at            REAL NOT NULL
);

CREATE TABLE guild_bans (
    guild_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    banned_by  INTEGER NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);

CREATE TABLE prompt_blocklist (
    guild_id   INTEGER NOT NULL,
    term       TEXT NOT NULL,                  -- lower-case word or phrase, matched on word boundaries
    added_by   INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (guild_id, term)
);

CREATE TABLE train_requests (
    subject_id INTEGER PRIMARY KEY REFERENCES subjects (id) ON DELETE CASCADE,
    preset     TEXT,                           -- NULL: the trainer's default preset
    channel_id INTEGER,                        -- where progress and grids are posted
    created_at REAL NOT NULL
);

CREATE TABLE deliveries (
    job_id            INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    channel_id        INTEGER,
    status_message_id INTEGER,                 -- the one progress message, edited as the job advances
    application_id    INTEGER,
    interaction_token TEXT,                    -- NULL once used or expired
    token_expires_at  REAL,
    updated_at        REAL NOT NULL
);
