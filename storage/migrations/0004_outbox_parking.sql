-- 0004_outbox_parking: revises 0001_init's outbox and 0002_guilds' guild_policy.
--   outbox        0001 kept no time for the next try, so the bot retried a refused event on every
--                 pass and dropped it after 8 tries (about 8 s of Discord errors lost a result).
--                 Now each failure sets a backoff (exponential, full jitter) and, after
--                 [storage.outbox] park_after tries, parks the event: it stays pending and is
--                 retried at the slowest cadence until Discord takes it. Nothing is dropped.
--   guild_policy  0002 left /mod to Discord's default permission (Manage Server), which a server's
--                 Integrations settings can open to everyone; the bot now checks on its side, and a
--                 guild may name a moderator role whose members count as moderators too.

ALTER TABLE outbox ADD COLUMN next_attempt_at REAL NOT NULL DEFAULT 0;  -- not tried again before this time
ALTER TABLE outbox ADD COLUMN parked_at REAL;                           -- set once it failed park_after times

-- due events, earliest first; and per job the undelivered ones, so a later event never passes a waiting one
CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE delivered_at IS NULL;
CREATE INDEX outbox_job_undelivered ON outbox (job_id, id) WHERE delivered_at IS NULL;

ALTER TABLE guild_policy ADD COLUMN moderator_role_id INTEGER;  -- NULL: only members with Manage Server moderate
