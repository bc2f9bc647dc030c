-- +goose Up
-- The user's one processing image job moves from a column of users (the
-- accounts package's table) to a table of its own, owned by images: a row
-- names the job that holds the user's slot; no row, the slot is free.
CREATE TABLE image_slots (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    job_id  TEXT NOT NULL
);
INSERT INTO image_slots (user_id, job_id)
    SELECT id, processing_image_job_id FROM users WHERE processing_image_job_id IS NOT NULL;
-- users.processing_image_job_id stays, unused by this release: instances of
-- the previous release, still running while a rolling upgrade migrates the
-- shared database, go on writing it instead of failing. A later migration
-- drops it.

-- +goose Down
UPDATE users SET processing_image_job_id = (SELECT job_id FROM image_slots WHERE image_slots.user_id = users.id);
DROP TABLE image_slots;
