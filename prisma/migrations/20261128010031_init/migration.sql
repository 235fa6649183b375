-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "public";

-- CreateEnum
CREATE TYPE "package_status" AS ENUM ('requested', 'checking_licence', 'licence_checked', 'downloading', 'downloaded', 'scanning', 'pending_approval', 'approved', 'rejected', 'failed');

-- CreateEnum
CREATE TYPE "user_role" AS ENUM ('user', 'approver', 'admin');

-- CreateEnum
CREATE TYPE "licence_verdict" AS ENUM ('allow', 'review', 'deny');

-- CreateTable
CREATE TABLE "user" (
    "id" SERIAL NOT NULL,
    "username" TEXT NOT NULL,
    "password_hash" TEXT NOT NULL,
    "role" "user_role" NOT NULL DEFAULT 'user',
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "user_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "request" (
    "id" SERIAL NOT NULL,
    "uploaded_by_id" INTEGER,
    "uploaded_by_name" TEXT NOT NULL,
    "file_name" TEXT,
    "lockfile_sha256" TEXT NOT NULL,
    "lockfile_version" INTEGER NOT NULL,
    "total" INTEGER NOT NULL,
    "new_count" INTEGER NOT NULL,
    "existing_count" INTEGER NOT NULL,
    "skipped" JSONB NOT NULL DEFAULT '[]',
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "request_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "package" (
    "id" SERIAL NOT NULL,
    "name" TEXT NOT NULL,
    "version" TEXT NOT NULL,
    "status" "package_status" NOT NULL DEFAULT 'requested',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "next_attempt_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "lease_owner" TEXT,
    "lease_token" UUID,
    "heartbeat_at" TIMESTAMPTZ(6),
    "last_error_code" TEXT,
    "last_error_message" TEXT,
    "reason_code" TEXT,
    "reason_message" TEXT,
    "results" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "package_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "request_package" (
    "request_id" INTEGER NOT NULL,
    "package_id" INTEGER NOT NULL,
    "integrity" TEXT,
    "resolved" TEXT,

    CONSTRAINT "request_package_pkey" PRIMARY KEY ("request_id","package_id")
);

-- CreateTable
CREATE TABLE "package_event" (
    "id" BIGSERIAL NOT NULL,
    "package_id" INTEGER NOT NULL,
    "from_status" "package_status",
    "to_status" "package_status" NOT NULL,
    "actor" TEXT NOT NULL,
    "reason" TEXT,
    "details" JSONB,
    "at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "prev_hash" TEXT,
    "hash" TEXT,

    CONSTRAINT "package_event_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "worker" (
    "id" TEXT NOT NULL,
    "hostname" TEXT NOT NULL,
    "pid" INTEGER NOT NULL,
    "started_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_seen_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "info" JSONB NOT NULL DEFAULT '{}',

    CONSTRAINT "worker_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "licence_policy" (
    "licence" TEXT NOT NULL,
    "verdict" "licence_verdict" NOT NULL,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_by" TEXT NOT NULL DEFAULT 'system',

    CONSTRAINT "licence_policy_pkey" PRIMARY KEY ("licence")
);

-- CreateTable
CREATE TABLE "advisory" (
    "id" TEXT NOT NULL,
    "aliases" TEXT[],
    "summary" TEXT,
    "severity" TEXT NOT NULL,
    "cvss_vector" TEXT,
    "cvss_score" DOUBLE PRECISION,
    "malicious" BOOLEAN NOT NULL DEFAULT false,
    "published" TIMESTAMPTZ(6),
    "modified" TIMESTAMPTZ(6),
    "withdrawn" TIMESTAMPTZ(6),
    "data" JSONB NOT NULL,
    "imported_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "advisory_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "advisory_affected" (
    "id" SERIAL NOT NULL,
    "advisory_id" TEXT NOT NULL,
    "package_name" TEXT NOT NULL,
    "ranges" JSONB NOT NULL DEFAULT '[]',
    "versions" TEXT[],

    CONSTRAINT "advisory_affected_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "advisory_import" (
    "id" SERIAL NOT NULL,
    "source" TEXT NOT NULL,
    "count" INTEGER NOT NULL,
    "imported_by" TEXT NOT NULL,
    "imported_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "advisory_import_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "dist_tag_pin" (
    "name" TEXT NOT NULL,
    "tag" TEXT NOT NULL,
    "version" TEXT NOT NULL,
    "pinned_by" TEXT NOT NULL,
    "at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "dist_tag_pin_pkey" PRIMARY KEY ("name","tag")
);

-- CreateIndex
CREATE UNIQUE INDEX "user_username_key" ON "user"("username");

-- CreateIndex
CREATE INDEX "request_created_at_idx" ON "request"("created_at");

-- CreateIndex
CREATE INDEX "request_lockfile_sha256_idx" ON "request"("lockfile_sha256");

-- CreateIndex
CREATE INDEX "package_status_next_attempt_at_id_idx" ON "package"("status", "next_attempt_at", "id");

-- CreateIndex
CREATE INDEX "package_status_heartbeat_at_idx" ON "package"("status", "heartbeat_at");

-- CreateIndex
CREATE UNIQUE INDEX "package_name_version_key" ON "package"("name", "version");

-- CreateIndex
CREATE INDEX "request_package_package_id_idx" ON "request_package"("package_id");

-- CreateIndex
CREATE INDEX "package_event_package_id_id_idx" ON "package_event"("package_id", "id");

-- CreateIndex
CREATE INDEX "package_event_at_idx" ON "package_event"("at");

-- CreateIndex
CREATE INDEX "package_event_actor_idx" ON "package_event"("actor");

-- CreateIndex
CREATE INDEX "worker_last_seen_at_idx" ON "worker"("last_seen_at");

-- CreateIndex
CREATE INDEX "advisory_affected_package_name_idx" ON "advisory_affected"("package_name");

-- CreateIndex
CREATE INDEX "advisory_affected_advisory_id_idx" ON "advisory_affected"("advisory_id");

-- AddForeignKey
ALTER TABLE "request" ADD CONSTRAINT "request_uploaded_by_id_fkey" FOREIGN KEY ("uploaded_by_id") REFERENCES "user"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "request_package" ADD CONSTRAINT "request_package_request_id_fkey" FOREIGN KEY ("request_id") REFERENCES "request"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "request_package" ADD CONSTRAINT "request_package_package_id_fkey" FOREIGN KEY ("package_id") REFERENCES "package"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "package_event" ADD CONSTRAINT "package_event_package_id_fkey" FOREIGN KEY ("package_id") REFERENCES "package"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "advisory_affected" ADD CONSTRAINT "advisory_affected_advisory_id_fkey" FOREIGN KEY ("advisory_id") REFERENCES "advisory"("id") ON DELETE CASCADE ON UPDATE CASCADE;
