-- +goose Up
-- At most one image job processing per user: the job holding the slot.
ALTER TABLE users ADD COLUMN processing_image_job_id TEXT;
ALTER TABLE image_jobs ADD COLUMN seed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE image_jobs ADD COLUMN backend TEXT NOT NULL DEFAULT '';
ALTER TABLE image_jobs ADD COLUMN error_code TEXT NOT NULL DEFAULT '';
-- The instance processing a job renews its lease; when it dies, another
-- instance re-queues the job, which then follows its recorded upstream job.
ALTER TABLE image_jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE image_jobs ADD COLUMN lease_expires_at BIGINT;
CREATE INDEX image_jobs_user_status ON image_jobs (user_id, status);

-- +goose Down
DROP INDEX image_jobs_user_status;
ALTER TABLE image_jobs DROP COLUMN lease_expires_at;
ALTER TABLE image_jobs DROP COLUMN lease_owner;
ALTER TABLE image_jobs DROP COLUMN error_code;
ALTER TABLE image_jobs DROP COLUMN backend;
ALTER TABLE image_jobs DROP COLUMN seed;
ALTER TABLE users DROP COLUMN processing_image_job_id;
