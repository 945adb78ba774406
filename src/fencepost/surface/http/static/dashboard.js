// fencepost dashboard: live updates over server-sent events; no build step, no framework.
// Every change goes through the JSON API, which does all the validation (docs/design/http.md).
(function () {
  "use strict";
  var body = document.body;
  var live = body.dataset.live;
  var status = document.getElementById("live-status");

  function setLive(on) {
    if (!status || !live) return;
    status.textContent = on ? "live" : "reconnecting…";
    status.className = "live-status " + (on ? "on" : "off");
  }

  function flash(text, bad) {
    var box = document.getElementById("flash");
    var div = document.createElement("div");
    div.className = "msg" + (bad ? " bad" : "");
    div.textContent = text;
    box.replaceChildren(div);
  }

  // Requests that change something carry JSON and X-Fencepost (the server refuses others,
  // HTTP-I6). A refusal rejects with the API's error: message, code and the field it names.
  function send(method, url, data, extra) {
    var headers = { "Content-Type": "application/json", "X-Fencepost": "1" };
    Object.keys(extra || {}).forEach(function (k) { headers[k] = extra[k]; });
    return fetch(url, {
      method: method,
      headers: headers,
      body: data === undefined ? undefined : JSON.stringify(data),
      credentials: "same-origin",
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) {
          var err = j.error || {};
          var e = new Error(err.message || r.statusText);
          e.field = err.field || null;
          e.code = err.code || null;
          e.by = err.by || null;
          throw e;
        }
        return j;
      });
    });
  }
  function post(url, data, extra) { return send("POST", url, data || {}, extra); }

  // ---- times: the server writes UTC; the reader's local time goes beside it (HTTP-I13)
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function zoneName(d) {
    try {
      var parts = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(d);
      for (var i = 0; i < parts.length; i++) if (parts[i].type === "timeZoneName") return parts[i].value;
    } catch (e) { /* an old browser: say "local" */ }
    return "local";
  }
  function localText(d) {
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + " " + zoneName(d);
  }
  function localize(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var next = t.nextElementSibling;
      if (next && next.classList.contains("local")) return;
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      var span = document.createElement("span");
      span.className = "local";
      span.title = "your local time";
      span.textContent = localText(d);
      t.after(span);
    });
  }
  localize(document);

  // As the server renders times: <time datetime="…Z">2026-03-29 07:00:00Z</time>.
  function timeElement(ts) {
    var d = ts ? new Date(ts) : null;
    if (!d || isNaN(d)) return document.createTextNode(ts || "\u2013");
    var t = document.createElement("time");
    var iso = d.toISOString().slice(0, 19) + "Z";
    t.setAttribute("datetime", iso);
    t.textContent = iso.replace("T", " ");
    return t;
  }

  // ---- jobs, runs, sessions: re-render the page's main part when the gateway reports events
  var refreshTimer = null;
  var refreshing = false;
  function refresh() {
    if (refreshing) { schedule(500); return; }
    refreshing = true;
    fetch(location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        var main = document.getElementById("main");
        if (fresh) { main.replaceChildren(...fresh.childNodes); localize(main); }
      })
      .catch(function () {})
      .finally(function () { refreshing = false; });
  }
  function schedule(ms) {
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () { refreshTimer = null; refresh(); }, ms);
  }

  if (live === "feed") {
    var feed = new EventSource("/api/events");
    feed.addEventListener("ready", function () { setLive(true); });
    feed.onerror = function () { setLive(false); };
    ["turn_started", "turn_finished", "transcript", "overflow"].forEach(function (name) {
      feed.addEventListener(name, function () { schedule(300); });
    });
    setInterval(function () { schedule(0); }, 5000); // the ledger changes after the turn events
  }

  // ---- approvals: the panel every page shows, re-drawn from /api/approvals when the gateway
  // feed says a request came or went. Every text goes in with textContent, never as HTML, and
  // hidden characters (controls, bidi marks) are shown as \uXXXX, as the server renders them
  // (docs/design/approvals.md). Decisions go through the JSON API as "dashboard" (APPROVAL-I7).
  var panel = document.getElementById("approvals");
  var HIDDEN = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g;
  function printable(text) {
    return String(text).replace(HIDDEN, function (c) {
      return "\\u" + ("000" + c.charCodeAt(0).toString(16)).slice(-4);
    });
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function approvalItem(a) {
    var li = el("li", "approval");
    li.dataset.approvalId = a.approval_id;
    var what = el("div", "approval-what");
    what.append(el("span", "pill tool", printable(a.tool)), " ",
      el("code", "approval-summary", printable(a.summary)));
    var where = el("div", "approval-where dim");
    var link = el("a", null, a.session_id);
    link.href = "/sessions/" + encodeURIComponent(a.session_id);
    where.append("agent " + a.agent + " \u00b7 session ", link, " \u00b7 run ",
      el("code", null, a.run_id), " \u00b7 asked ", timeElement(a.requested_at),
      " \u00b7 denied if unanswered by ", timeElement(a.expires_at));
    var actions = el("div", "approval-actions");
    var reason = el("input", "approval-reason");
    reason.type = "text";
    reason.placeholder = "reason (optional)";
    reason.maxLength = 2000;
    reason.autocomplete = "off";
    reason.setAttribute("aria-label", "reason for " + a.approval_id);
    var yes = el("button", "primary", "approve");
    yes.type = "button";
    yes.dataset.approve = a.approval_id;
    var no = el("button", "danger", "deny");
    no.type = "button";
    no.dataset.deny = a.approval_id;
    actions.append(reason, " ", yes, " ", no);
    li.append(what, where, actions);
    return li;
  }
  var approvalsReading = false;
  var approvalsAgain = false;
  function refreshApprovals() {
    if (!panel) return;
    if (approvalsReading) { approvalsAgain = true; return; }
    approvalsReading = true;
    fetch("/api/approvals", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        if (!j) return;
        var list = document.getElementById("approval-list");
        var typed = {}; // a reason being typed survives the re-draw
        list.querySelectorAll("li.approval").forEach(function (li) {
          typed[li.dataset.approvalId] = li.querySelector(".approval-reason").value;
        });
        list.replaceChildren.apply(list, j.approvals.map(function (a) {
          var li = approvalItem(a);
          if (typed[a.approval_id]) li.querySelector(".approval-reason").value = typed[a.approval_id];
          return li;
        }));
        localize(list);
        document.getElementById("approvals-count").textContent = String(j.approvals.length);
        panel.hidden = j.approvals.length === 0;
      })
      .catch(function () {})
      .finally(function () {
        approvalsReading = false;
        if (approvalsAgain) { approvalsAgain = false; refreshApprovals(); }
      });
  }
  if (panel) {
    var approvalFeed = live === "feed" ? feed : new EventSource("/api/events");
    ["approval_requested", "approval_decided", "overflow"].forEach(function (name) {
      approvalFeed.addEventListener(name, refreshApprovals);
    });
    approvalFeed.addEventListener("ready", refreshApprovals); // what came while reconnecting
  }

  function decide(btn, id, approve) {
    var li = btn.closest("li");
    var reason = li ? li.querySelector(".approval-reason").value : "";
    li.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    post("/api/approvals/" + encodeURIComponent(id),
      { decision: approve ? "approve" : "deny", reason: reason }, { "X-Fencepost-Decider": "dashboard" })
      .then(function (j) { flash((j.approved ? "approved " : "denied ") + id + " (" + j.tool + ")"); })
      .catch(function (e) { flash(e.message, true); })
      .finally(refreshApprovals);
  }

  // ---- jobs: run, edit, enable / disable, delete, create
  function jobUrl(id) { return "/api/jobs/" + encodeURIComponent(id); }

  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest && ev.target.closest("button");
    if (!btn) return;
    var d = btn.dataset;
    if (d.approve || d.deny) {
      decide(btn, d.approve || d.deny, Boolean(d.approve));
    } else if (d.runJob) {
      btn.disabled = true;
      post(jobUrl(d.runJob) + "/run")
        .then(function (j) { flash("started run " + j.run_id); schedule(200); })
        .catch(function (e) { flash(e.message, true); btn.disabled = false; });
    } else if (d.editJob) {
      fetch(jobUrl(d.editJob), { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (job) { if (job.error) throw new Error(job.error.message); openJobForm(job); })
        .catch(function (e) { flash(e.message, true); });
    } else if (d.toggleJob) {
      var enable = d.enable === "true";
      btn.disabled = true;
      send("PATCH", jobUrl(d.toggleJob), { enabled: enable })
        .then(function (j) { flash((enable ? "enabled " : "disabled ") + j.name); refresh(); })
        .catch(function (e) { flash(e.message, true); btn.disabled = false; });
    } else if (d.deleteJob) {
      var row = btn.closest("tr");
      var name = row ? row.dataset.jobName : d.deleteJob;
      if (!window.confirm("Delete the job " + name + "? Its runs stay in the ledger.")) return;
      send("DELETE", jobUrl(d.deleteJob))
        .then(function (j) { if (row) row.remove(); flash("deleted " + j.name); refresh(); })
        .catch(function (e) { flash(e.message, true); });
    } else if (btn.id === "new-job") {
      openJobForm(null);
    } else if (btn.id === "job-cancel") {
      document.getElementById("job-dialog").close();
    }
  });

  var dialog = document.getElementById("job-dialog");
  var jobForm = document.getElementById("job-form");
  var editing = null;
  var initial = null;
  var VALUE_KEY = { every: "every", cron: "expr", at: "at" };
  var HINTS = {
    every: "30m, 1h or 1d",
    cron: "0 7 * * 1-5, or @daily",
    at: "2030-01-01T07:00Z, or 20m from now",
  };

  function seconds(s) { // 3600 → "1h", as people write an every schedule
    var units = [[86400, "d"], [3600, "h"], [60, "m"]];
    for (var i = 0; i < units.length; i++) {
      if (s >= units[i][0] && s % units[i][0] === 0) return s / units[i][0] + units[i][1];
    }
    return String(s);
  }

  function values() {
    var el = jobForm.elements;
    return {
      name: el.name.value, agent: el.agent.value,
      schedule_kind: el.schedule_kind.value, schedule_value: el.schedule_value.value,
      schedule_tz: el.schedule_tz.value,
      payload_kind: el.payload_kind.value, payload_text: el.payload_text.value,
      target: el.target.value, model: el.model.value, timeout_s: el.timeout_s.value,
      delivery: el.delivery.value, enabled: el.enabled.checked,
    };
  }

  function scheduleOf(v) {
    var s = { kind: v.schedule_kind };
    s[VALUE_KEY[v.schedule_kind] || "every"] = v.schedule_value;
    if (v.schedule_tz) s.tz = v.schedule_tz;
    return s;
  }

  function createBody(v) {
    var b = {
      name: v.name, agent: v.agent, schedule: scheduleOf(v),
      payload: { kind: v.payload_kind, text: v.payload_text }, enabled: v.enabled,
    };
    ["target", "model", "timeout_s", "delivery"].forEach(function (k) { if (v[k] !== "") b[k] = v[k]; });
    return b;
  }

  // An edit sends what changed, so an untouched schedule keeps its next run.
  function editBody(v) {
    var b = {};
    var changed = function (k) { return v[k] !== initial[k]; };
    if (changed("name")) b.name = v.name;
    if (changed("agent")) b.agent = v.agent;
    if (changed("schedule_kind") || changed("schedule_value") || changed("schedule_tz")) b.schedule = scheduleOf(v);
    if (changed("payload_text")) b.payload = { kind: v.payload_kind, text: v.payload_text };
    if (changed("target")) b.target = v.target || "isolated";
    if (changed("model")) b.model = v.model || null;
    if (changed("timeout_s")) b.timeout_s = v.timeout_s || null;
    if (changed("delivery")) b.delivery = v.delivery || "none";
    if (changed("enabled")) b.enabled = v.enabled;
    return b;
  }

  function kindChanged() {
    var hint = document.getElementById("jf-schedule-value-hint");
    if (hint) hint.textContent = HINTS[jobForm.elements.schedule_kind.value] || "";
  }

  function clearErrors() {
    jobForm.querySelector(".form-error").textContent = "";
    jobForm.querySelectorAll(".field-error").forEach(function (e) { e.textContent = ""; });
    jobForm.querySelectorAll("[aria-invalid]").forEach(function (e) {
      e.removeAttribute("aria-invalid");
      e.removeAttribute("aria-describedby");
    });
  }

  // The API names the field at fault (HTTP-G2); its message goes next to that field.
  function showError(e) {
    var where = null;
    if (e.field) {
      jobForm.querySelectorAll(".field").forEach(function (f) {
        if (!where && f.dataset.fields.split(" ").indexOf(e.field) >= 0) where = f;
      });
    }
    if (!where) { jobForm.querySelector(".form-error").textContent = e.message; return; }
    var msg = where.querySelector(".field-error");
    msg.textContent = e.message;
    var input = where.querySelector("input, select, textarea");
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", msg.id);
    input.focus();
  }

  function openJobForm(job) {
    jobForm.reset();
    clearErrors();
    editing = job ? job.job_id : null;
    var el = jobForm.elements;
    if (job) {
      var s = job.schedule;
      el.name.value = job.name;
      el.agent.value = job.agent;
      el.schedule_kind.value = s.kind;
      el.schedule_value.value = s.kind === "every" ? seconds(s.every_s) : s.kind === "cron" ? s.expr : s.at;
      el.schedule_tz.value = s.kind === "cron" ? s.tz || "" : "";
      el.payload_kind.value = job.payload.kind;
      el.payload_text.value = job.payload.text;
      el.target.value = job.target;
      el.model.value = job.model || "";
      el.timeout_s.value = String(job.timeout_s);
      var dl = job.delivery || { kind: "none" };
      el.delivery.value = dl.kind === "none" ? "" : dl.kind === "session" ? "session:" + dl.to : dl.to;
      el.enabled.checked = job.enabled;
    }
    document.getElementById("job-form-title").textContent = job ? "Edit " + job.name : "New job";
    document.getElementById("job-submit").textContent = job ? "save" : "create";
    initial = values();
    kindChanged();
    dialog.showModal();
  }

  if (jobForm) {
    jobForm.elements.schedule_kind.addEventListener("change", kindChanged);
    jobForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      clearErrors();
      var v = values();
      var req = editing
        ? send("PATCH", jobUrl(editing), editBody(v))
        : send("POST", "/api/jobs", createBody(v));
      var submit = document.getElementById("job-submit");
      submit.disabled = true;
      req.then(function (j) {
        dialog.close();
        flash((editing ? "saved " : "created ") + j.name);
        refresh();
      }).catch(showError).finally(function () { submit.disabled = false; });
    });
  }

  // ---- runs: the filters live in the address; empty ones are left out of it (HTTP-I12)
  var filters = document.getElementById("run-filters");
  if (filters) {
    filters.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var q = new URLSearchParams();
      new FormData(filters).forEach(function (value, name) { if (value) q.append(name, value); });
      var qs = q.toString();
      location.assign("/runs" + (qs ? "?" + qs : ""));
    });
    filters.querySelectorAll("select").forEach(function (s) {
      s.addEventListener("change", function () { filters.requestSubmit(); });
    });
  }

  // ---- one session: the transcript thread, folded branches, records as they land
  document.addEventListener("click", function (ev) {
    var toggle = ev.target.closest && ev.target.closest("a.branch-toggle");
    if (toggle) {
      ev.preventDefault();
      var open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      document.querySelectorAll('#records tr.record.side[data-branch="' + CSS.escape(toggle.dataset.branch) + '"]')
        .forEach(function (tr) { tr.hidden = !open; });
      return;
    }
    var clamp = ev.target.closest && ev.target.closest("#records td.rec .clamp");
    if (clamp && !window.getSelection().toString()) clamp.classList.toggle("open");
  });

  var sid = body.dataset.session;
  if (sid) {
    var form = document.getElementById("send-message");
    if (form) form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var data = { text: form.elements.text.value };
      if (form.elements.agent) data.agent = form.elements.agent.value;
      post("/api/sessions/" + encodeURIComponent(sid) + "/messages", data)
        .then(function (j) { flash("message " + j.status + (j.run_id ? " (run " + j.run_id + ")" : "")); form.reset(); })
        .catch(function (e) { flash(e.message, true); });
    });
  }

  // Re-read the thread when a record forks: the active path moved, branches change. A live
  // page is the newest one, so the newest is read (the address may name an older offset).
  // Records that land while the page is read are handled again once the new thread is in place.
  var rereading = false;
  var pending = [];
  function rereadThread() {
    if (rereading) return;
    rereading = true;
    fetch(location.pathname, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("records");
        if (!fresh) return;
        document.getElementById("records").replaceWith(fresh);
        localize(fresh);
        var count = doc.getElementById("record-count");
        var mine = document.getElementById("record-count");
        if (count && mine) mine.textContent = count.textContent;
      })
      .catch(function () {})
      .finally(function () {
        rereading = false;
        var again = pending;
        pending = [];
        again.forEach(onRecord);
      });
  }

  function onRecord(r) {
    if (rereading) { pending.push(r); return; }
    var table = document.getElementById("records");
    if (table.querySelector('tr[data-index="' + r.index + '"]')) return; // already shown
    var leaf = table.dataset.leaf || "";
    if (r.id && (r.parentId || "") !== leaf) { rereadThread(); return; }
    table.tBodies[0].appendChild(recordRow(r, r.id ? "active" : ""));
    if (r.id) table.dataset.leaf = r.id;
    var count = document.getElementById("record-count");
    if (count) count.textContent = String(r.index + 1);
  }

  if (sid && live === "session") {
    var next = parseInt(body.dataset.nextIndex || "0", 10);
    var src = new EventSource("/api/sessions/" + encodeURIComponent(sid) + "/events?offset=" + next);
    src.addEventListener("ready", function () { setLive(true); });
    src.onerror = function () { setLive(false); };
    src.addEventListener("reset", function () { src.close(); location.reload(); });
    src.addEventListener("record", function (ev) { onRecord(JSON.parse(ev.data)); });
  }

  function cell(text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }

  // The same row as the server's record_row macro (session.html), for a record on the path.
  function recordRow(r, cls) {
    var tr = document.createElement("tr");
    tr.className = "record fresh" + (cls ? " " + cls : "");
    tr.dataset.index = r.index;
    tr.dataset.id = r.id || "";
    tr.dataset.parent = r.parentId || "";
    tr.appendChild(cell(String(r.index), "num"));
    var rec = document.createElement("td");
    rec.className = "rec";
    var clamp = document.createElement("div");
    clamp.className = "clamp";
    var type = document.createElement("span");
    type.className = "type";
    type.textContent = r.type;
    var summary = document.createElement("span");
    summary.className = "summary";
    summary.textContent = r.summary;
    clamp.append(type, " ", summary);
    rec.appendChild(clamp);
    tr.appendChild(rec);
    var wtd = document.createElement("td");
    wtd.className = "writer-cell";
    var w = document.createElement("span");
    if (r.writer) { w.className = "writer w-" + r.writer.split(":")[0]; w.textContent = r.writer; w.title = r.writer; }
    else { w.className = "dim"; w.textContent = "no stamp"; }
    wtd.appendChild(w);
    tr.appendChild(wtd);
    var run = document.createElement("td");
    run.className = "run-cell";
    var code = document.createElement("code");
    code.textContent = r.run_id || "\u2013";
    code.title = r.run_id || "";
    run.appendChild(code);
    tr.appendChild(run);
    tr.appendChild(cell(r.epoch == null ? "\u2013" : String(r.epoch), "num epoch-cell"));
    tr.appendChild(cell(r.seq == null ? "\u2013" : String(r.seq), "num seq-cell"));
    var time = document.createElement("td");
    time.className = "time-cell dim";
    time.appendChild(timeElement(r.timestamp));
    tr.appendChild(time);
    localize(tr);
    return tr;
  }
})();
