/** The targets, as each bench section reports them. */
import { printTable } from "./table";

export interface Check {
  target: string;
  measured: string;
  met: boolean;
}

/** Prints every section's checks in one closing table. */
export function printChecks(checks: Check[]): void {
  printTable(
    "Targets",
    ["target", "measured", "met"],
    checks.map((c) => [c.target, c.measured, c.met ? "met" : "NOT MET"]),
  );
}
