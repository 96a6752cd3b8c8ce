/** The campaign's scenarios, in the order they run; each is the default export of `<name>.ts`. */
export const SCENARIOS: Array<{ name: string; budgetMs: number }> = [];
