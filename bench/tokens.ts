import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { getTokenCounter } from "../src/tokens/index";
import { median, printTable } from "./table";
import { prng } from "../test/support/prng";

const ENCODING = "cl100k_base";
const KIB = 1024;
const MIB = 1024 * KIB;

// js-tiktoken needs ~1,300 s for a 100 KB run of one character; past this we report a timeout.
const REFERENCE_TIMEOUT_MS = 20_000;
// Each side is timed this many times, after one untimed warm-up run, and the median kept.
// js-tiktoken stops repeating once REFERENCE_REPEAT_BUDGET_MS is spent, so slow cases run once.
const RUNS = 5;
const REFERENCE_REPEAT_BUDGET_MS = 4_000;
// The event-loop probe: a timer this often, reporting the longest gap between its ticks.
const PROBE_INTERVAL_MS = 5;

interface BenchCase {
  readonly name: string;
  readonly text: () => string;
  // false: too large to be worth timing js-tiktoken on (its 1 MB run already times out).
  readonly reference: boolean;
}

// Texts are generated deterministically so the reference child process can rebuild the same
// text from the case name instead of receiving megabytes over IPC.
const CASES: readonly BenchCase[] = [
  { name: "prose (es/en), 1 MB", text: () => prose(MIB), reference: true },
  { name: "base64, 1 MB", text: () => base64(MIB), reference: true },
  { name: "code (typescript.js), 1 MB", text: () => code(MIB), reference: true },
  { name: '"a" × 100 KB', text: () => "a".repeat(100 * KIB), reference: true },
  { name: '"a" × 1 MB', text: () => "a".repeat(MIB), reference: true },
  { name: '"a" × 10 MB', text: () => "a".repeat(10 * MIB), reference: false },
];


const WORDS = (
  "the of and to in is that for it as was with be by on not this are from at which but have they you were " +
  "there been one all would if more when who will what out up about into than could only over also after " +
  "it's don't we'll queue prompt answer night window retry model token worker database " +
  "de la que el en los se del las por con una para es al como más pero sus ya este porque esta entre cuando " +
  "muy sin sobre también hasta hay donde desde todo nos durante uno ni contra otros ante ellos antes algunos " +
  "qué niño año señor corazón canción información café después además mañana respuesta cola noche"
).split(" ");

function prose(units: number): string {
  const random = prng(1);
  let text = "";
  while (text.length < units) {
    const words = 6 + Math.floor(random() * 14);
    let sentence = "";
    for (let i = 0; i < words; i++) sentence += (i > 0 ? " " : "") + WORDS[Math.floor(random() * WORDS.length)];
    text += sentence[0].toUpperCase() + sentence.slice(1) + (random() < 0.15 ? ".\n\n" : random() < 0.3 ? ", " : ". ");
  }
  return text.slice(0, units);
}

function base64(units: number): string {
  const random = prng(2);
  const bytes = Buffer.alloc(Math.ceil((units * 3) / 4));
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
  return bytes.toString("base64").slice(0, units);
}

function code(units: number): string {
  return readFileSync(require.resolve("typescript/lib/typescript.js"), "utf8").slice(0, units);
}

function mbPerSecond(bytes: number, ms: number): number {
  return bytes / MIB / (ms / 1000);
}

interface ReferenceResult {
  tokens?: number;
  ms?: number; // median encode time, when it finished
}

/** Times js-tiktoken on one case in a child process that is killed after the timeout. */
function timeReference(caseName: string): Promise<ReferenceResult> {
  return new Promise((resolve, reject) => {
    const child = fork(__filename, ["--reference", caseName], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    let timer: NodeJS.Timeout | undefined;
    const finish = (result: ReferenceResult | Error): void => {
      clearTimeout(timer);
      child.removeAllListeners();
      child.kill("SIGKILL");
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    // The timeout starts once the child has loaded its ranks, so it measures encoding only.
    timer = setTimeout(() => finish(new Error("js-tiktoken child did not start within 60 s")), 60_000);
    child.on("message", (message: { ready?: true } & ReferenceResult) => {
      if (message.ready) {
        clearTimeout(timer);
        timer = setTimeout(() => finish({}), REFERENCE_TIMEOUT_MS);
      } else {
        finish(message);
      }
    });
    child.on("error", finish);
    child.on("exit", (code) => finish(new Error(`js-tiktoken child exited with code ${code}`)));
  });
}

/** Child-process side of timeReference. */
async function runReferenceChild(caseName: string): Promise<void> {
  const benchCase = CASES.find((c) => c.name === caseName);
  if (benchCase === undefined) throw new Error(`unknown bench case ${caseName}`);
  const { Tiktoken } = await import("js-tiktoken/lite");
  const tiktoken = new Tiktoken((await import("js-tiktoken/ranks/cl100k_base")).default);
  const text = benchCase.text();
  tiktoken.encode("warm up", [], []);
  process.send!({ ready: true });
  const times: number[] = [];
  let tokens = 0;
  while (times.length < RUNS && times.reduce((a, b) => a + b, 0) < REFERENCE_REPEAT_BUDGET_MS) {
    const startMs = performance.now();
    tokens = tiktoken.encode(text, [], []).length;
    times.push(performance.now() - startMs);
  }
  process.send!({ tokens, ms: median(times) }, () => process.exit(0));
}

/** Runs our counter RUNS times; returns the median time and the longest event-loop stall seen. */
async function timeOurs(text: string): Promise<{ tokens: number; ms: number; maxBlockMs: number }> {
  const counter = getTokenCounter(ENCODING);
  await counter.count(text); // warm-up: lets the JIT compile the paths this input takes
  const times: number[] = [];
  let tokens = 0;
  let maxBlockMs = 0;
  for (let run = 0; run < RUNS; run++) {
    let lastTickMs = performance.now();
    const probe = setInterval(() => {
      const now = performance.now();
      maxBlockMs = Math.max(maxBlockMs, now - lastTickMs);
      lastTickMs = now;
    }, PROBE_INTERVAL_MS);
    const startMs = performance.now();
    try {
      tokens = await counter.count(text);
    } finally {
      clearInterval(probe);
    }
    const endMs = performance.now();
    times.push(endMs - startMs);
    maxBlockMs = Math.max(maxBlockMs, endMs - lastTickMs);
  }
  return { tokens, ms: median(times), maxBlockMs };
}

/**
 * The longest gap the event-loop probe sees around a loop that does nothing but 5 ms busy slices
 * (the counter's own slice) between setImmediate yields: what this machine's scheduling alone
 * adds to our numbers.
 */
async function controlGapMs(durationMs: number): Promise<number> {
  let maxGapMs = 0;
  let lastTickMs = performance.now();
  const probe = setInterval(() => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - lastTickMs);
    lastTickMs = now;
  }, PROBE_INTERVAL_MS);
  const startMs = performance.now();
  while (performance.now() - startMs < durationMs) {
    const sliceStartMs = performance.now();
    while (performance.now() - sliceStartMs < 5) {
      // busy: stands in for 5 ms of counting
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  clearInterval(probe);
  return maxGapMs;
}

/** Prints our token counter's throughput against plain js-tiktoken (same counts, or says not). */
export async function benchTokens(): Promise<void> {
  await getTokenCounter(ENCODING).count("warm up: loads the ranks outside the timings");
  const controlMs = await controlGapMs(3_000);
  const rows: (string | number)[][] = [];
  for (const benchCase of CASES) {
    const text = benchCase.text();
    const bytes = Buffer.byteLength(text, "utf8");
    const ours = await timeOurs(text);
    const oursMbps = mbPerSecond(bytes, ours.ms);
    let referenceCell = "not run";
    let ratioCell = "-";
    let sameCell = "-";
    if (benchCase.reference) {
      const reference = await timeReference(benchCase.name);
      if (reference.ms === undefined || reference.tokens === undefined) {
        referenceCell = `> ${REFERENCE_TIMEOUT_MS / 1000} s (timed out)`;
        ratioCell = `> ${(oursMbps / mbPerSecond(bytes, REFERENCE_TIMEOUT_MS)).toFixed(0)}×`;
        sameCell = "n/a (timed out)";
      } else {
        const referenceMbps = mbPerSecond(bytes, reference.ms);
        referenceCell = referenceMbps.toFixed(2);
        ratioCell = `${(oursMbps / referenceMbps).toFixed(1)}×`;
        sameCell = reference.tokens === ours.tokens ? `yes (${ours.tokens})` : `NO: ours ${ours.tokens}, js-tiktoken ${reference.tokens}`;
      }
    }
    rows.push([benchCase.name, oursMbps.toFixed(2), referenceCell, ratioCell, ours.maxBlockMs.toFixed(0), sameCell]);
  }
  printTable(
    `Token counting, ${ENCODING}: MB/s (median of ${RUNS}), ours vs plain js-tiktoken 1.0.21`,
    ["input", "ours MB/s", "js-tiktoken MB/s", "ratio", `ours max event-loop gap (ms, ${PROBE_INTERVAL_MS} ms timer)`, "same count"],
    rows,
  );
  console.log(
    `\nControl: a loop of 5 ms busy slices with setImmediate yields saw a ${controlMs.toFixed(0)} ms max gap ` +
      `with the same probe, here and now (the 2 cores may be shared with other processes).`,
  );
}

if (require.main === module) {
  const referenceArg = process.argv.indexOf("--reference");
  const run = referenceArg >= 0 ? runReferenceChild(process.argv[referenceArg + 1]) : benchTokens();
  run.catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
