import path from "node:path";

/**
 * The project's root folder, where `migrations/` and `crontab` live. Code runs
 * compiled from dist/src/, so it is found from this file's place, not from the
 * current directory (pm2 or a test may start us anywhere).
 */
export const projectRoot = path.resolve(__dirname, "..", "..");
