// The Contact sync settings page: plain DOM over the admin API's JSON routes, with the signed-in
// user's bearer token (handed over in the address's #token=… once, then kept in this tab only).
"use strict";

const TOKEN_KEY = "contactsync.token";
const POLL_MS = 2000;

const PROVIDERS = { microsoft: "Microsoft 365", google: "Google" };
const FOLDER_WORD = { microsoft: "folder", google: "contact group" };
const STATES = {
  configuring: "Not started",
  syncing_initial: "First sync running",
  active: "Syncing",
  stopped: "Stopped",
  paused: "Paused",
  needs_reauth: "Needs you to sign in again",
  needs_attention: "Waiting for your decision",
};
const DIRECTIONS = {
  two_way: "Both ways",
  to_crm: "Only from the address book into the CRM",
  to_provider: "Only from the CRM into the address book",
};
const POLICIES = {
  newest_wins: "The newest edit wins",
  crm_wins: "The CRM wins",
  provider_wins: "The address book wins",
};
const VISIBILITIES = {
  "": "The CRM's default",
  owner: "Owner only",
  group: "Owner's visibility group",
  company: "Entire company",
};

const page = { token: "", selected: "", cards: new Map(), ids: "", admin: false };

// --- small DOM and API helpers --------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || (body && body.message) || `the service answered ${status}`);
    this.status = status;
    this.details = error.details || {};
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${page.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new ApiError(answer.status, data);
  return data;
}

function notify(message, ok = false) {
  const box = document.getElementById("notice");
  box.className = ok ? "ok" : "";
  box.textContent = message;
  clearTimeout(notify.timer);
  if (ok) notify.timer = setTimeout(() => notify(""), 10000); // good news does not linger
}

// Every button runs its action with the notice cleared first and any refusal shown in words.
function action(run) {
  return async (event) => {
    const button = event && event.currentTarget;
    if (button) button.disabled = true;
    notify("");
    try {
      await run();
    } catch (err) {
      notify(err.message || String(err));
    } finally {
      if (button) button.disabled = false;
    }
  };
}

function when(iso) {
  if (!iso) return "never";
  const moment = new Date(iso);
  return Number.isNaN(moment.getTime()) ? iso : moment.toLocaleString();
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "unknown";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return {};
  }
}

// --- connections ----------------------------------------------------------------------------

async function refresh() {
  const { connections } = await api("GET", "/connections");
  const ids = connections.map((c) => c.id).join(",");
  const list = document.getElementById("connections");
  if (ids !== page.ids) {
    page.ids = ids;
    page.cards.clear();
    list.replaceChildren(...connections.map((c) => card(c)));
  }
  for (const view of connections) page.cards.get(view.id)?.update(view);
  document.getElementById("empty").hidden = connections.length > 0;
  if (page.selected && !page.cards.has(page.selected)) page.selected = "";
}

function card(view) {
  const provider = PROVIDERS[view.provider] || view.provider;
  const title = el("h3", { id: `title-${view.id}` });
  const status = el("div", { class: "status", "aria-live": "polite" });
  const settings = settingsForm(view);
  const preview = el("div", { class: "preview", "aria-live": "polite" });
  const buttons = {
    preview: el("button", { type: "button", class: "secondary", text: "Preview" }),
    start: el("button", { type: "button", text: "Start sync" }),
    stop: el("button", { type: "button", class: "secondary", text: "Stop sync" }),
    reconnect: el("button", { type: "button", class: "secondary", text: "Sign in again" }),
    resync: el("button", { type: "button", class: "secondary", text: "Resync everything" }),
    troubleshoot: el("button", { type: "button", class: "secondary", text: "Troubleshoot" }),
  };
  const path = `/connections/${encodeURIComponent(view.id)}`;
  buttons.preview.addEventListener(
    "click",
    action(async () => {
      preview.replaceChildren(el("p", { class: "muted", text: "Working out what would happen…" }));
      try {
        preview.replaceChildren(previewView(await api("GET", `${path}/preview`), provider));
      } catch (err) {
        preview.replaceChildren();
        throw err;
      }
    }),
  );
  buttons.start.addEventListener(
    "click",
    action(async () => {
      update(await api("POST", `${path}/start`));
      preview.replaceChildren(); // what it would do is now what it does
    }),
  );
  buttons.stop.addEventListener("click", action(async () => update(await api("POST", `${path}/stop`))));
  buttons.resync.addEventListener("click", action(async () => {
    await api("POST", `${path}/resync`);
    notify("A full resync is queued: both sides are listed again and re-matched.", true);
  }));
  buttons.reconnect.addEventListener("click", action(() => signInAgain(view.id)));
  buttons.troubleshoot.addEventListener("click", () => troubleshoot(view.id, provider));

  const node = el(
    "article",
    { class: "card", id: `connection-${view.id}`, "aria-labelledby": `title-${view.id}` },
    title,
    status,
    settings.form,
    el("div", { class: "buttons" }, Object.values(buttons)),
    preview,
  );

  function update(fresh) {
    title.textContent =
      `${provider} — ${fresh.account || "not signed in yet"}` +
      (page.admin ? ` (user ${fresh.user_id})` : "");
    status.replaceChildren(...statusView(fresh, provider));
    settings.update(fresh);
    const running = ["syncing_initial", "active", "needs_attention"].includes(fresh.state);
    buttons.start.hidden = running || fresh.state === "needs_reauth"; // sign in again instead
    buttons.stop.hidden = !running && fresh.state !== "needs_reauth";
    buttons.resync.hidden = !running;
    buttons.preview.hidden = !fresh.account;
  }

  page.cards.set(view.id, { update });
  update(view);
  return node;
}

function statusView(view, provider) {
  const parts = [];
  const state = el("span", { class: `state ${view.state}`, text: STATES[view.state] || view.state });
  if (view.state === "needs_reauth") {
    parts.push(
      el(
        "div",
        { class: "banner bad", role: "alert" },
        el("strong", { text: `The sign-in to ${provider} has expired or was revoked. ` }),
        "Contacts stop updating until you sign in again; nothing is lost and the same account " +
          "keeps its links. ",
        el("button", { type: "button", onclick: action(() => signInAgain(view.id)) }, "Sign in again"),
      ),
    );
  }
  if (view.state === "needs_attention" && view.held) parts.push(heldView(view));
  const facts = el("dl", { class: "facts" });
  const fact = (name, value) => facts.append(el("dt", { text: name }), el("dd", {}, value));
  fact("State", state);
  if (view.state === "syncing_initial") {
    const progress = view.progress || {};
    const done = Number(progress.done || 0);
    const total = Number(progress.total || 0);
    const bar = el("progress", {
      max: total || 1,
      value: total ? done : 0,
      "aria-label": "First sync progress",
    });
    const words = total
      ? `${done} of ${total} contacts written` +
        (progress.eta_seconds !== undefined ? `, about ${duration(progress.eta_seconds)} left` : "")
      : "Reading both address books…";
    fact("Progress", el("div", {}, bar, el("span", { class: "muted", text: words })));
  }
  const folder = view.folder ? view.folder.name : `no ${FOLDER_WORD[view.provider] || "folder"} chosen`;
  fact(FOLDER_WORD[view.provider] === "contact group" ? "Contact group" : "Folder", folder);
  fact("Direction", DIRECTIONS[view.direction] || view.direction);
  fact("Last successful sync", when(view.last_success_at));
  if (view.last_error) {
    fact("Last error", `${view.last_error.message} (${when(view.last_error.at)})`);
  }
  if (view.cursor_age_seconds !== null && view.cursor_age_seconds !== undefined) {
    fact("Changes read up to", `${duration(view.cursor_age_seconds)} ago`);
  }
  if (view.subscription_expires_at) {
    fact("Change notifications renew before", when(view.subscription_expires_at));
  }
  const linked = (view.counts || {}).mapped;
  if (linked !== undefined) fact("Linked contacts", String(linked));
  parts.push(facts);
  return parts;
}

const HELD_WORDS = { delete: "Delete", create: "Create", unlink: "Unlink" };
const SIDE_WORDS = { crm: "in the CRM", provider: "in the address book" };

function heldList(changes, total) {
  // Who the held pass would change, so the decision is about people, not a number.
  if (!changes.length) return el("span", {});
  const items = changes.map((c) =>
    el("li", {
      text: `${HELD_WORDS[c.change] || c.change} ${SIDE_WORDS[c.side] || ""}: ${c.name}` +
        (c.email && c.email !== c.name ? ` <${c.email}>` : ""),
    }),
  );
  const more = total > changes.length ? el("p", { class: "muted", text: `and ${total - changes.length} more` }) : el("span", {});
  return el("details", { open: true }, el("summary", { text: "What it would change" }), el("ul", { class: "held-changes" }, ...items), more);
}

function heldView(view) {
  const held = view.held || {};
  const path = `/connections/${encodeURIComponent(view.id)}`;
  const creates = Number(held.creates || 0);
  const deletes = Number(held.deletes || 0);
  return el(
    "div",
    { class: "banner warn", role: "alert" },
    el("strong", { text: "A sync pass is on hold. " }),
    held.message || "",
    el(
      "p",
      {},
      `It would delete ${deletes} and create ${creates} contacts ` +
        `(${held.mapped_total ?? "?"} are linked now). Nothing was written.`,
    ),
    heldList(held.changes || [], deletes + creates),
    el(
      "div",
      { class: "buttons" },
      el("button", {
        type: "button",
        class: "danger",
        text: "Confirm: apply these changes",
        onclick: action(async () => {
          await api("POST", `${path}/confirm`);
          notify("Confirmed: the held pass runs now.", true);
          await refresh();
        }),
      }),
      el("button", {
        type: "button",
        class: "secondary",
        text: "Discard: keep both sides as they are",
        onclick: action(async () => {
          await api("POST", `${path}/discard`);
          notify("Discarded: nothing was changed.", true);
          await refresh();
        }),
      }),
    ),
  );
}

function previewView(preview, provider) {
  const rows = [
    ["Linked (already on both sides)", preview.linked],
    ["Created in the CRM", preview.created_in_crm],
    [`Created in ${provider}`, preview.created_in_provider],
    ["Updated in the CRM", preview.updated_crm],
    [`Updated in ${provider}`, preview.updated_provider],
    ["Deleted in the CRM", preview.deleted_crm],
    [`Deleted in ${provider}`, preview.deleted_provider],
  ];
  const list = el("dl", { class: "facts" });
  for (const [name, value] of rows) list.append(el("dt", { text: name }), el("dd", { text: String(value ?? 0) }));
  for (const [why, count] of Object.entries(preview.left_out || {})) {
    list.append(el("dt", { text: "Left out" }), el("dd", { text: `${count}: ${why}` }));
  }
  return el("div", {}, el("h4", { text: "What the sync would do now" }), list);
}

function settingsForm(view) {
  const id = view.id;
  const path = `/connections/${encodeURIComponent(id)}`;
  const word = FOLDER_WORD[view.provider] || "folder";
  const select = (name, label, options) => {
    const field = el("select", { id: `${name}-${id}`, name });
    for (const [value, text] of Object.entries(options)) field.append(el("option", { value, text }));
    return [el("div", {}, el("label", { for: `${name}-${id}`, text: label }), field), field];
  };
  const [folderBox, folder] = select("folder_id", `${word[0].toUpperCase()}${word.slice(1)} to sync`, {});
  const [directionBox, direction] = select("direction", "Direction", DIRECTIONS);
  const [policyBox, policy] = select("conflict_policy", "When both sides changed", POLICIES);
  const [visibilityBox, visibility] = select(
    "visibility",
    "Who sees persons the sync creates in the CRM",
    VISIBILITIES,
  );
  const save = el("button", { type: "submit", text: "Save settings" });
  const newName = el("input", { id: `new-group-${id}`, type: "text", maxlength: 100 });
  const create = el("button", { type: "button", class: "secondary", text: `Create ${word}` });
  const createBox = el(
    "div",
    {},
    el("label", { for: `new-group-${id}`, text: `Or a new ${word} for the sync` }),
    el("div", { class: "row" }, newName, create),
  );
  const form = el(
    "form",
    { class: "settings", "aria-label": `Settings of the ${PROVIDERS[view.provider]} connection` },
    folderBox,
    createBox,
    directionBox,
    policyBox,
    visibilityBox,
    el("div", {}, save),
  );
  let loadedFolders = false;
  let touched = false;
  form.addEventListener("change", () => {
    touched = true;
  });

  async function loadFolders(current) {
    loadedFolders = true;
    try {
      const { groups } = await api("GET", `${path}/groups`);
      folder.replaceChildren(
        el("option", { value: "", text: `Choose a ${word}…` }),
        ...groups.map((g) => el("option", { value: g.id, text: g.name })),
      );
      if (current) folder.value = current;
    } catch (err) {
      folder.replaceChildren(el("option", { value: "", text: `Could not list: ${err.message}` }));
      loadedFolders = false;
    }
  }

  create.addEventListener(
    "click",
    action(async () => {
      const made = await api("POST", `${path}/groups`, { name: newName.value });
      await loadFolders(made.id);
      touched = true;
      newName.value = "";
      notify(`Created “${made.name}”: save the settings to sync it.`, true);
    }),
  );
  form.addEventListener(
    "submit",
    action(async () => {
      const body = {
        direction: direction.value,
        conflict_policy: policy.value,
      };
      if (visibility.value) body.visibility = visibility.value;
      if (folder.value) body.folder_id = folder.value;
      const fresh = await api("PATCH", path, body);
      touched = false;
      page.cards.get(id)?.update(fresh);
      notify("Settings saved.", true);
    }),
  );
  form.addEventListener("submit", (event) => event.preventDefault());

  function update(fresh) {
    if (touched) return; // never overwrite what the user is choosing
    direction.value = fresh.direction;
    policy.value = fresh.conflict_policy;
    visibility.value = fresh.visibility || "";
    const current = fresh.folder ? fresh.folder.id : "";
    if (fresh.account && !loadedFolders) loadFolders(current);
    else if (!fresh.account) folder.replaceChildren(el("option", { value: "", text: "Sign in first" }));
    else if (current) folder.value = current;
  }
  return { form, update };
}

async function addAccount(provider) {
  const created = await api("POST", "/connections", { provider });
  location.assign(created.authorization_url);
}

async function signInAgain(connectionId) {
  const answer = await api("POST", `/connections/${encodeURIComponent(connectionId)}/reconnect`);
  location.assign(answer.authorization_url);
}

// --- troubleshooting ------------------------------------------------------------------------

function troubleshoot(connectionId, provider) {
  page.selected = connectionId;
  const section = document.getElementById("troubleshoot");
  section.hidden = false;
  document.getElementById("troubleshoot-which").textContent = `(${provider})`;
  for (const id of ["find-results", "explain", "duplicates", "activity"]) {
    document.getElementById(id).replaceChildren();
  }
  document.getElementById("troubleshoot-title").focus();
}

function selectedPath() {
  return `/connections/${encodeURIComponent(page.selected)}`;
}

async function find(term) {
  const { persons } = await api("GET", `${selectedPath()}/contacts?q=${encodeURIComponent(term)}`);
  const list = document.getElementById("find-results");
  document.getElementById("explain").replaceChildren();
  if (!persons.length) {
    list.replaceChildren(el("li", { class: "muted", text: "No CRM person matches." }));
    return;
  }
  list.replaceChildren(
    ...persons.map((p) =>
      el(
        "li",
        {},
        el("strong", { text: p.name }),
        ` ${p.emails.join(", ")} · ${p.in_scope ? "yours" : p.scope_reason} · `,
        p.linked_to ? "linked" : "not linked",
        " ",
        el("button", {
          type: "button",
          class: "secondary",
          text: `Explain ${p.name}`,
          onclick: action(() => explain(p.crm_person_id, p.name)),
        }),
      ),
    ),
  );
}

async function explain(crmPersonId, name) {
  const answer = await api(
    "GET",
    `${selectedPath()}/explain?crm_person_id=${encodeURIComponent(crmPersonId)}`,
  );
  const box = document.getElementById("explain");
  box.replaceChildren(
    el("h4", { text: `${name}: ${answer.syncing ? "syncing" : "not syncing"}` }),
    el("ul", { class: "reasons" }, answer.reasons.map((r) => el("li", { text: r }))),
  );
  if (answer.history && answer.history.length) {
    box.append(
      el("details", {}, el("summary", { text: "History" }), activityTable(answer.history, false)),
    );
  }
}

async function loadDuplicates() {
  const { clusters, ambiguous_matches: ambiguous } = await api("GET", `${selectedPath()}/duplicates`);
  const box = document.getElementById("duplicates");
  if (!clusters.length && !ambiguous.length) {
    box.replaceChildren(el("p", { class: "muted", text: "No duplicates found." }));
    return;
  }
  box.replaceChildren(
    ...clusters.map((cluster) => {
      const keep = cluster.persons.find((p) => p.id === cluster.suggested_keep) || cluster.persons[0];
      const others = cluster.crm_ids.filter((i) => i !== keep.id);
      return el(
        "div",
        { class: "card cluster" },
        el("p", {}, `These CRM persons look like one person (${cluster.keys.join(", ")}):`),
        el(
          "ul",
          {},
          cluster.persons.map((p) =>
            el("li", { text: `${p.name} (#${p.id})${p.linked_to ? ", linked" : ""}` }),
          ),
        ),
        el("button", {
          type: "button",
          text: `Merge into ${keep.name} (#${keep.id})`,
          onclick: action(async () => {
            await api("POST", `${selectedPath()}/duplicates/merge`, { keep: keep.id, merge: others });
            notify(`Merged into ${keep.name}: one person is left, linked once.`, true);
            await loadDuplicates();
          }),
        }),
      );
    }),
    ...ambiguous.map((m) => el("p", { class: "muted", text: `Not linked, for you to decide: ${m.message}` })),
  );
}

function brief(values) {
  if (!values) return "";
  return Object.entries(values)
    .map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join("; ");
}

function activityTable(entries, withUndo) {
  const body = el("tbody");
  for (const entry of entries) {
    const undo = withUndo && entry.undoable
      ? el("button", {
          type: "button",
          class: "secondary",
          text: "Undo",
          "aria-label": `Undo: ${entry.message}`,
          onclick: action(async () => {
            await api("POST", `${selectedPath()}/activity/${encodeURIComponent(entry.id)}/undo`);
            notify("Undone: the values before this change are written back.", true);
            await loadActivity();
          }),
        })
      : "";
    body.append(
      el(
        "tr",
        {},
        el("td", { text: when(entry.at) }),
        el("td", { text: entry.kind }),
        el("td", { text: entry.message }),
        el("td", { text: brief(entry.before) }),
        el("td", { text: brief(entry.after) }),
        el("td", {}, undo),
      ),
    );
  }
  const head = el(
    "thead",
    {},
    el("tr", {}, ["When", "What", "Details", "Before", "After", ""].map((h) => el("th", { scope: "col", text: h }))),
  );
  return el("div", { class: "table-wrap" }, el("table", {}, head, body));
}

async function loadActivity() {
  const { entries } = await api("GET", `${selectedPath()}/activity?limit=30`);
  const box = document.getElementById("activity");
  box.replaceChildren(
    entries.length ? activityTable(entries, true) : el("p", { class: "muted", text: "Nothing yet." }),
  );
}

// --- start ----------------------------------------------------------------------------------

function takeToken() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) sessionStorage.setItem(TOKEN_KEY, hash.get("token"));
  page.selected = hash.get("connection") || "";
  if (location.hash) history.replaceState(null, "", location.pathname);
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function main() {
  page.token = takeToken();
  if (!page.token) {
    notify("You are not signed in: open Contact sync from your CRM's settings.");
    for (const b of document.querySelectorAll("button")) b.disabled = true;
    return;
  }
  const who = claims(page.token);
  page.admin = who.role === "admin";
  document.getElementById("who").textContent =
    `Signed in as user ${who.sub || "?"} of company ${who.company_id || "?"}` +
    (who.role === "admin" ? " (company admin: you see the company's connections)" : "");
  document.getElementById("add-microsoft").addEventListener("click", action(() => addAccount("microsoft")));
  document.getElementById("add-google").addEventListener("click", action(() => addAccount("google")));
  document.getElementById("connect-crm").addEventListener(
    "click",
    action(async () => location.assign((await api("POST", "/crm/connect")).authorization_url)),
  );
  document.getElementById("find-form").addEventListener("submit", (event) => {
    event.preventDefault();
    action(() => find(document.getElementById("find-term").value))();
  });
  document.getElementById("load-duplicates").addEventListener("click", action(loadDuplicates));
  document.getElementById("load-activity").addEventListener("click", action(loadActivity));
  try {
    await refresh();
  } catch (err) {
    notify(err.message);
  }
  const chosen = page.selected && document.getElementById(`connection-${page.selected}`);
  if (chosen) chosen.scrollIntoView();
  setInterval(() => refresh().catch((err) => notify(err.message)), POLL_MS);
}

main();
