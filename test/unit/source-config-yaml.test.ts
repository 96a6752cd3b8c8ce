import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { stringify, type ToStringOptions } from "yaml";
import { readPlain, readYaml } from "../../src/config/source-config.js";

/**
 * tidemark.yaml is read by js-yaml when it can (for speed) and by the `yaml`
 * library otherwise (for its errors and limits): what both read must be the
 * same data, or a file's meaning would hang on which library read it.
 */
const scalar = fc.oneof(
  fc.string(),
  fc.constantFrom(
    "0o17",
    "017",
    "0x1F",
    "1_000",
    "0b101",
    "-.5",
    "+.inf",
    ".NaN",
    "~",
    "Null",
    "TRUE",
    "yes",
    "on",
    "1:20",
    "2001-12-14",
    "1e3",
    "-0",
  ),
  fc.integer(),
  fc.double({ noNaN: true }),
  fc.boolean(),
  fc.constant(null),
);
const value = fc.letrec((tie) => ({
  node: fc.oneof(
    { depthSize: "small" },
    scalar,
    fc.array(tie("node"), { maxLength: 4 }),
    fc.dictionary(fc.string(), tie("node"), { maxKeys: 4 }),
  ),
})).node;
const style = fc.record({
  collectionStyle: fc.constantFrom("any", "block", "flow"),
  defaultStringType: fc.constantFrom("PLAIN", "QUOTE_DOUBLE", "QUOTE_SINGLE", "BLOCK_LITERAL", "BLOCK_FOLDED"),
  defaultKeyType: fc.constantFrom(null, "PLAIN", "QUOTE_DOUBLE", "QUOTE_SINGLE"),
  indent: fc.integer({ min: 1, max: 4 }),
});
/** Characters YAML gives a meaning, spliced in: most cuts make a file one library or both refuse. */
const cut = fc.record({
  at: fc.nat(),
  drop: fc.integer({ min: 0, max: 3 }),
  insert: fc.array(
    fc.constantFrom(
      ":",
      "-",
      " ",
      "  ",
      "\n",
      "\t",
      "[",
      "]",
      "{",
      "}",
      ",",
      "#",
      "'",
      '"',
      "?",
      "|",
      ">",
      "&a",
      "*a",
      "!",
      "!!str",
      "%",
      "\\",
      "---",
      "...",
    ),
    {
      maxLength: 3,
    },
  ),
});
// Mostly mappings, as tidemark.yaml is one: js-yaml reads nothing else.
const top = fc.oneof({ weight: 4, arbitrary: fc.dictionary(fc.string(), value, { maxKeys: 5 }) }, { weight: 1, arbitrary: value });
const text = fc.tuple(top, style, fc.array(cut, { maxLength: 3 })).map(([data, options, cuts]) => {
  let out = stringify(data, options as ToStringOptions);
  for (const { at, drop, insert } of cuts) {
    const where = out.length === 0 ? 0 : at % out.length;
    out = out.slice(0, where) + insert.join("") + out.slice(where + drop);
  }
  return out;
});

describe("tidemark.yaml read two ways", () => {
  // js-yaml may read a file that yaml refuses over a formality (a comment's spacing, a key's line): the file then means what js-yaml read, always.
  it("reads what both libraries read as the yaml library reads it", () => {
    const runs = Number(process.env.YAML_RUNS ?? 2000);
    let both = 0;
    fc.assert(
      fc.property(text, (input) => {
        const plain = readPlain(input);
        const yaml = readYaml(input);
        if (plain && "data" in yaml) {
          both++;
          expect(plain.data).toEqual(yaml.data);
        }
      }),
      { seed: Number(process.env.YAML_SEED ?? 20261206), numRuns: runs },
    );
    // Most drawn files are plain data, which js-yaml reads: the comparison is not vacuous.
    expect(both).toBeGreaterThan(runs / 4);
  });
});
