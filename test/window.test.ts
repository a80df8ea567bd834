import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isWindowOpen, nextWindowChange, parseClockTime, type WindowSpec } from "../src/window";

const night = (timeZone: string): WindowSpec => ({ startMinutes: 60, endMinutes: 360, timeZone });

describe("isWindowOpen, 01:00–06:00", () => {
  const w = night("America/Mexico_City"); // UTC-6 all year since 2022
  const at = (local: string) => new Date(`${local}-06:00`);

  test("is closed at 00:59:59 and open at 01:00:00", () => {
    assert.equal(isWindowOpen(at("2026-11-27T00:59:59"), w), false);
    assert.equal(isWindowOpen(at("2026-11-27T01:00:00"), w), true);
  });

  test("is open at 05:59:59 and closed at 06:00:00", () => {
    assert.equal(isWindowOpen(at("2026-11-27T05:59:59"), w), true);
    assert.equal(isWindowOpen(at("2026-11-27T06:00:00"), w), false);
  });

  test("is closed in the afternoon and just before midnight", () => {
    assert.equal(isWindowOpen(at("2026-11-27T15:00:00"), w), false);
    assert.equal(isWindowOpen(at("2026-11-27T23:59:59"), w), false);
  });

  test("reads local time in its zone, not UTC", () => {
    // 07:30 UTC is 01:30 in Mexico City.
    assert.equal(isWindowOpen(new Date("2026-11-27T07:30:00Z"), w), true);
    assert.equal(isWindowOpen(new Date("2026-11-27T01:30:00Z"), w), false);
  });
});

describe("a window that crosses midnight, 22:00–02:00", () => {
  const w: WindowSpec = { startMinutes: 22 * 60, endMinutes: 2 * 60, timeZone: "UTC" };
  test("is open from 22:00 through 01:59:59 and closed from 02:00 to 21:59:59", () => {
    assert.equal(isWindowOpen(new Date("2026-11-27T21:59:59Z"), w), false);
    assert.equal(isWindowOpen(new Date("2026-11-27T22:00:00Z"), w), true);
    assert.equal(isWindowOpen(new Date("2026-11-27T23:59:59Z"), w), true);
    assert.equal(isWindowOpen(new Date("2026-11-28T00:00:00Z"), w), true);
    assert.equal(isWindowOpen(new Date("2026-11-28T01:59:59Z"), w), true);
    assert.equal(isWindowOpen(new Date("2026-11-28T02:00:00Z"), w), false);
  });
});

describe("00:00–24:00", () => {
  test("is always open and never changes", () => {
    const w: WindowSpec = { startMinutes: 0, endMinutes: 1440, timeZone: "Europe/Madrid" };
    for (const t of ["2026-11-27T00:00:00Z", "2026-11-27T12:34:56Z", "2026-11-27T23:59:59Z"]) assert.equal(isWindowOpen(new Date(t), w), true);
    assert.equal(nextWindowChange(new Date(), w), null);
  });
});

describe("across daylight-saving changes (America/New_York)", () => {
  const w = night("America/New_York");

  test("on the spring-forward night (2026-03-08, 02:00 EST → 03:00 EDT) the window still opens at 01:00 EST and closes at 06:00 EDT", () => {
    assert.equal(isWindowOpen(new Date("2026-03-08T05:59:59Z"), w), false); // 00:59:59 EST
    assert.equal(isWindowOpen(new Date("2026-03-08T06:00:00Z"), w), true); // 01:00 EST
    assert.equal(isWindowOpen(new Date("2026-03-08T07:00:00Z"), w), true); // 03:00 EDT
    assert.equal(isWindowOpen(new Date("2026-03-08T09:59:59Z"), w), true); // 05:59:59 EDT
    assert.equal(isWindowOpen(new Date("2026-03-08T10:00:00Z"), w), false); // 06:00 EDT
    const change = nextWindowChange(new Date("2026-03-08T06:30:00Z"), w);
    assert.deepEqual(change, { at: new Date("2026-03-08T10:00:00Z"), opens: false }); // a 4-hour night
  });

  test("on the fall-back night (2026-11-01, 02:00 EDT → 01:00 EST) it opens at 01:00 EDT and closes at 06:00 EST", () => {
    assert.equal(isWindowOpen(new Date("2026-11-01T04:59:59Z"), w), false); // 00:59:59 EDT
    assert.equal(isWindowOpen(new Date("2026-11-01T05:00:00Z"), w), true); // 01:00 EDT
    assert.equal(isWindowOpen(new Date("2026-11-01T06:30:00Z"), w), true); // 01:30 EST, the second time
    assert.equal(isWindowOpen(new Date("2026-11-01T10:59:59Z"), w), true); // 05:59:59 EST
    assert.equal(isWindowOpen(new Date("2026-11-01T11:00:00Z"), w), false); // 06:00 EST
    const change = nextWindowChange(new Date("2026-11-01T05:00:00Z"), w);
    assert.deepEqual(change, { at: new Date("2026-11-01T11:00:00Z"), opens: false }); // a 6-hour night
  });
});

describe("nextWindowChange", () => {
  test("from the afternoon, the next change is tonight's opening", () => {
    const change = nextWindowChange(new Date("2026-11-27T15:00:00Z"), night("UTC"));
    assert.deepEqual(change, { at: new Date("2026-11-28T01:00:00Z"), opens: true });
  });
});

describe("parseClockTime", () => {
  test("accepts HH:MM from 00:00 to 24:00 and rejects the rest", () => {
    assert.equal(parseClockTime("01:00"), 60);
    assert.equal(parseClockTime("23:59"), 1439);
    assert.equal(parseClockTime("24:00"), 1440);
    for (const bad of ["1:00", "1am", "24:01", "25:00", "12:60", "", "01:00:00"]) assert.equal(parseClockTime(bad), null, bad);
  });
});
