-- DropIndex
DROP INDEX "package_status_heartbeat_at_idx";

-- DropIndex
DROP INDEX "package_event_actor_idx";

-- DropIndex
DROP INDEX "package_event_at_idx";

-- DropIndex
DROP INDEX "package_event_seal_seq_id_idx";

-- DropIndex
DROP INDEX "package_event_seal_seq_key";

-- CreateIndex
CREATE INDEX "package_leased_heartbeat_idx" ON "package"("status", "heartbeat_at") WHERE (heartbeat_at IS NOT NULL);

-- CreateIndex
CREATE INDEX "package_event_at_idx" ON "package_event" USING BRIN ("at");

-- CreateIndex
CREATE INDEX "package_event_unsealed_idx" ON "package_event"("id") WHERE (seal_seq IS NULL);

-- CreateIndex
CREATE UNIQUE INDEX "package_event_seal_seq_key" ON "package_event"("seal_seq") WHERE (seal_seq IS NOT NULL);
