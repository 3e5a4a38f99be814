// A desktop in the browser (feed/webclient.py): loads the vendored IronRDP web client, asks our server for a
// single-use web ticket (same-origin POST with the CSRF token), and connects through the gateway's RDCleanPath
// transport with the ticket as proxy_auth, never in a URL. xrdp then shows its login dialog: the web client
// sends no auto-logon, so the password is typed there.
"use strict";

const root = document.getElementById("session");
const config = root.dataset;
const screen = document.getElementById("session-screen");
const statusLine = document.getElementById("session-status");
const buttons = {
  fullscreen: document.getElementById("fullscreen"),
  ctrlAltDel: document.getElementById("ctrl-alt-del"),
  copy: document.getElementById("clipboard-copy"),
  paste: document.getElementById("clipboard-paste"),
  disconnect: document.getElementById("disconnect"),
};
// The gateway closes a refused or failed RDCleanPath WebSocket with the reason "<error code> activity <id>".
const CLOSE_REASON = /^([A-Za-z]{1,80}) activity ([0-9a-fA-F-]{36})$/;
const IRON_ERROR_RDCLEANPATH = 4;
// Failures the browser sees before the gateway has recorded anything carry codes of the page's own, named
// "Browser…" so they are never mistaken for a Connection's (docs/errors.md); the README lists them.
const BROWSER_CODES = {
  unreachable: ["BrowserGatewayUnreachable", "The gateway cannot be reached from this browser. Check your network, or ask your administrator whether the gateway's address is reachable from here."],
  failed: ["BrowserConnectionFailed", "The connection failed before the gateway recorded it. Try again; if it keeps failing, use the connection file instead."],
  load: ["BrowserClientLoadFailed", "The browser client did not load: this browser may not support WebAssembly. Use the connection file instead."],
  server: ["BrowserTicketRefused", "The server did not give this page a ticket. Reload the page and try again."],
};

let ui = null;
let attempt = null; // {gatewayUrl, since, close: {code, reason} | null, closed: Promise}
let ending = false;

function setState(state, text) {
  root.dataset.state = state;
  statusLine.textContent = text;
  const live = state === "connected";
  for (const button of [buttons.ctrlAltDel, buttons.copy, buttons.paste, buttons.disconnect]) {
    button.disabled = !live;
  }
}

function showActivity(activityId) {
  if (!activityId) return;
  const element = document.getElementById("activity-id");
  element.textContent = activityId;
  element.setAttribute("data-activity-id", activityId);
  document.getElementById("session-activity").hidden = false;
}

function showError(code, message, activityId) {
  const element = document.getElementById("error-code");
  element.textContent = code;
  element.setAttribute("data-error-code", code);
  document.getElementById("error-message").textContent = message;
  if (activityId) {
    showActivity(activityId);
    const hint = document.getElementById("error-activity");
    hint.querySelector("code").textContent = activityId;
    hint.hidden = false;
  }
  document.getElementById("session-error").hidden = false;
  screen.hidden = true;
  setState("failed", "Not connected");
}

// The backend opens its WebSocket with the page's global constructor: watching the one to our gateway is how
// the page reads the close reason (our error code and activity id) that the client itself does not expose.
function watchGatewaySockets() {
  const Native = window.WebSocket;
  class WatchedWebSocket extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      const current = attempt;
      if (current && String(url) === current.gatewayUrl) {
        current.socket = this;
        current.closed = new Promise((resolve) => {
          this.addEventListener("open", () => { current.opened = true; });
          this.addEventListener("close", (event) => {
            // A refusal's reason names our code; a later socket's plain close must not hide it.
            const kept = current.close && CLOSE_REASON.test(current.close.reason || "");
            if (!kept) current.close = { code: event.code, reason: event.reason };
            resolve();
          });
        });
      }
    }
  }
  window.WebSocket = WatchedWebSocket;
}

async function getJson(url, params) {
  const response = await fetch(url + "?" + new URLSearchParams(params), { credentials: "same-origin" });
  return response.ok ? response.json() : null;
}

// What became of this attempt's connection, as the gateway recorded it.
async function recordedConnection(params) {
  try {
    return await getJson(config.connectionUrl, params);
  } catch (error) {
    return null;
  }
}

async function lookUpActivity(current) {
  // The record is opened when the gateway admits the ticket, before the host answers: it is there by now.
  const found = await recordedConnection({ since: current.since });
  if (found && attempt === current) showActivity(found.activity_id);
}

// What the client itself says: its error kind, and the HTTP status of an RDCleanPath error.
function describeIronError(error) {
  if (error && typeof error.kind === "function") {
    const details = error.kind() === IRON_ERROR_RDCLEANPATH && typeof error.rdcleanpathDetails === "function"
      ? error.rdcleanpathDetails() : undefined;
    return details && details.httpStatusCode ? `(client error ${error.kind()}, HTTP ${details.httpStatusCode})`
      : `(client error ${error.kind()})`;
  }
  return `(${error})`;
}

async function ended(current, error) {
  if (ending || attempt !== current) return;
  ending = true;
  if (current.closed) {
    // The error can surface before the socket's close event: wait for it briefly.
    await Promise.race([current.closed, new Promise((resolve) => setTimeout(resolve, 1500))]);
  }
  const match = current.close ? CLOSE_REASON.exec(current.close.reason || "") : null;
  const params = match ? { activity: match[2], code: match[1] } : { since: current.since };
  const record = await recordedConnection(params);
  const code = (record && record.error_code) || (match && match[1]) || "";
  const activityId = (record && record.activity_id) || (match && match[2]) || "";
  if (code) {
    showError(code, (record && record.message) || "", activityId);
  } else if (error && !current.userEnded) {
    console.error("The remote desktop client stopped:", error && error.backtrace ? error.backtrace() : error);
    const [browserCode, text] = current.closed && !current.opened ? BROWSER_CODES.unreachable : BROWSER_CODES.failed;
    showError(browserCode, `${text} ${describeIronError(error)}`, activityId);
  } else {
    showActivity(activityId);
    screen.hidden = true;
    document.getElementById("session-ended").hidden = false;
    setState("ended", "Disconnected");
  }
}

function desktopSize() {
  const box = screen.getBoundingClientRect();
  return { width: Math.max(640, Math.floor(box.width)), height: Math.max(480, Math.floor(box.height)) };
}

async function connect() {
  setState("connecting", "Asking for a ticket…");
  let data;
  try {
    const response = await fetch(config.ticketUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": config.csrfToken, "Accept": "application/json" },
    });
    data = await response.json().catch(() => ({}));
    if (!response.ok) {
      showError(data.error_code || BROWSER_CODES.server[0], data.message || BROWSER_CODES.server[1], "");
      return;
    }
  } catch (error) {
    showError(...BROWSER_CODES.server, "");
    return;
  }
  const current = { gatewayUrl: data.gateway_url, since: data.issued_at, opened: false, close: null, closed: null,
                    socket: null, userEnded: false };
  attempt = current;
  setState("connecting", "Connecting…");
  const builder = ui.configBuilder()
    .withUsername(data.username)
    .withPassword("")
    .withDestination(data.destination)
    .withProxyAddress(data.gateway_url)
    .withAuthToken(data.ticket)
    .withDesktopSize(desktopSize());
  let session;
  try {
    session = await ui.connect(builder.build());
  } catch (error) {
    await ended(current, error);
    return;
  }
  ui.setVisibility(true);
  setState("connected", "Connected");
  lookUpActivity(current);
  try {
    await session.run();
    await ended(current, null);
  } catch (error) {
    await ended(current, error);
  }
}

// The client's shutdown asks the server to end the session and waits for it; a server that does not answer
// (xrdp after its session ended) would keep the page connected, so the gateway's WebSocket is closed after
// a moment whatever happens: the gateway then ends the connection and records it.
const DISCONNECT_GRACE_MS = 2000;

function disconnect() {
  if (!ui) return;
  const current = attempt;
  buttons.disconnect.disabled = true;
  setState("disconnecting", "Disconnecting…");
  current.userEnded = true;
  ui.shutdown();
  setTimeout(() => {
    if (current.socket && current.socket.readyState <= 1) current.socket.close(1000, "disconnected by the user");
  }, DISCONNECT_GRACE_MS);
}

function wireToolbar() {
  buttons.fullscreen.addEventListener("click", () => {
    if (document.fullscreenElement) {
      document.exitFullscreen();
    } else {
      root.requestFullscreen().catch(() => {});
    }
  });
  document.addEventListener("fullscreenchange", () => {
    buttons.fullscreen.textContent = document.fullscreenElement ? "Leave full screen" : "Full screen";
  });
  buttons.ctrlAltDel.addEventListener("click", () => ui && ui.ctrlAltDel());
  buttons.copy.addEventListener("click", () => ui && ui.saveRemoteClipboardData().catch(() => {}));
  buttons.paste.addEventListener("click", () => ui && ui.sendClipboardData().catch(() => {}));
  buttons.disconnect.addEventListener("click", disconnect);
  for (const id of ["reconnect", "reconnect-ended"]) {
    // A web ticket is single use: connecting again starts afresh, with a new one.
    document.getElementById(id).addEventListener("click", () => window.location.reload());
  }
}

async function start() {
  wireToolbar();
  watchGatewaySockets();
  let backend;
  try {
    [backend] = await Promise.all([import(config.backendUrl), import(config.componentUrl)]);
    await backend.init("OFF");
  } catch (error) {
    console.error("The browser client did not load:", error);
    showError(...BROWSER_CODES.load, "");
    return;
  }
  const element = document.createElement("iron-remote-desktop");
  element.setAttribute("scale", "fit");
  element.setAttribute("flexcenter", "true");
  element.module = backend.Backend;
  const ready = new Promise((resolve) => {
    element.addEventListener("ready", (event) => resolve(event.detail.irgUserInteraction), { once: true });
  });
  screen.append(element);
  ui = await ready;
  ui.setEnableClipboard(true);
  root.dataset.component = "ready";
  await connect();
}

start();
