// The admin portal's small script: live updates over /ws/portal/, ages that tick, copy buttons, the
// user and group picker, and the agent command that follows the host name. Every page works without it.
(function () {
  "use strict";

  // --- ages ("12 s ago") ------------------------------------------------------------------------
  function ageText(seconds) {
    if (seconds < 60) return Math.max(0, Math.floor(seconds)) + " s ago";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min " + String(Math.floor(seconds % 60)).padStart(2, "0") + " s ago";
    var hours = Math.floor(minutes / 60);
    if (hours < 48) return hours + " h " + String(minutes % 60).padStart(2, "0") + " min ago";
    return Math.floor(hours / 24) + " days ago";
  }
  function refreshAges() {
    var now = Date.now();
    document.querySelectorAll("time[data-age]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(at)) el.textContent = ageText((now - at) / 1000);
    });
  }
  setInterval(refreshAges, 5000);

  // --- copy buttons -------------------------------------------------------------------------------
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.value !== undefined ? source.value : source.textContent;
    var done = function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, done);
    } else {
      var scratch = document.createElement("textarea");
      scratch.value = text;
      document.body.appendChild(scratch);
      scratch.select();
      try { document.execCommand("copy"); } catch (e) { /* the text stays selectable by hand */ }
      scratch.remove();
      done();
    }
  });

  // --- the register command follows the host name typed -------------------------------------------
  var hostName = document.querySelector("[data-command-name]");
  var registerCommand = document.getElementById("register-command");
  if (hostName && registerCommand) {
    hostName.addEventListener("input", function () {
      var name = hostName.value.trim().replace(/[^A-Za-z0-9.-]/g, "") || "HOST_NAME";
      var pin = registerCommand.dataset.caFingerprint;
      registerCommand.textContent = "python -m hostagent.agent register --server " + registerCommand.dataset.server +
        " --token " + registerCommand.dataset.token + " --name " + name + (pin ? " --ca-fingerprint " + pin : "");
    });
  }

  // --- live updates ---------------------------------------------------------------------------------
  var body = document.body;
  var status = document.getElementById("live-status");
  var hasFragments = document.querySelector("[data-fragment]") !== null;
  var pending = false, inFlight = false;

  function setStatus(state, text) {
    if (!status) return;
    status.dataset.state = state;
    status.textContent = text;
  }

  function relevant(message) {
    var pool = body.dataset.livePool, host = body.dataset.liveHost;
    if (host) return String(message.host_id) === host;
    if (pool && message.type === "host") {
      return message.host_pool_id === null || String(message.host_pool_id) === pool ||
        document.querySelector('[data-host-id="' + message.host_id + '"]') !== null;
    }
    return true;
  }

  function fragmentsUrl() {
    // The page's own URL, unless it is the answer to a POST (a new token): then the view names it.
    var url = new URL(body.dataset.fragmentsUrl || window.location.href, window.location.href);
    url.searchParams.set("fragments", "1");
    return url.toString();
  }

  function refresh() {
    // At most one fetch in flight; changes arriving meanwhile cause one more fetch after it.
    if (inFlight) { pending = true; return; }
    inFlight = true;
    fetch(fragmentsUrl(), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok || (response.headers.get("Content-Type") || "").indexOf("application/json") !== 0) {
          throw new Error("the page's data could not be fetched (" + response.status + ")");
        }
        return response.json();
      })
      .then(function (data) {
        var focused = document.activeElement && document.activeElement.id;
        Object.keys(data.fragments || {}).forEach(function (key) {
          var target = document.querySelector('[data-fragment="' + key + '"]');
          if (target) target.innerHTML = data.fragments[key];
        });
        // Keep the keyboard where it was: a replaced button gets its focus back by id.
        if (focused && document.activeElement === document.body) {
          var again = document.getElementById(focused);
          if (again) again.focus();
        }
        refreshAges();
        body.dispatchEvent(new CustomEvent("portal:updated"));
      })
      .catch(function (error) { setStatus("offline", "Live updates paused"); console.warn(error); })
      .then(function () {
        inFlight = false;
        if (pending) { pending = false; setTimeout(refresh, 300); }
      });
  }

  var timer = null;
  function scheduleRefresh() {
    if (timer) return;
    timer = setTimeout(function () { timer = null; refresh(); }, 250);  // coalesce bursts of changes
  }

  function connect(delay) {
    if (!body.dataset.liveUrl || !window.WebSocket) { setStatus("offline", "Live updates off"); return; }
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + body.dataset.liveUrl);
    socket.onopen = function () { delay = 1000; setStatus("live", "Live"); body.dataset.liveReady = "1"; };
    socket.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (hasFragments && relevant(message)) scheduleRefresh();
    };
    socket.onclose = function () {
      delete body.dataset.liveReady;
      setStatus("offline", "Reconnecting…");
      setTimeout(function () { connect(Math.min(delay * 2, 30000)); }, delay);
    };
  }
  connect(1000);

  // --- the user and group picker --------------------------------------------------------------------
  document.querySelectorAll("input[data-picker]").forEach(function (input) {
    var list = document.getElementById(input.getAttribute("aria-controls"));
    var form = input.form;
    var results = [], active = -1, lastQuery = "", debounce = null;

    function close() {
      list.hidden = true;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
      active = -1;
    }
    function choose(index) {
      var item = results[index];
      if (!item) return;
      input.value = item.name;
      var radio = form.querySelector('input[name="kind"][value="' + item.kind + '"]');
      if (radio) radio.checked = true;
      close();
      input.focus();
    }
    function highlight(index) {
      var options = list.querySelectorAll("li");
      options.forEach(function (li, i) { li.setAttribute("aria-selected", i === index ? "true" : "false"); });
      active = index;
      if (options[index]) {
        input.setAttribute("aria-activedescendant", options[index].id);
        options[index].scrollIntoView({ block: "nearest" });
      }
    }
    function render() {
      list.innerHTML = "";
      results.forEach(function (item, i) {
        var li = document.createElement("li");
        li.id = "picker-option-" + i;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        li.textContent = item.label;
        var kind = document.createElement("span");
        kind.className = "kind";
        kind.textContent = item.kind;
        li.appendChild(kind);
        li.addEventListener("mousedown", function (event) { event.preventDefault(); choose(i); });
        list.appendChild(li);
      });
      list.hidden = results.length === 0;
      input.setAttribute("aria-expanded", results.length ? "true" : "false");
      active = -1;
    }
    function search() {
      var query = input.value.trim();
      if (query === lastQuery) return;
      lastQuery = query;
      if (!query) { results = []; render(); return; }
      fetch(input.dataset.picker + "?q=" + encodeURIComponent(query), { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : { results: [] }; })
        .then(function (data) { if (query === lastQuery) { results = data.results || []; render(); } })
        .catch(function () { results = []; render(); });
    }
    input.addEventListener("input", function () {
      clearTimeout(debounce);
      debounce = setTimeout(search, 150);
    });
    input.addEventListener("keydown", function (event) {
      if (list.hidden) return;
      if (event.key === "ArrowDown") { event.preventDefault(); highlight(Math.min(active + 1, results.length - 1)); }
      else if (event.key === "ArrowUp") { event.preventDefault(); highlight(Math.max(active - 1, 0)); }
      else if (event.key === "Enter" && active >= 0) { event.preventDefault(); choose(active); }
      else if (event.key === "Escape") { close(); }
    });
    input.addEventListener("blur", function () { setTimeout(close, 150); });
  });
})();
