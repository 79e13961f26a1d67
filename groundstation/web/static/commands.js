// stratoecho ground dashboard: the commands panel. The form is drawn from GET /api/commands (each
// command as the wire package declares it: its fields, their bounds, whether it is risky), so a
// new command needs nothing here. Everyone may watch; the form is the operator's: /api/session
// says whether this browser may queue commands (a login, or this machine on a dashboard without
// a password). The outbox shows what was queued and what the listener sent.
"use strict";

window.StratoechoCommands = (() => {
  const { $, el, timeEl, getJSON } = window.StratoechoDom; // dom.js
  const TOKEN = document.querySelector('meta[name="stratoecho-token"]').content;
  const declared = new Map(); // command name -> its declaration, from /api/commands
  let sessionTimer = null;

  const utf8Bytes = (text) => new TextEncoder().encode(text).length;
  const inputId = (command, field) => `cmd-${command.command}-${field.name}`;

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Stratoecho-Token": TOKEN },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
    return answer;
  }

  // ------------------------------------------------------------------ the form, from the declarations

  function countBytes(command, field) {
    const n = utf8Bytes($(inputId(command, field)).value);
    const counter = $(`${inputId(command, field)}-bytes`);
    counter.textContent = String(n);
    counter.className = n > field.max_bytes ? "over" : "";
  }

  function input(set, command, field) {
    const id = inputId(command, field);
    const label = el("label", set, `${field.label} `);
    let node;
    if (field.type === "choice") {
      node = el("select", label, null, { id, name: field.name });
      for (const value of field.choices) el("option", node, value.replace(/_/g, " "), { value });
    } else if (field.type === "text") {
      node = el("textarea", label, null, { id, name: field.name, rows: 3 });
    } else {
      node = el("input", label, null, { id, name: field.name, type: "number", min: field.min, max: field.max, step: 1 });
      if (field.default !== null) node.value = String(field.default);
      if (!field.required) node.placeholder = field.help || "optional";
    }
    if (field.unit) label.append(` ${field.unit}`);
    if (field.type === "text") {
      const count = el("p", set, null, { class: "note" });
      el("span", count, "0", { id: `${id}-bytes` });
      count.append(` / ${field.max_bytes} bytes of UTF-8`);
      node.addEventListener("input", () => countBytes(command, field));
    } else if (field.help && field.required) {
      el("p", set, field.help, { class: "note" });
    }
  }

  function fieldset(command) {
    const set = el("fieldset", null, null, { "data-command": command.command });
    for (const field of command.fields) input(set, command, field);
    el("p", set, command.help, { class: "note" });
    if (command.risky) {
      el("p", set, "On probation: the payload puts it back unless this station sends it again once it hears "
        + "the change made (the listener does so by itself).", { class: "note risky" });
    }
    return set;
  }

  async function buildForm() {
    const commands = await getJSON("/api/commands");
    declared.clear();
    for (const c of commands) declared.set(c.command, c);
    $("cmd-kind").replaceChildren(...commands.map((c) => el("option", null, c.label, { value: c.command })));
    $("cmd-fields").replaceChildren(...commands.map(fieldset));
    showCommandFields();
  }

  function showCommandFields() {
    const kind = $("cmd-kind").value;
    for (const set of $("cmd-fields").children) set.hidden = set.dataset.command !== kind;
  }

  // A field's value for the JSON, checked against its declared bounds (the server checks again).
  function fieldValue(field, raw) {
    if (field.type === "text") {
      const n = utf8Bytes(raw);
      if (n < field.min_bytes || n > field.max_bytes) {
        throw new Error(`${field.label} is ${field.min_bytes} to ${field.max_bytes} bytes of UTF-8; this one is ${n}`);
      }
      return raw;
    }
    if (field.type === "choice") return raw;
    if (raw.trim() === "" && !field.required) return undefined; // the server fills it in
    const value = Number(raw);
    if (raw.trim() === "" || !Number.isInteger(value) || value < field.min || value > field.max) {
      throw new Error(`${field.label} must be a whole number, ${field.min} to ${field.max}`);
    }
    return value;
  }

  function commandFromForm() {
    const command = declared.get($("cmd-kind").value);
    if (!command) throw new Error("the list of commands has not loaded");
    const body = { command: command.command };
    for (const field of command.fields) {
      const value = fieldValue(field, $(inputId(command, field)).value);
      if (value !== undefined) body[field.name] = value;
    }
    return body;
  }

  function clearText(command) { // a note is sent once; numbers and choices stay for the next
    for (const field of command.fields.filter((f) => f.type === "text")) {
      $(inputId(command, field)).value = "";
      countBytes(command, field);
    }
  }

  async function sendCommand(event) {
    event.preventDefault();
    const status = $("cmd-status");
    let body;
    try {
      body = commandFromForm();
    } catch (err) {
      status.textContent = `not sent: ${err.message}`;
      status.className = "error";
      return;
    }
    const button = $("cmd-send");
    button.disabled = true;
    try {
      const answer = await post("/api/commands", body);
      status.textContent = `queued #${answer.id}: ${answer.what}`;
      status.className = "ok";
      clearText(declared.get(body.command));
      await refreshOutbox();
    } catch (err) {
      status.textContent = `refused: ${err.message}`;
      status.className = "error";
      refreshSession(); // a session that ended meanwhile: back to the login
    } finally {
      button.disabled = false;
    }
  }

  // ------------------------------------------------------------------ the outbox
  // The event stream and a command's own request both redraw the outbox. A request's answer may
  // reach the page after a newer event (a loaded ground PC): it is drawn only if no event came
  // while it was on its way; any change after that event brings another event.

  let outboxEvents = 0;
  function outboxEvent(rows) { outboxEvents += 1; drawOutbox(rows); }
  async function refreshOutbox() {
    const before = outboxEvents;
    const rows = await getJSON("/api/outbox");
    if (outboxEvents === before) drawOutbox(rows);
  }

  function drawOutbox(rows) {
    $("outbox").tBodies[0].replaceChildren(...rows.map((c) => {
      const row = el("tr", null, null, { "data-id": c.id, class: c.state });
      el("td", row, c.id);
      timeEl(el("td", row), c.queued_at);
      el("td", row, c.what);
      const cell = el("td", row, c.state);
      if (c.sent_at) { cell.textContent = "sent "; timeEl(cell, c.sent_at); }
      else if (c.refused) cell.textContent = `refused: ${c.refused}`;
      return row;
    }));
    if (!rows.length) el("tr", $("outbox").tBodies[0]).appendChild(el("td", null, "nothing queued", { colspan: 4 }));
  }

  // ------------------------------------------------------------------ the operator

  function showSession(session) {
    const stateLine = $("operator-state");
    $("command-form").hidden = !session.operator;
    $("login-form").hidden = session.operator || !session.login;
    $("logout").hidden = !(session.operator && session.login);
    if (session.operator && session.login) {
      const until = new Date(Date.now() + session.expires_in * 1000);
      stateLine.textContent = `operator, until ${until.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`;
    } else if (session.operator) {
      stateLine.textContent = "this machine may queue commands (no operator password is set)";
    } else if (session.login) {
      stateLine.textContent = "watching: log in as the operator to queue commands";
    } else {
      stateLine.textContent = "read-only: no operator password is set at the station";
    }
    clearTimeout(sessionTimer);
    if (session.operator && session.expires_in !== null) { // back to watching when it expires
      sessionTimer = setTimeout(refreshSession, Math.min(session.expires_in * 1000 + 500, 2 ** 31 - 1));
    }
  }

  async function refreshSession() {
    try {
      showSession(await getJSON("/api/session"));
    } catch (err) {
      $("operator-state").textContent = `cannot ask the ground station who may send commands (${err.message})`;
    }
  }

  async function logIn(event) {
    event.preventDefault();
    const field = $("login-password");
    $("login-send").disabled = true;
    try {
      await post("/api/login", { password: field.value });
      field.value = "";
      await refreshSession();
    } catch (err) {
      $("operator-state").textContent = `not logged in: ${err.message}`;
    } finally {
      $("login-send").disabled = false;
    }
  }

  async function logOut() {
    try {
      await post("/api/logout", {});
    } finally {
      await refreshSession();
    }
  }

  // The form is drawn before the session is asked for: an operator never sees it empty.
  async function start() {
    $("command-form").addEventListener("submit", sendCommand);
    $("login-form").addEventListener("submit", logIn);
    $("logout").addEventListener("click", logOut);
    $("cmd-kind").addEventListener("change", showCommandFields);
    for (;;) {
      try {
        await buildForm();
        break;
      } catch (err) {
        $("cmd-status").textContent = `cannot load the commands (${err.message}): trying again…`;
        await new Promise((done) => setTimeout(done, 3000));
      }
    }
    $("cmd-status").textContent = "";
    await refreshSession();
  }

  return { start, drawOutbox, outboxEvent };
})();
