// The page a provider's sign-in comes back to. It finishes the sign-in with the signed-in
// user's own token (kept by the settings page in this tab): without it, nothing is attached.
"use strict";

const PROVIDER_NAMES = { microsoft: "Microsoft 365", google: "Google", pipedrive: "the CRM" };

async function finish() {
  const out = document.getElementById("finish");
  const back = document.getElementById("back");
  const provider = location.pathname.split("/")[2] || "";
  const name = PROVIDER_NAMES[provider] || provider;
  const token = sessionStorage.getItem("contactsync.token");
  const url = location.pathname + location.search;
  // The one-time code leaves the address bar (and the history) at once.
  history.replaceState(null, "", location.pathname);
  if (!token) {
    out.textContent =
      `Nothing was attached: open Contact sync from your CRM's settings in this browser tab, ` +
      `then add the ${name} account again. Only the person who started a sign-in can finish it.`;
    return;
  }
  let answer;
  try {
    answer = await fetch(url, { method: "POST", headers: { Authorization: `Bearer ${token}` } });
  } catch (err) {
    out.textContent = `The sign-in could not be finished: ${err}`;
    return;
  }
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    const why = (body.error && body.error.message) || body.message || answer.statusText;
    out.textContent = `Nothing was attached: ${why}. Add the account again from the settings page.`;
    return;
  }
  if (provider === "pipedrive") {
    out.textContent = "The CRM is connected: contact sync may now read and write your persons.";
    return;
  }
  const account = body.account || "(unknown account)";
  out.textContent =
    `Signed in to ${name} as ${account}. ` +
    (body.same_account === false
      ? "This is another account than before: its contacts start clean. "
      : "") +
    "Nothing syncs yet: choose the folder or group, check the preview and start the sync.";
  out.dataset.account = account;
  back.href = `/settings#connection=${encodeURIComponent(body.connection_id || "")}`;
  back.textContent = `Continue with the ${name} account ${account}`;
}

finish();
