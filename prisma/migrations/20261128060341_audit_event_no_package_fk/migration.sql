-- The audit trail is append-only and keyed by package id without a foreign key: events must outlive
-- package rows (a cascading delete would cut the hash chain), and the key's per-row check trigger was
-- ~45% of the cost of writing an event. Every event is written by the statement that moves its package.
-- DropForeignKey
ALTER TABLE "package_event" DROP CONSTRAINT "package_event_package_id_fkey";
