// Makes a running job's progress move: asks the API every second, redraws the stage, the bar and the shards,
// and reloads the page once the job has ended (the page reads the same without this script).
(function () {
  "use strict";
  const section = document.getElementById("progress");
  if (!section || section.dataset.live !== "1") return;
  const job = section.dataset.job;
  const text = (id, value) => { const node = document.getElementById(id); if (node) node.textContent = value; };
  async function look() {
    let data;
    try {
      const answer = await fetch(`/api/v1/jobs/${encodeURIComponent(job)}/progress`, { credentials: "same-origin" });
      if (!answer.ok) return;
      data = await answer.json();
    } catch (err) { return; }
    if (data.state && data.state !== "queued" && data.state !== "running") { window.location.reload(); return; }
    text("state", data.state); text("stage", data.stage); text("count", `${data.current}/${data.total}`);
    const bar = document.getElementById("bar");
    if (bar) { bar.max = data.total || 1; bar.value = data.current; }
    const shards = data.shards || { total: 0, done: {}, running: [] };
    text("shards-done", Object.keys(shards.done).length); text("shards-total", shards.total);
    text("shards-running", shards.running.length ? shards.running.join(", ") : "none");
    const list = document.getElementById("shards");
    if (list) {
      while (list.children.length < shards.total) {
        const item = document.createElement("li"); item.textContent = list.children.length; list.appendChild(item);
      }
      Array.from(list.children).forEach((item, index) => {
        const done = shards.done[String(index)];
        item.className = done ? (done.error ? "failed" : "done") : (shards.running.includes(index) ? "running" : "waiting");
      });
    }
  }
  setInterval(look, 1000);
  look();
})();
