// OPFS helpers shared by the bench pages: empty the origin-private file system,
// and count the .dcm files (and their bytes) under a folder without reading them.

export async function clearOpfs() {
  const root = await navigator.storage.getDirectory();
  const names = [];
  for await (const name of root.keys()) names.push(name);
  for (const name of names) await root.removeEntry(name, { recursive: true });
  return names.length;
}

export async function freshFolder(name) {
  await clearOpfs();
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle(name, { create: true });
}

export async function countFiles(name) {
  const root = await navigator.storage.getDirectory();
  const dir = await root.getDirectoryHandle(name);
  let dcmFiles = 0, dcmBytes = 0;
  const other = [];
  async function walk(d, prefix) {
    for await (const [n, h] of d.entries()) {
      if (h.kind === "directory") { await walk(h, prefix + n + "/"); continue; }
      if (!n.endsWith(".dcm")) { other.push(prefix + n); continue; }
      dcmFiles += 1;
      dcmBytes += (await h.getFile()).size;
    }
  }
  await walk(dir, "");
  return { dcmFiles, dcmBytes, other };
}
