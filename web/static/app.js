// The browser editor's driver: the WebSocket, the timer and the text area. Everything about
// the protocol happens in the WebClient (web/src/lib.rs), the same client node the terminal
// client runs, compiled to WebAssembly. The link names the document in its query
// (`?doc=notes`) and carries the token in its fragment (`#token=…`), which browsers never send
// to a server.
import init, { WebClient } from "/pkg/dsync_web.js";

const $ = (id) => document.getElementById(id);
const area = $("text");

const query = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
const doc = query.get("doc") || "notes";
const token = fragment.get("token") || "";
const name = (query.get("name") || "").slice(0, 64);

function randomId() {
  const bytes = new Uint8Array(6);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
const clientId = "web-" + randomId();

$("doc").textContent = doc;
$("me").textContent = name || clientId;

let client = null;
let socket = null;
let opened = false;
let timer = null;
let wsUrl = null;

function notice(text) {
  const li = document.createElement("li");
  li.textContent = text;
  $("notices").prepend(li);
  while ($("notices").children.length > 20) $("notices").lastChild.remove();
}

// Send what the client queued; frames queued while the socket is down are dropped (the engine
// resends what matters once connected again).
function flush() {
  for (let f = client.next_frame(); f !== undefined; f = client.next_frame()) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(f);
  }
}

// Show the engine's text, keeping the user's selection where it was in the text around it:
// the change is taken as one replaced span between a common prefix and suffix.
function showText() {
  const before = area.value;
  const after = client.text();
  if (before === after) return;
  let p = 0;
  while (p < before.length && p < after.length && before[p] === after[p]) p++;
  let s = 0;
  while (s < before.length - p && s < after.length - p &&
         before[before.length - 1 - s] === after[after.length - 1 - s]) s++;
  const map = (x) => (x <= p ? x : x >= before.length - s ? x + after.length - before.length : after.length - s);
  const [a, b] = [map(area.selectionStart), map(area.selectionEnd)];
  area.value = after;
  if (document.activeElement === area) area.setSelectionRange(a, b);
}

function render() {
  const state = client.state();
  const badge = $("state");
  badge.textContent = state;
  badge.className = "state " + state;
  document.body.dataset.state = state;
  area.readOnly = state === "read-only";
  area.disabled = state === "refused";
  const n = client.unacknowledged();
  $("unacked").textContent = n > 0 ? `${n} unsaved` : "saved";
  for (let m = client.next_notice(); m !== undefined; m = client.next_notice()) notice(m);
}

// A colour per client, the same on every page.
function colour(id) {
  let h = 0;
  for (const ch of id) h = (h * 31 + ch.codePointAt(0)) % 360;
  return `hsl(${h}, 70%, 40%)`;
}

// The others: listed beside the text, and as carets over it (a mirror of the text area whose
// text is transparent, with a marked span at each cursor).
function showPresence() {
  const others = JSON.parse(client.others());
  const list = $("peers");
  list.replaceChildren();
  for (const p of others) {
    const li = document.createElement("li");
    const dot = document.createElement("span");
    dot.className = "swatch";
    dot.style.background = colour(p.id);
    li.append(dot, `${p.name || p.id}${p.user ? " (" + p.user + ")" : ""} — line ${p.line}, column ${p.column}`);
    li.dataset.id = p.id;
    list.append(li);
  }
  const text = area.value;
  const mirror = $("mirror");
  mirror.replaceChildren();
  let at = 0;
  for (const p of [...others].sort((x, y) => x.cursor - y.cursor)) {
    const pos = Math.min(p.cursor, text.length);
    mirror.append(text.slice(at, pos));
    const caret = document.createElement("span");
    caret.className = "caret";
    caret.dataset.name = p.name || p.id;
    caret.style.borderColor = caret.style.background = colour(p.id);
    mirror.append(caret);
    at = pos;
  }
  mirror.append(text.slice(at) + "\n");
  mirror.scrollTop = area.scrollTop;
}

// Our caret and selection end, in the text area's (UTF-16) offsets.
function sendPresence() {
  const back = area.selectionDirection === "backward";
  const [cursor, anchor] = back
    ? [area.selectionStart, area.selectionEnd]
    : [area.selectionEnd, area.selectionStart];
  client.set_presence(name || clientId, cursor, anchor);
}

function arm() {
  if (timer !== null) clearTimeout(timer);
  timer = null;
  const at = client.wake_at();
  if (at === undefined) return;
  timer = setTimeout(() => {
    timer = null;
    client.tick(performance.now());
    settle();
  }, Math.max(0, at - performance.now()));
}

// After anything happened: show, send, close if asked, re-arm the timer. A merge moves our
// caret with the text around it; the others are told where it went.
function settle() {
  const moved = client.take_text_changed();
  if (moved) {
    showText();
    sendPresence();
  }
  flush();
  if (client.take_presence_changed() || moved) showPresence();
  if (client.take_close_asked() && socket) socket.close();
  render();
  arm();
}

function connect() {
  opened = false;
  socket = new WebSocket(wsUrl);
  socket.onopen = () => {
    opened = true;
    client.connected(performance.now());
    settle();
  };
  socket.onmessage = (ev) => {
    client.receive(performance.now(), typeof ev.data === "string" ? ev.data : "");
    settle();
  };
  socket.onclose = () => {
    socket = null;
    const delay = client.lost(opened);
    settle();
    if (delay >= 0) setTimeout(connect, delay);
  };
}

area.addEventListener("input", () => {
  try {
    client.edit(area.value);
  } catch (e) {
    area.value = client.text();
  }
  sendPresence();
  showPresence();
  settle();
});
for (const ev of ["keyup", "mouseup", "select", "focus"]) {
  area.addEventListener(ev, () => {
    if (!client) return;
    sendPresence();
    settle();
  });
}
area.addEventListener("scroll", () => ($("mirror").scrollTop = area.scrollTop));

async function main() {
  const config = await (await fetch("/web-config.json")).json();
  wsUrl = `${config.ws_tls ? "wss" : "ws"}://${location.hostname}:${config.ws_port}/`;
  await init();
  client = new WebClient(clientId, doc, token);
  sendPresence();
  area.disabled = false;
  area.placeholder = "";
  render();
  connect();
}

main().catch((e) => {
  notice("the editor could not start: " + e);
  $("state").textContent = "failed";
});
