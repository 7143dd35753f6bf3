// Numbers as people read them, shared by the page and the custom element.
export function fmtBytes(n) {
  if (n == null || !isFinite(n)) return "";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

export function fmtTime(s) {
  if (!isFinite(s)) return "";
  s = Math.max(0, Math.round(s));
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

export function splitUIDs(text) {
  return String(text ?? "").split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}
