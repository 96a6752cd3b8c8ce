/**
 * What one benchmark measured, for `docs/benchmarks.md`: the default export of
 * `bench/<name>.ts` is a `Bench`, run by `bench/main.ts` in a process of its own.
 */
export interface BenchSection {
  title: string;
  /** What was measured and how, in a sentence or two. */
  setup: string;
  header: string[];
  rows: string[][];
  /** Ratios, goals and caveats, each a sentence, all computed from the run. */
  notes: string[];
}

export type Bench = (log: (line: string) => void) => Promise<BenchSection[]>;
