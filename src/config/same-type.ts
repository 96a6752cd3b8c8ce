/**
 * `true` when A and B are the same type, `false` otherwise: not merely
 * assignable, so a field added, made optional or widened on one side alone
 * counts. A schema's output is checked against the core type it produces
 * with `type _Check = Expect<SameType<z.output<typeof Schema>, CoreType>>`.
 */
export type SameType<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

/** Compiles only when given `true`. */
export type Expect<T extends true> = T;
