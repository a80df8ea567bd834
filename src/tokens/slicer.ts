/** Time-slicing: long counts give the event loop back every few milliseconds. */
import { performance } from "node:perf_hooks";

// Counting yields once it has held the event loop this long. The limit we promise is 50 ms; the
// longest steps that cannot be split (allocating a 40 MB array for a 10 MB piece, and the
// garbage collection that can set off) take up to ~25 ms here, so 5 ms slices leave a margin.
// A yield costs ~0.1 ms, so this gives up about 2% of throughput.
const SLICE_MS = 5;

/** Tracks how long the current synchronous stretch has run and yields when it is too long. */
export class Slicer {
  private sliceStartMs = performance.now();

  due(): boolean {
    return performance.now() - this.sliceStartMs >= SLICE_MS;
  }

  async yield(): Promise<void> {
    // setImmediate, not a resolved promise: timers, I/O and signal handlers get to run.
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.sliceStartMs = performance.now();
  }
}
