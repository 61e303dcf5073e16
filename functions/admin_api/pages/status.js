// The public status page: per provider working or degraded, from GET /public/status (no sign-in).
"use strict";

async function show() {
  const summary = document.getElementById("summary");
  let status;
  try {
    const answer = await fetch("/public/status");
    if (!answer.ok) throw new Error(`the status service answered ${answer.status}`);
    status = await answer.json();
  } catch (err) {
    summary.textContent = `The status could not be read: ${err.message}`;
    return;
  }
  summary.textContent = status.degraded
    ? "Some contact syncs are slower or failing right now: see below. Nothing is lost; " +
      "changes are synced once the provider recovers."
    : "All contact syncs are working.";
  const list = document.getElementById("providers");
  list.replaceChildren(
    ...status.providers.map((p) => {
      const item = document.createElement("li");
      item.dataset.provider = p.provider;
      const name = document.createElement("span");
      name.textContent = p.name;
      const state = document.createElement("span");
      state.className = p.status;
      state.textContent = p.status === "degraded" ? "Degraded" : "Working";
      item.append(name, state);
      return item;
    }),
  );
  document.getElementById("as-of").textContent =
    `From the sync passes of the last ${status.window_minutes} minutes, as of ` +
    `${new Date(status.as_of).toLocaleString()}.`;
}

show();
setInterval(show, 30000);
