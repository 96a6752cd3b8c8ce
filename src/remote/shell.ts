/**
 * Quotes one argument for POSIX sh. Every remote command line is assembled
 * from quoted words, so a name from a config tree is always data, never code.
 */
export function quote(word: string): string {
  if (word.includes("\0")) throw new Error("a shell word cannot contain a NUL byte");
  // A leading '-' is not shell syntax, and quotes would not stop a program reading it as an option:
  // builders put `--` before every operand that comes from data.
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** Joins words into one command line, quoting each. */
export function command(...words: string[]): string {
  return words.map(quote).join(" ");
}
