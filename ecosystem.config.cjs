/**
 * pm2's description of the fila-llm worker:
 *
 *   npm run pm2:start          (`pm2 start ecosystem.config.cjs`; npm ci has built dist/)
 *   pm2 logs fila-llm
 *   pm2 save && pm2 startup    (start it again when the machine boots)
 *
 * One process in fork mode: each LLM server's prompts run in one process
 * anyway (the lane locks in src/session.ts), and a second worker belongs on
 * another machine.
 */
const fs = require("node:fs");
const path = require("node:path");
const { parse } = require("dotenv");

/**
 * SHUTDOWN_GRACE_SECONDS as the worker will see it (the environment first,
 * then .env, as src/config.ts reads them), so that kill_timeout below follows
 * it. Only sized here; src/config.ts validates it.
 */
function shutdownGraceSeconds() {
  let fromFile;
  try {
    fromFile = parse(fs.readFileSync(path.join(__dirname, ".env"))).SHUTDOWN_GRACE_SECONDS;
  } catch {
    fromFile = undefined;
  }
  const value = Number(process.env.SHUTDOWN_GRACE_SECONDS ?? fromFile ?? 30);
  return Number.isFinite(value) && value >= 0 ? value : 30;
}

// On `pm2 stop/restart/reload` the worker gets SIGINT, lets the prompt in
// flight finish for SHUTDOWN_GRACE_SECONDS, puts it back if it has not, and
// exits by itself within 5 s more (src/start.ts). pm2 must wait longer than
// that before its SIGKILL: with pm2's default of 1.6 s, a plain `pm2 restart`
// during a long LLM call would kill the worker mid-request.
const KILL_TIMEOUT_MS = (shutdownGraceSeconds() + 10) * 1000;

module.exports = {
  apps: [
    {
      name: "fila-llm",
      // The compiled CLI: `npm ci` builds it, and `npm run build` after a git
      // pull (until then it refuses to start, and pm2 retries it).
      script: "dist/src/cli.js",
      args: ["start"],
      // The project folder: .env, crontab and migrations/ are found from here.
      cwd: __dirname,
      exec_mode: "fork",
      instances: 1,
      autorestart: true,
      kill_timeout: KILL_TIMEOUT_MS,
      // After a crash: 1 s, then 1.5×, 2.25×… up to pm2's cap of 15 s while it
      // keeps crashing; back to 1 s once it has run for 30 s. A worker killed
      // mid-request is back within seconds; a crash loop does not spin.
      exp_backoff_restart_delay: 1000,
      // pm2 gives up on an app (status errored) after max_restarts exits each
      // within min_uptime of its start, all within min_uptime × max_restarts
      // (160 s) of `pm2 start`. With the backoff above that many restarts take
      // longer than 160 s, so pm2 never gives up on the worker during an
      // unattended night: a worker that cannot start is retried every 15 s.
      min_uptime: "10s",
      max_restarts: 16,
      // 78 (EX_CONFIG): src/cli.ts found an invalid setting. Restarting cannot
      // fix it; the message is in the error log.
      stop_exit_codes: [78],
      // Kept in the project's logs/ folder; every line already has a timestamp.
      out_file: path.join(__dirname, "logs", "fila-llm.out.log"),
      error_file: path.join(__dirname, "logs", "fila-llm.err.log"),
      merge_logs: true,
      time: false,
    },
  ],
};
