/**
 * The audit trail: the sealer chains events written concurrently by real queue operations, verification
 * finds exactly the link that was altered or removed, late-committed events are sealed later (never
 * skipped), and the export endpoint (filters, cursor pages, JSON Lines, roles).
 */
import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventHash, GENESIS_HASH } from "../src/audit/chain.ts";
import { streamAuditEvents, type AuditItem } from "../src/audit/export.ts";
import { SEALER_LOCK_KEY, sealEvents } from "../src/audit/sealer.ts";
import { formatVerifyReport, verifyChain } from "../src/audit/verify.ts";
import { claim, complete, enqueuePackages, type EnqueueRow } from "../src/queue/sql.ts";
import { buildTestApp, type TestApp } from "./support/app.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";

let t: TestDatabase;
let ta: TestApp;
beforeAll(async () => {
  t = await createTestDatabase();
  ta = await buildTestApp(t.db);
});
afterAll(async () => {
  await ta?.app.close();
  await t?.drop();
});

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const row = (name: string, version = "1.0.0"): EnqueueRow => ({ name, version, integrity: null, resolved: null });

async function newRequest(): Promise<number> {
  const r = await t.db.request.create({
    data: { uploadedByName: "test", lockfileSha256: "x", lockfileVersion: 3, total: 0, newCount: 0, existingCount: 0 },
  });
  return r.id;
}

interface ChainRow {
  id: string;
  seal_seq: string | null;
  prev_hash: string | null;
  hash: string | null;
}

async function chainRows(): Promise<ChainRow[]> {
  return t.db.$queryRaw<ChainRow[]>`
    SELECT e.id::text AS id, e.seal_seq::text AS seal_seq, e.prev_hash, e.hash FROM package_event e ORDER BY e.seal_seq NULLS LAST, e.id`;
}

async function eventAtSeq(seq: number): Promise<ChainRow & { reason: string | null }> {
  const [r] = await t.db.$queryRaw<(ChainRow & { reason: string | null })[]>`
    SELECT id::text AS id, seal_seq::text AS seal_seq, prev_hash, hash, reason FROM package_event WHERE seal_seq = ${seq}::bigint`;
  if (!r) throw new Error(`no event at seal_seq ${seq}`);
  return r;
}

function runVerifyCli(): Promise<{ code: number; stdout: string }> {
  const root = resolve(import.meta.dirname, "..");
  return new Promise((res) => {
    execFile(
      process.execPath,
      ["--import", "tsx", resolve(root, "scripts/audit-verify.ts")],
      { cwd: root, env: { ...process.env, DATABASE_URL: t.url, LOG_LEVEL: "silent" } },
      (err, stdout) => res({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout }),
    );
  });
}

describe("audit hash chain", () => {
  it("seals events written concurrently by queue operations into one contiguous chain that verifies", async () => {
    const requests = await Promise.all(range(6).map(() => newRequest()));
    // Six uploads at once (overlapping package sets), each in its own transaction, with two sealers racing them.
    await Promise.all([
      ...requests.map((requestId, i) =>
        t.db.$transaction((tx) =>
          enqueuePackages(tx, { requestId, actor: `uploader${i}`, rows: range(30).map((j) => row(`pkg-${(i * 10 + j) % 80}`)) }),
        ),
      ),
      sealEvents(t.db, { batchSize: 7 }),
      sealEvents(t.db, { batchSize: 7 }),
    ]);
    // Four workers claim at once, then complete at once (two events per row with `via`), with a sealer racing.
    const stages = { queued: ["requested" as const], active: ["checking_licence" as const] };
    const claimed = await Promise.all(range(4).map((w) => claim(t.db, { ...stages, limit: 15, worker: `w${w}` })));
    expect(claimed.flat().length).toBe(60);
    await Promise.all([
      ...claimed.map((rows, w) =>
        complete(
          t.db,
          `w${w}`,
          rows.map((r, k) => ({
            id: r.id,
            token: r.lease_token,
            from: "checking_licence" as const,
            to: k % 3 === 0 ? ("rejected" as const) : ("licence_checked" as const),
            via: k % 3 === 0 ? ("licence_checked" as const) : null,
            attempts: 0,
            eventReason: "licence MIT: allow",
            eventDetails: { verdict: "allow", licence: "MIT", nested: { z: [1, 2.5, "ü"], a: null } },
          })),
        ),
      ),
      sealEvents(t.db, { batchSize: 5 }),
    ]);
    const final = await sealEvents(t.db, { batchSize: 13 });
    expect(final.ran).toBe(true);

    const total = await t.db.packageEvent.count();
    // 80 uploads, no claim events, 60 outcomes + 20 `via` events.
    expect(total).toBe(80 + 60 + 20);
    const result = await verifyChain(t.db, { batchSize: 17 });
    expect(result).toMatchObject({ ok: true, count: total, unsealed: 0, broken: null });

    const rows = await chainRows();
    expect(rows.map((r) => r.seal_seq)).toEqual(range(total).map((i) => String(i + 1)));
    expect(rows[0]!.prev_hash).toBe(GENESIS_HASH);
    for (let i = 1; i < rows.length; i++) expect(rows[i]!.prev_hash).toBe(rows[i - 1]!.hash);
    expect(result.head).toBe(rows.at(-1)!.hash);
    expect(result.head_seal_seq).toBe(String(total));
    expect(formatVerifyReport(result)).toContain(`OK: ${total} events, chain head ${result.head}`);

    const cli = await runVerifyCli();
    expect(cli.code, cli.stdout).toBe(0);
    expect(cli.stdout).toContain(`OK: ${total} events, chain head ${result.head}`);
    expect(cli.stdout).toContain("unsealed: 0 events");
  });

  it("reports exactly the link whose reason was altered, and verifies again once it is restored", async () => {
    const victim = await eventAtSeq(10);
    await t.db.$executeRaw`UPDATE package_event SET reason = 'nothing to see here' WHERE id = ${victim.id}::bigint`;
    const result = await verifyChain(t.db, { batchSize: 4 });
    expect(result.ok).toBe(false);
    expect(result.count).toBe(9);
    expect(result.broken).toMatchObject({
      problem: "hash_mismatch",
      seal_seq: "10",
      event_id: victim.id,
      stored_hash: victim.hash,
      stored_prev_hash: victim.prev_hash,
      expected_prev_hash: victim.prev_hash,
    });
    expect(result.broken!.expected_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(result.broken!.expected_hash).not.toBe(victim.hash);
    const report = formatVerifyReport(result);
    expect(report).toContain(`BROKEN: chain breaks at seal_seq 10 (event id ${victim.id})`);
    expect(report).toContain(`expected hash      ${result.broken!.expected_hash}`);
    expect(report).toContain(`stored hash        ${victim.hash}`);

    const cli = await runVerifyCli();
    expect(cli.code).toBe(1);
    expect(cli.stdout).toContain(`seal_seq 10 (event id ${victim.id})`);

    // The sealer refuses nothing here (the head is intact) and the chain is whole again once restored.
    await t.db.$executeRaw`UPDATE package_event SET reason = ${victim.reason} WHERE id = ${victim.id}::bigint`;
    expect((await verifyChain(t.db)).ok).toBe(true);
  });

  it("detects an altered hash (the next link's prev_hash no longer matches) and altered details", async () => {
    const victim = await eventAtSeq(20);
    await t.db.$executeRaw`UPDATE package_event SET hash = ${"f".repeat(64)} WHERE id = ${victim.id}::bigint`;
    const r1 = await verifyChain(t.db);
    expect(r1.broken).toMatchObject({ problem: "hash_mismatch", seal_seq: "20", event_id: victim.id, stored_hash: "f".repeat(64) });
    await t.db.$executeRaw`UPDATE package_event SET hash = ${victim.hash} WHERE id = ${victim.id}::bigint`;

    const withDetails = await t.db.$queryRaw<{ id: string; seal_seq: string; details: unknown }[]>`
      SELECT e.id::text AS id, e.seal_seq::text AS seal_seq, e.details FROM package_event e WHERE e.details ? 'verdict' ORDER BY e.seal_seq LIMIT 1`;
    const d = withDetails[0]!;
    await t.db.$executeRaw`UPDATE package_event SET details = details || '{"verdict":"deny"}'::jsonb WHERE id = ${d.id}::bigint`;
    const r2 = await verifyChain(t.db);
    expect(r2.broken).toMatchObject({ problem: "hash_mismatch", seal_seq: d.seal_seq, event_id: d.id });
    await t.db.$executeRaw`UPDATE package_event SET details = ${JSON.stringify(d.details)}::jsonb WHERE id = ${d.id}::bigint`;
    expect((await verifyChain(t.db)).ok).toBe(true);
  });

  it("refuses to chain onto a head whose hash was removed", async () => {
    await sealEvents(t.db);
    const [head] = await t.db.$queryRaw<{ id: string; hash: string }[]>`
      SELECT e.id::text AS id, e.hash FROM package_event e WHERE e.seal_seq IS NOT NULL ORDER BY e.seal_seq DESC LIMIT 1`;
    await t.db.$executeRaw`UPDATE package_event SET hash = NULL WHERE id = ${head!.id}::bigint`;
    const requestId = await newRequest();
    await enqueuePackages(t.db, { requestId, actor: "blocked", rows: [row("blocked-a")] });
    try {
      await expect(sealEvents(t.db)).rejects.toThrow(/has no valid hash: not sealing/);
      expect((await verifyChain(t.db)).broken).toMatchObject({ problem: "hash_mismatch", event_id: head!.id, stored_hash: null });
    } finally {
      await t.db.$executeRaw`UPDATE package_event SET hash = ${head!.hash} WHERE id = ${head!.id}::bigint`;
    }
    expect((await sealEvents(t.db)).sealed).toBe(1);
    expect((await verifyChain(t.db)).ok).toBe(true);
  });

  it("seals an event committed late (lower id, committed after higher ids were sealed) in a later batch", async () => {
    await sealEvents(t.db);
    const pkg = await t.db.package.findFirstOrThrow({ orderBy: { id: "asc" } });
    let inserted!: () => void;
    let release!: () => void;
    const insertedP = new Promise<void>((r) => (inserted = r));
    const releaseP = new Promise<void>((r) => (release = r));
    let lateId = "";
    const held = t.db.$transaction(
      async (tx) => {
        const [ev] = await tx.$queryRaw<{ id: string }[]>`
          INSERT INTO package_event (package_id, from_status, to_status, actor, reason)
          VALUES (${pkg.id}::int, 'requested', 'requested', 'slowpoke', 'held open') RETURNING id::text AS id`;
        lateId = ev!.id;
        inserted();
        await releaseP;
      },
      { timeout: 30_000 },
    );
    await insertedP;
    // Meanwhile other transactions write (and commit) events with higher ids, and they are sealed.
    const requestId = await newRequest();
    await enqueuePackages(t.db, { requestId, actor: "after", rows: [row("late-a"), row("late-b"), row("late-c")] });
    const first = await sealEvents(t.db);
    expect(first.sealed).toBe(3);
    const laterIds = await t.db.$queryRaw<{ id: string; seal_seq: string }[]>`
      SELECT e.id::text AS id, e.seal_seq::text AS seal_seq FROM package_event e WHERE e.actor = 'after' ORDER BY e.id`;
    expect(laterIds.every((r) => BigInt(r.id) > BigInt(lateId) && r.seal_seq !== null)).toBe(true);
    // The held event is invisible to everyone else until it commits: the chain verifies without it.
    expect(await verifyChain(t.db)).toMatchObject({ ok: true, unsealed: 0 });

    release();
    await held;
    // Committed now, with a lower id than events already sealed: unsealed, and counted as such.
    expect(await verifyChain(t.db)).toMatchObject({ ok: true, unsealed: 1 });
    const second = await sealEvents(t.db);
    expect(second.sealed).toBe(1);
    const [late] = await t.db.$queryRaw<{ seal_seq: string; prev_hash: string }[]>`
      SELECT seal_seq::text AS seal_seq, prev_hash FROM package_event WHERE id = ${lateId}::bigint`;
    expect(late!.seal_seq).toBe(String(BigInt(first.head!.sealSeq) + 1n));
    expect(late!.prev_hash).toBe(first.head!.hash);
    const end = await verifyChain(t.db);
    expect(end).toMatchObject({ ok: true, unsealed: 0, head_seal_seq: late!.seal_seq });
  });

  it("does nothing when another process holds the sealer lock", async () => {
    const requestId = await newRequest();
    await enqueuePackages(t.db, { requestId, actor: "locked-out", rows: [row("lock-a")] });
    let locked!: () => void;
    let release!: () => void;
    const lockedP = new Promise<void>((r) => (locked = r));
    const releaseP = new Promise<void>((r) => (release = r));
    const holder = t.db.$transaction(
      async (tx) => {
        await tx.$executeRaw`SELECT pg_advisory_xact_lock(${SEALER_LOCK_KEY}::bigint)`;
        locked();
        await releaseP;
      },
      { timeout: 30_000 },
    );
    await lockedP;
    try {
      expect(await sealEvents(t.db)).toEqual({ ran: false, sealed: 0, head: null });
      // The export seals best-effort: it answers without waiting, the new event not sealed yet.
      const res = await ta.app.inject({ method: "GET", url: "/api/packages/audit?actor=locked-out", headers: ta.auth("approver") });
      expect(res.statusCode).toBe(200);
      expect((res.json() as { items: AuditItem[] }).items).toMatchObject([{ actor: "locked-out", seal_seq: null, hash: null, prev_hash: null }]);
    } finally {
      release();
      await holder;
    }
    // Without the lock held, the export seals first.
    const res = await ta.app.inject({ method: "GET", url: "/api/packages/audit?actor=locked-out", headers: ta.auth("approver") });
    const [item] = (res.json() as { items: AuditItem[] }).items;
    expect(item!.seal_seq).toBeGreaterThan(0);
    expect(item!.hash).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe("GET /api/packages/audit", () => {
  async function page(query: string, role: "approver" | "admin" = "approver"): Promise<{ items: AuditItem[]; next_cursor: number | null }> {
    const res = await ta.app.inject({ method: "GET", url: `/api/packages/audit${query}`, headers: ta.auth(role) });
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as { items: AuditItem[]; next_cursor: number | null };
  }

  async function all(query = ""): Promise<AuditItem[]> {
    const res = await ta.app.inject({ method: "GET", url: `/api/packages/audit?format=jsonl${query ? `&${query}` : ""}`, headers: ta.auth("approver") });
    expect(res.statusCode, res.body).toBe(200);
    return res.body.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as AuditItem);
  }

  it("needs approver or admin", async () => {
    const asUser = await ta.app.inject({ method: "GET", url: "/api/packages/audit", headers: ta.auth("user") });
    expect(asUser.statusCode).toBe(403);
    expect(asUser.json()).toMatchObject({ error: { code: "forbidden", hint: expect.any(String) as string } });
    const anonymous = await ta.app.inject({ method: "GET", url: "/api/packages/audit" });
    expect(anonymous.statusCode).toBe(401);
    expect((await page("?limit=1", "admin")).items).toHaveLength(1);
  });

  it("pages by event id with a cursor, every event once, each item complete", async () => {
    const total = await t.db.packageEvent.count();
    const seen: AuditItem[] = [];
    let cursor: number | null = 0;
    let pages = 0;
    while (cursor !== null) {
      const p = await page(`?limit=37&cursor=${cursor}`);
      seen.push(...p.items);
      cursor = p.next_cursor;
      pages++;
    }
    expect(pages).toBe(Math.ceil(total / 37));
    expect(seen).toHaveLength(total);
    expect(new Set(seen.map((i) => i.id)).size).toBe(total);
    expect(seen.map((i) => i.id)).toEqual([...seen.map((i) => i.id)].sort((a, b) => a - b));
    const first = seen[0]!;
    const pkg = await t.db.package.findUniqueOrThrow({ where: { id: first.package_id } });
    expect(first).toMatchObject({ package: `${pkg.name}@${pkg.version}`, from: null, to: "requested", reason: "uploaded" });
    expect(first.at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(Object.keys(first).sort()).toEqual(
      ["actor", "at", "details", "from", "hash", "id", "package", "package_id", "prev_hash", "reason", "seal_seq", "to"].sort(),
    );
    // default page size
    expect((await page("")).items).toHaveLength(100);
  });

  it("filters by request, package, actor and time", async () => {
    const everything = await all();
    const [requestId] = (await t.db.request.findMany({ orderBy: { id: "asc" }, take: 1 })).map((r) => r.id);
    const linked = new Set((await t.db.requestPackage.findMany({ where: { requestId } })).map((l) => l.packageId));
    const byRequest = await all(`request_id=${requestId}`);
    expect(byRequest.length).toBeGreaterThan(0);
    expect(byRequest).toEqual(everything.filter((i) => linked.has(i.package_id)));

    const pkgId = everything[5]!.package_id;
    const byPackage = (await page(`?package_id=${pkgId}&limit=1000`)).items;
    expect(byPackage).toEqual(everything.filter((i) => i.package_id === pkgId));

    const byActor = (await page(`?actor=w2&limit=1000`)).items;
    expect(byActor.length).toBeGreaterThan(0);
    expect(byActor).toEqual(everything.filter((i) => i.actor === "w2"));

    // from is inclusive and to exclusive, to the microsecond.
    const pivot = everything.find((i) => i.actor === "after")!;
    const fromPivot = await all(`from=${encodeURIComponent(pivot.at)}`);
    expect(fromPivot).toEqual(everything.filter((i) => i.at >= pivot.at));
    expect(fromPivot.map((i) => i.id)).toContain(pivot.id);
    const toPivot = await all(`to=${encodeURIComponent(pivot.at)}`);
    expect(toPivot).toEqual(everything.filter((i) => i.at < pivot.at));
    expect(fromPivot.length + toPivot.length).toBe(everything.length);

    const combined = (await page(`?actor=after&package_id=${pivot.package_id}`)).items;
    expect(combined.map((i) => i.id)).toEqual([pivot.id]);
    expect((await page(`?actor=nobody`)).items).toEqual([]);

    const bad = await ta.app.inject({ method: "GET", url: "/api/packages/audit?from=yesterday", headers: ta.auth("approver") });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ error: { code: "validation_failed" } });
  });

  it("exports JSON Lines (Accept or ?format=jsonl) that parse line by line and re-verify the chain", async () => {
    const res = await ta.app.inject({ method: "GET", url: "/api/packages/audit", headers: { ...ta.auth("admin"), accept: "application/x-ndjson" } });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^application\/x-ndjson/);
    expect(res.body.endsWith("\n")).toBe(true);
    const lines = res.body.split("\n").slice(0, -1);
    const items = lines.map((l) => JSON.parse(l) as AuditItem);
    expect(items).toHaveLength(await t.db.packageEvent.count());
    expect(items).toEqual(await all());

    // Anyone holding the export can recompute the chain from it.
    const chain = items.filter((i) => i.seal_seq !== null).sort((a, b) => a.seal_seq! - b.seal_seq!);
    let prev = GENESIS_HASH;
    for (const i of chain) {
      const h = eventHash(prev, {
        id: String(i.id),
        package_id: i.package_id,
        from_status: i.from,
        to_status: i.to,
        actor: i.actor,
        reason: i.reason,
        details: i.details,
        at: i.at,
      });
      expect(i.prev_hash).toBe(prev);
      expect(i.hash).toBe(h);
      prev = h;
    }

    const limited = await ta.app.inject({ method: "GET", url: "/api/packages/audit?format=jsonl&limit=5&cursor=3", headers: ta.auth("approver") });
    const few = limited.body.split("\n").filter(Boolean).map((l) => JSON.parse(l) as AuditItem);
    expect(few.map((i) => i.id)).toEqual(items.filter((i) => i.id > 3).slice(0, 5).map((i) => i.id));
    // format=json wins over the Accept header
    const json = await ta.app.inject({ method: "GET", url: "/api/packages/audit?format=json&limit=2", headers: { ...ta.auth("approver"), accept: "application/x-ndjson" } });
    expect(json.headers["content-type"]).toMatch(/^application\/json/);
    expect((json.json() as { items: unknown[] }).items).toHaveLength(2);
  });

  it("streams in batches", async () => {
    const ids: number[] = [];
    for await (const item of streamAuditEvents(t.db, {}, { batchSize: 7 })) ids.push(item.id);
    expect(ids).toHaveLength(await t.db.packageEvent.count());
    const capped: number[] = [];
    for await (const item of streamAuditEvents(t.db, {}, { batchSize: 7, max: 15, after: BigInt(ids[2]!) })) capped.push(item.id);
    expect(capped).toEqual(ids.slice(3, 18));
  });
});

describe("audit chain after a deletion", () => {
  it("reports the break where an event was deleted", async () => {
    expect((await verifyChain(t.db)).ok).toBe(true);
    const victim = await eventAtSeq(5);
    const next = await eventAtSeq(6);
    await t.db.$executeRaw`DELETE FROM package_event WHERE id = ${victim.id}::bigint`;
    const result = await verifyChain(t.db, { batchSize: 3 });
    expect(result.ok).toBe(false);
    expect(result.count).toBe(4);
    expect(result.broken).toMatchObject({
      problem: "sequence_gap",
      seal_seq: "6",
      expected_seal_seq: "5",
      event_id: next.id,
      stored_hash: next.hash,
      stored_prev_hash: victim.hash,
      expected_prev_hash: victim.prev_hash,
    });
    expect(formatVerifyReport(result)).toContain(`BROKEN: chain breaks at seal_seq 6 (event id ${next.id}): seal_seq 5 missing`);
  });
});
