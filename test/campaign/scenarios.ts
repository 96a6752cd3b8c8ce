/** The campaign's scenarios, in the order they run; each is the default export of `<name>.ts`. */
export const SCENARIOS: Array<{ name: string; budgetMs: number }> = [
  { name: "chaos", budgetMs: 30 * 60_000 },
  { name: "stall", budgetMs: 5 * 60_000 },
  { name: "soak", budgetMs: 60 * 60_000 },
  { name: "host-faults", budgetMs: 6 * 60_000 },
  { name: "fuzz", budgetMs: 5 * 60_000 },
];
