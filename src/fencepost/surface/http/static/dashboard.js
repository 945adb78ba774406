// fencepost dashboard: live updates over server-sent events; no build step, no framework.
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

  // Requests that change something carry JSON and X-Fencepost (the server refuses others).
  function post(url, data) {
    return fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Fencepost": "1" },
      body: JSON.stringify(data || {}),
      credentials: "same-origin",
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) throw new Error((j.error && j.error.message) || r.statusText);
        return j;
      });
    });
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
        if (fresh) document.getElementById("main").replaceChildren(...fresh.childNodes);
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

  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest && ev.target.closest("button[data-run-job]");
    if (!btn) return;
    btn.disabled = true;
    post("/api/jobs/" + encodeURIComponent(btn.dataset.runJob) + "/run")
      .then(function (j) { flash("started run " + j.run_id); schedule(200); })
      .catch(function (e) { flash(e.message, true); btn.disabled = false; });
  });

  // ---- one session: append records as they land
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
  if (sid && live === "session") {
    var tbody = document.querySelector("#records tbody");
    var next = parseInt(body.dataset.nextIndex || "0", 10);
    var src = new EventSource("/api/sessions/" + encodeURIComponent(sid) + "/events?offset=" + next);
    src.addEventListener("ready", function () { setLive(true); });
    src.onerror = function () { setLive(false); };
    src.addEventListener("reset", function () { src.close(); location.reload(); });
    src.addEventListener("record", function (ev) {
      var r = JSON.parse(ev.data);
      if (tbody.querySelector('tr[data-index="' + r.index + '"]')) return; // already shown
      tbody.appendChild(recordRow(r));
      markActive(r.id);
      var count = document.getElementById("record-count");
      if (count) count.textContent = String(r.index + 1);
    });
  }

  // As the server renders times: "2026-03-29 07:00:00Z".
  function when(ts) {
    var d = ts ? new Date(ts) : null;
    if (!d || isNaN(d)) return ts || "\u2013";
    return d.toISOString().slice(0, 19).replace("T", " ") + "Z";
  }

  function cell(text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }

  function recordRow(r) {
    var parent = r.parentId ? tbody.querySelector('tr[data-id="' + r.parentId + '"]') : null;
    var depth = parent ? parseInt(parent.dataset.depth, 10) + 1 : 0;
    var tr = document.createElement("tr");
    tr.className = "record fresh";
    tr.dataset.index = r.index;
    tr.dataset.id = r.id || "";
    tr.dataset.parent = r.parentId || "";
    tr.dataset.depth = depth;
    tr.appendChild(cell(String(r.index), "num"));
    var tree = document.createElement("td");
    tree.className = "tree";
    tree.style.paddingLeft = (0.4 + depth * 1.1) + "em";
    var type = document.createElement("span");
    type.className = "type";
    type.textContent = r.type;
    var summary = document.createElement("span");
    summary.className = "summary";
    summary.textContent = r.summary;
    tree.append(type, " ", summary);
    tr.appendChild(tree);
    var wtd = document.createElement("td");
    var w = document.createElement("span");
    if (r.writer) { w.className = "writer w-" + r.writer.split(":")[0]; w.textContent = r.writer; }
    else { w.className = "dim"; w.textContent = "no stamp"; }
    wtd.appendChild(w);
    tr.appendChild(wtd);
    var run = document.createElement("td");
    var code = document.createElement("code");
    code.textContent = (r.run_id || "–").slice(0, 14);
    code.title = r.run_id || "";
    run.appendChild(code);
    tr.appendChild(run);
    tr.appendChild(cell(r.epoch == null ? "–" : String(r.epoch), "num"));
    tr.appendChild(cell(r.seq == null ? "–" : String(r.seq), "num"));
    tr.appendChild(cell(when(r.timestamp), "dim"));
    return tr;
  }

  // The active path is the chain of parents from the newest record (the leaf).
  function markActive(leafId) {
    if (!leafId) return;
    var rows = tbody.querySelectorAll("tr.record");
    var byId = {};
    rows.forEach(function (tr) { tr.classList.remove("active"); if (tr.dataset.id) byId[tr.dataset.id] = tr; });
    var cur = byId[leafId], seen = {};
    while (cur && !seen[cur.dataset.id]) {
      seen[cur.dataset.id] = true;
      cur.classList.add("active");
      cur = cur.dataset.parent ? byId[cur.dataset.parent] : null;
    }
  }
})();
