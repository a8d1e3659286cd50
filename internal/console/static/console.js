// tokenkeeper console: live updates (Server-Sent Events), countdowns and
// copy buttons. Plain JavaScript, no build step; every page works without it.
(function () {
  "use strict";

  function short(s) {
    if (s >= 86400) return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
    if (s >= 3600) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    if (s >= 60) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    return s + "s";
  }

  // Countdowns: every <time class="countdown"> says how far it is from now.
  function tick() {
    var now = Date.now();
    document.querySelectorAll("time.countdown").forEach(function (el) {
      var t = Date.parse(el.getAttribute("datetime"));
      if (isNaN(t)) return;
      var d = Math.round((t - now) / 1000);
      el.textContent = d >= 0 ? "in " + short(d) : short(-d) + " ago";
      el.classList.toggle("past", d < 0);
    });
  }

  // Copy buttons copy the text of the element their data-copy names.
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("button.copy");
    if (!b) return;
    var el = document.getElementById(b.getAttribute("data-copy"));
    if (!el || !navigator.clipboard) return;
    navigator.clipboard.writeText(el.textContent).then(function () {
      var old = b.textContent;
      b.textContent = "Copied";
      setTimeout(function () { b.textContent = old; }, 1500);
    });
  });

  // Live regions: after a change, the page is fetched again and each
  // [data-live] element is replaced by its new version. Forms outside the
  // live regions keep what the user is typing.
  //
  // Once a form is submitted, its answer is the next page, and the page
  // stops: a form may end the session the page's requests carry (a
  // re-sign-in before a delete ends the stale session), and a fetch that
  // renewed or left for the sign-in page meanwhile would undo the form's.
  var busy = false, again = false, leaving = false;
  function reload() {
    if (leaving) return;
    if (busy) { again = true; return; }
    busy = true;
    return fetch(location.href, { credentials: "same-origin", headers: { "X-Console-Live": "1" } })
      .then(function (r) {
        if (leaving) return;
        if (r.redirected && r.url.indexOf("/ui/login") >= 0) { location.assign(r.url); return; }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        if (!html || leaving) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var n = doc.getElementById(el.id);
          if (n) el.replaceWith(document.importNode(n, true));
        });
        tick();
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; reload(); }
      });
  }

  var lost = document.getElementById("live-lost");
  var source = null, timer = null;
  function setLost(on) {
    if (lost) lost.hidden = !on;
    document.body.setAttribute("data-live-state", on ? "lost" : "live");
  }
  function listen() {
    if (leaving) return;
    if (!window.EventSource) { setLost(true); return; }
    source = new EventSource("/ui/events");
    source.onopen = function () { setLost(false); };
    source.addEventListener("change", function () { reload(); });
    source.addEventListener("expired", function () {
      // The session's access token ended: fetching the page renews it.
      source.close();
      Promise.resolve(reload()).then(function () { setTimeout(listen, 500); });
    });
    source.onerror = function () {
      setLost(true);
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        clearTimeout(timer);
        // Renew the session by fetching the page, then listen again.
        timer = setTimeout(function () { Promise.resolve(reload()).then(listen); }, 3000);
      }
    };
  }

  function stop() {
    leaving = true;
    clearTimeout(timer);
    if (source) source.close();
  }
  document.addEventListener("submit", function (ev) {
    // A GET form (a filter) leaves the session alone; a handler that
    // cancels the submission keeps the page.
    if (ev.defaultPrevented || (ev.target.method || "").toLowerCase() !== "post") return;
    stop();
  });
  // Back to this page from the history: it listens again.
  window.addEventListener("pageshow", function (ev) {
    if (!ev.persisted || !leaving) return;
    leaving = false;
    if (document.body.hasAttribute("data-live-page")) { reload(); listen(); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
    if (document.body.hasAttribute("data-live-page")) listen();
  });
})();
