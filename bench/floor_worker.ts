/**
 * The floor: a plain graphile-worker run() on this machine, configured like fila-llm's
 * (concurrency 1, no named queue, the same poll interval and pool size), running the same
 * process_prompt jobs with a task that does nothing but the LLM call (streamed, as fila-llm's
 * is: every NDJSON line parsed), or nothing at all.
 * No gate, no row read or write, no token count, no log line per job.
 *
 *   node dist/bench/floor_worker.js http|empty <jobs>
 *
 * Env: DATABASE_URL, LLM_BASE_URL. After <jobs> tasks it prints one JSON line with the hi-res
 * start time of each task call (ms), then keeps running until SIGTERM.
 */
import { Pool } from "pg";
import { Pool as HttpPool } from "undici";
import { Logger, run } from "graphile-worker";

async function main(): Promise<void> {
  const [mode, jobsArg] = process.argv.slice(2);
  const jobs = Number(jobsArg);
  if ((mode !== "http" && mode !== "empty") || !Number.isInteger(jobs)) throw new Error("usage: floor_worker http|empty <jobs>");
  const llmUrl = new URL(process.env.LLM_BASE_URL!);
  const http = new HttpPool(llmUrl.origin, { connections: 1, keepAliveTimeout: 60_000 });
  const starts: number[] = [];

  // The same call fila-llm makes: streamed, one NDJSON line per token, each line parsed.
  const callLlm = async (id: number): Promise<void> => {
    const response = await http.request({
      path: "/api/generate",
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "test-model", prompt: `prompt ${id}`, stream: true }),
    });
    let text = "";
    for (const line of (await response.body.text()).split("\n")) if (line !== "") text += JSON.parse(line).response;
    if (text === "") throw new Error("empty answer");
  };

  // The same pool size as fila-llm's createPool.
  const pgPool = new Pool({ connectionString: process.env.DATABASE_URL, max: 5 });
  pgPool.on("error", (error) => process.stderr.write(`idle database connection lost: ${error.message}\n`));
  const runner = await run({
    pgPool,
    concurrency: 1,
    noHandleSignals: true,
    pollInterval: 1000,
    logger: new Logger(() => (level, message) => {
      if (level === "error") process.stderr.write(`graphile-worker: ${message}\n`);
    }),
    taskList: {
      process_prompt: async (payload) => {
        starts.push(performance.timeOrigin + performance.now());
        if (mode === "http") await callLlm((payload as { id: number }).id);
        if (starts.length === jobs) process.stdout.write(JSON.stringify({ starts }) + "\n");
      },
    },
  });

  process.on("SIGTERM", () => {
    void (async () => {
      await runner.stop();
      await pgPool.end();
      await http.close();
      process.exit(0);
    })();
  });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
