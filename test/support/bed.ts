/**
 * The set-up of a test file whose tests each start their own worker: one
 * test database and one test LLM server for the file, at most one worker at
 * a time, and everything back to its defaults before each test.
 */
import { after, before, beforeEach } from "node:test";
import type { Clock } from "../../src/gate";
import { createTestDatabase, reset, type TestDatabase } from "./db";
import { FakeLlm } from "./llm_server";
import { startInProcessWorker, type InProcessWorker } from "./worker";

export interface TestBed {
  readonly db: TestDatabase;
  readonly llm: FakeLlm;
  /** The worker the current test started, if any. */
  readonly worker: InProcessWorker;
  /** Starts the test's worker (stopping the one before, if any). */
  start(env: Record<string, string>, options?: { clock?: Clock; crontab?: string }): Promise<InProcessWorker>;
  /** Stops the test's worker now. */
  stop(): Promise<void>;
}

/**
 * The set-up of a test file that needs only a database: one test database for
 * the file, emptied (reset()) before each test. Read its pool, url and name
 * inside the tests, once the file's `before` hook has run.
 */
export function databaseBed(): TestDatabase {
  let db: TestDatabase | null = null;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db?.drop();
  });
  beforeEach(async () => {
    await reset(db!.pool);
  });
  return {
    get name() {
      return db!.name;
    },
    get url() {
      return db!.url;
    },
    get pool() {
      return db!.pool;
    },
    drop: () => db!.drop(),
  };
}

/** Registers the file's before/after/beforeEach hooks and returns the bed they keep. */
export function testBed(): TestBed {
  let db: TestDatabase | null = null;
  let llm: FakeLlm | null = null;
  let worker: InProcessWorker | null = null;
  const bed: TestBed = {
    get db() {
      return db!;
    },
    get llm() {
      return llm!;
    },
    get worker() {
      if (!worker) throw new Error("this test started no worker");
      return worker;
    },
    async start(env, options = {}) {
      await bed.stop();
      worker = await startInProcessWorker(db!, env, options);
      return worker;
    },
    async stop() {
      const w = worker;
      worker = null;
      await w?.stop();
    },
  };
  before(async () => {
    db = await createTestDatabase();
    llm = await FakeLlm.start();
  });
  after(async () => {
    await bed.stop();
    await llm?.stop();
    await db?.drop();
  });
  beforeEach(async () => {
    await bed.stop();
    await reset(db!.pool);
    llm!.reset();
  });
  return bed;
}
