-- AlterTable
ALTER TABLE "package_event" ADD COLUMN     "seal_seq" BIGINT;

-- CreateIndex
CREATE UNIQUE INDEX "package_event_seal_seq_key" ON "package_event"("seal_seq");

-- CreateIndex
CREATE INDEX "package_event_seal_seq_id_idx" ON "package_event"("seal_seq", "id");
