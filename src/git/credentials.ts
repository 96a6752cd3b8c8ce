/** Splits `https://user:secret@host/repo.git` into a URL safe to print and store, and the credentials. */
export function splitCredentials(url: string): { url: string; auth?: { username: string; password: string } } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { url };
  }
  if (!parsed.username && !parsed.password) return { url };
  const auth = { username: decodeURIComponent(parsed.username), password: decodeURIComponent(parsed.password) };
  parsed.username = "";
  parsed.password = "";
  return { url: parsed.toString(), auth };
}
