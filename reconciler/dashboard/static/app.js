// Live updates: the server says "change" over server-sent events and the
// page re-reads itself, replacing <main>. Everything else works without this.
(function () {
  "use strict";
  if (!document.body.dataset.live || !window.EventSource) return;
  var status = document.getElementById("live-status");
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { credentials: "same-origin", headers: { "X-Requested-With": "cairn-live" } })
      .then(function (r) { if (!r.ok || r.redirected) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main"), cur = document.getElementById("main");
        var active = document.activeElement;
        // Leave the page alone while someone types in one of its fields.
        if (fresh && cur && !(active && cur.contains(active) && /INPUT|SELECT|TEXTAREA/.test(active.tagName))) {
          cur.innerHTML = fresh.innerHTML;
        }
        if (status) status.textContent = "live · updated " + new Date().toLocaleTimeString();
      })
      .catch(function () { if (status) status.textContent = "live · refresh failed, retrying"; })
      .finally(function () { busy = false; if (again) { again = false; setTimeout(refresh, 500); } });
  }
  var es = new EventSource("/live");
  es.addEventListener("open", function () { if (status) status.textContent = "live"; });
  es.addEventListener("change", refresh);
  es.addEventListener("error", function () { if (status) status.textContent = "live · reconnecting"; });
})();
