// Envoy's normalize_path (Istio's default pathNormalization BASE, RFC 3986 §6):
// percent-encoded unreserved characters decoded, other escapes upper-cased, dot
// segments removed. Istio applies it before authorization, so that "/a/../admin"
// or "/%61dmin" is judged (and forwarded) as "/admin".

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** The normalized path; undefined when it cannot be (an escape that is not two hex digits: Envoy answers 400). */
export function normalizePath(path: string): string | undefined {
  let decoded = path;
  if (path.includes("%")) {
    let out = "";
    for (let i = 0; i < path.length; i++) {
      const c = path[i]!;
      if (c !== "%") {
        out += c;
        continue;
      }
      const hex = path.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
      const ch = String.fromCharCode(parseInt(hex, 16));
      out += UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
      i += 2;
    }
    decoded = out;
  }
  if (!decoded.includes("/.") && !decoded.startsWith(".")) return decoded;
  // RFC 3986 §5.2.4 remove_dot_segments, on the segments.
  const segments = decoded.split("/");
  const out: string[] = [];
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === ".") {
      if (last) out.push("");
    } else if (s === "..") {
      if (out.length > 1) out.pop();
      if (last) out.push("");
    } else out.push(s);
  }
  const joined = out.join("/");
  return joined.startsWith("/") ? joined : `/${joined}`;
}
