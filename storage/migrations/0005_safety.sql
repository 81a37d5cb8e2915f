-- 0005_safety: revises 0002_guilds' guild_policy and 0001_init's usage, which knew nothing of an image
-- safety checker (issue 16: the bot posted every generated image and sample grid unchecked). Why:
--   guild_policy.nsfw  what a guild does with images the safety checker flagged: 'block' (never posted,
--                      the default) or 'spoiler-in-age-restricted' (posted as spoilers, and only in
--                      channels Discord marks age-restricted; withheld everywhere else)
--   usage.flagged      images (or sample-grid tiles) the checker flagged, per job attempt or grid
--   usage.withheld     of those, the ones nobody was shown: dropped by the worker, greyed out in a grid,
--                      or held back by the bot at delivery; /mod usage sums both per user and subject
--   usage.event_id     the outbox event whose delivery held images back: the bot records that once per
--                      event, so a delivery tried again after a Discord error doesn't count them twice

ALTER TABLE guild_policy ADD COLUMN nsfw TEXT NOT NULL DEFAULT 'block'
    CHECK (nsfw IN ('block', 'spoiler-in-age-restricted'));

ALTER TABLE usage ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN withheld INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN event_id INTEGER;
CREATE UNIQUE INDEX usage_event ON usage (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX usage_subject ON usage (subject_id);
