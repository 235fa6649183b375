-- Claims no longer pay for an index on heartbeat_at (~4 % of the drain rate at batch 100): the rescuer
-- reads the active statuses through (status, next_attempt_at, id), and those hold only the rows in flight.
-- DropIndex
DROP INDEX "package_leased_heartbeat_idx";
