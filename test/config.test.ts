import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { DEFAULTS, describeConfig, parseConfig } from "../src/config";
import { projectRoot } from "../src/paths";

describe("config", () => {
  test("an empty environment gives the documented defaults", () => {
    const c = parseConfig({ WINDOW_TZ: "UTC" });
    assert.equal(c.databaseUrl, null);
    assert.equal(c.llm.provider, "ollama");
    assert.deepEqual(c.llm.baseUrls, ["http://127.0.0.1:11434"]);
    assert.equal(c.llm.concurrencyPerServer, 1);
    assert.equal(c.llm.model, DEFAULTS.OLLAMA_MODEL);
    assert.equal(c.llm.timeoutSeconds, 900);
    assert.equal(c.llm.maxAttempts, 5);
    assert.equal(c.tokenEncoding, "cl100k_base");
    assert.deepEqual(c.window, { startMinutes: 60, endMinutes: 360, timeZone: "UTC" });
    assert.equal(c.shutdownGraceSeconds, 30);
    assert.equal(c.logLevel, "info");
  });

  test("each bad value fails with a message naming the variable and the accepted form", () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ WINDOW_START: "1am" }, /^WINDOW_START must be HH:MM in 24-hour time.*got "1am"/],
      [{ WINDOW_END: "25:00" }, /^WINDOW_END must be HH:MM/],
      [{ WINDOW_START: "02:00", WINDOW_END: "02:00" }, /^WINDOW_END must be a time different from WINDOW_START/],
      [{ WINDOW_TZ: "Mars/Olympus" }, /^WINDOW_TZ must be an IANA time zone/],
      [{ LLM_PROVIDER: "claude" }, /^LLM_PROVIDER must be one of ollama, openai/],
      [{ LLM_PROVIDER: "openai" }, /^LLM_MODEL must be the model name/],
      [{ LLM_BASE_URL: "localhost:11434" }, /^LLM_BASE_URL must be an http:\/\/ or https:\/\/ URL/],
      [{ LLM_TIMEOUT_SECONDS: "soon" }, /^LLM_TIMEOUT_SECONDS must be a number/],
      [{ LLM_MAX_ATTEMPTS: "2.5" }, /^LLM_MAX_ATTEMPTS must be an integer from 1 to 100/],
      [{ LLM_TEMPERATURE: "3" }, /^LLM_TEMPERATURE must be a number from 0 to 2/],
      [{ TOKEN_ENCODING: "bpe_magic" }, /^TOKEN_ENCODING must be a js-tiktoken encoding/],
      [{ LOG_FORMAT: "xml" }, /^LOG_FORMAT must be one of text, json/],
      [{ LOG_LEVEL: "verbose" }, /^LOG_LEVEL must be one of debug, info, warn, error/],
    ];
    for (const [env, message] of cases) {
      assert.throws(() => parseConfig(env), (e: Error) => e.name === "ConfigError" && message.test(e.message), JSON.stringify(env));
    }
  });

  test("a malformed DATABASE_URL is rejected without echoing it", () => {
    assert.throws(
      () => parseConfig({ DATABASE_URL: "mysql://u:s3cretpw@h/db" }),
      (e: Error) => /^DATABASE_URL must be a postgres:\/\//.test(e.message) && !e.message.includes("s3cretpw"),
    );
  });

  test("the openai provider defaults to a /v1 base URL and requires LLM_MODEL", () => {
    const c = parseConfig({ LLM_PROVIDER: "openai", LLM_MODEL: "qwen2.5", LLM_BASE_URL: "http://10.0.0.5:8000/v1/" });
    assert.deepEqual(c.llm.baseUrls, ["http://10.0.0.5:8000/v1"]);
    assert.deepEqual(parseConfig({ LLM_PROVIDER: "openai", LLM_MODEL: "m" }).llm.baseUrls, ["http://127.0.0.1:8000/v1"]);
  });

  test("LLM_BASE_URL takes several servers, one lane each, and LLM_CONCURRENCY_PER_SERVER their concurrency", () => {
    const c = parseConfig({ LLM_BASE_URL: "http://gpu1:11434, http://gpu2:11434/ ,http://gpu3:11434", LLM_CONCURRENCY_PER_SERVER: "4" });
    assert.deepEqual(c.llm.baseUrls, ["http://gpu1:11434", "http://gpu2:11434", "http://gpu3:11434"]);
    assert.equal(c.llm.concurrencyPerServer, 4);
    assert.throws(() => parseConfig({ LLM_BASE_URL: "http://gpu1:11434,http://gpu1:11434" }), /LLM_BASE_URL must be .*each server once/);
    // The same server spelt twice would be two lanes on one server.
    assert.throws(() => parseConfig({ LLM_BASE_URL: "http://GPU1:11434,http://gpu1:11434/" }), /each server once/);
    assert.throws(() => parseConfig({ LLM_BASE_URL: "http://gpu1,http://gpu1:80" }), /each server once/);
    assert.throws(() => parseConfig({ LLM_BASE_URL: "http://me:s3cret@gpu1:11434,http://gpu1:11434" }), (e: Error) => /each server once/.test(e.message) && !e.message.includes("s3cret"));
    assert.throws(() => parseConfig({ LLM_BASE_URL: "http://gpu1:11434,gpu2:11434" }), /LLM_BASE_URL must be an http:\/\/ or https:\/\/ URL, or several separated by commas/);
    assert.throws(() => parseConfig({ LLM_CONCURRENCY_PER_SERVER: "0" }), /LLM_CONCURRENCY_PER_SERVER must be an integer from 1 to 64/);
  });

  test("describeConfig masks the database password and the API key", () => {
    const c = parseConfig({ DATABASE_URL: "postgres://app:Pa55word-x@db.example:5432/fila", LLM_API_KEY: "sk-live-abc123xyz" });
    const text = JSON.stringify(describeConfig(c));
    assert.ok(!text.includes("Pa55word-x"), text);
    assert.ok(!text.includes("sk-live-abc123xyz"), text);
    assert.match(text, /app:\*\*\*@db\.example/);
  });

  test("every variable src/config.ts reads is in .env.example and in the README's settings table", () => {
    const source = readFileSync(path.join(projectRoot, "src", "config.ts"), "utf8");
    const names = [...new Set([...source.matchAll(/"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"/g)].map((m) => m[1]))];
    assert.ok(names.length >= 20, `found only ${names.length} names`);
    const example = readFileSync(path.join(projectRoot, ".env.example"), "utf8");
    const readme = readFileSync(path.join(projectRoot, "README.md"), "utf8");
    for (const name of names) {
      assert.match(example, new RegExp(`^#? ?${name}=`, "m"), `${name} in .env.example`);
      assert.ok(readme.includes(`\`${name}\``), `${name} in README.md`);
    }
  });
});
