// The real folder picker, for bench_download.py --real-folder: a "Choose folder" button
// (clicked by Playwright: a user gesture) that asks showDirectoryPicker for a read-write
// folder and keeps its handle in window.pickedHandle. body[data-picked] is then "ok", or
// says what went wrong.

export function addPickButton() {
  const button = document.createElement("button");
  button.id = "pick";
  button.textContent = "Choose folder";
  button.addEventListener("click", async () => {
    delete document.body.dataset.picked;
    try {
      const handle = await window.showDirectoryPicker({ mode: "readwrite" });
      const state = await handle.queryPermission({ mode: "readwrite" });
      window.pickedHandle = handle;
      document.body.dataset.picked = state === "granted" ? "ok" : `permission ${state}`;
    } catch (e) {
      document.body.dataset.picked = `${e.name}: ${e.message}`;
    }
  });
  document.body.append(button);
}
