/**
 * What every benchmark does at its end: write its result as JSON to bench/results/<name>.json and
 * print a table. Shared so every file in bench/ reports the same way.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const RESULTS_DIR = fileURLToPath(new URL('../results/', import.meta.url));

/** Writes `data` (pretty JSON) to bench/results/<name>.json; returns the path written. */
export function writeResults(name: string, data: unknown): string {
  if (!/^[a-z0-9][a-z0-9._-]*$/i.test(name)) throw new Error(`result name '${name}' must be a plain file name (letters, digits, . _ -)`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = `${RESULTS_DIR}${name}.json`;
  writeFileSync(path, `${JSON.stringify(data, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`);
  return path;
}

export type Cell = string | number | bigint | boolean | null | undefined;

/**
 * Prints rows as an aligned table; the columns are the keys of the first row (or `columns`).
 * Numbers are right-aligned; a column holding any non-integer shows all its numbers with
 * `digits` decimals (default 1; or per column by name), so a column reads alike top to bottom.
 */
export function printTable(
  rows: readonly Record<string, Cell>[],
  o: { columns?: string[]; digits?: number | Record<string, number>; title?: string } = {},
): void {
  const columns = o.columns ?? Object.keys(rows[0] ?? {});
  const digitsOf = (col: string): number => (typeof o.digits === 'number' ? o.digits : o.digits?.[col] ?? 1);
  const numeric = columns.map((col) => rows.some((r) => typeof r[col] === 'number' || typeof r[col] === 'bigint'));
  const fractional = columns.map((col) => rows.some((r) => typeof r[col] === 'number' && !Number.isInteger(r[col])));
  const text = (c: Cell, i: number): string =>
    c === null || c === undefined ? '-'
      : typeof c === 'number' ? (fractional[i] ? c.toFixed(digitsOf(columns[i]!)) : String(c))
        : String(c);
  const cells = rows.map((r) => columns.map((col, i) => text(r[col], i)));
  const widths = columns.map((col, i) => Math.max(col.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[]): string =>
    values.map((v, i) => (numeric[i] ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join('  ').trimEnd();
  if (o.title) console.log(o.title);
  console.log(line(columns));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const row of cells) console.log(line(row));
}

/** The median of a non-empty list. */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of an empty list');
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
