// lp-services status pages: the live build log.
//
// Every page: a log (#log) opens scrolled to its end.
//
// A build page whose build is still waiting or running has a section with
// data-log-url (its log.json). Poll it, show the log tail as text
// (textContent: never markup) and the status; keep the view at the bottom
// when the reader is there. Once the build is no longer live, reload the
// page once to show the final status, the full log and the result files.
(function () {
  "use strict";
  var log = document.getElementById("log");
  // A log's end is what matters: show it first.
  if (log) { log.scrollTop = log.scrollHeight; }
  var live = document.getElementById("live");
  if (!live || !live.dataset.logUrl) { return; }
  var url = live.dataset.logUrl;
  var POLL_MS = 2000;

  function setText(id, value) {
    var el = document.getElementById(id);
    if (el && value !== null && value !== undefined) { el.textContent = value; }
  }

  function update(data) {
    if (log && data.logtail && log.hidden) {
      // The first lines of a build that was waiting: show the box.
      log.hidden = false;
      setText("live-note", "Following the build: the log below updates " +
              "while it runs.");
    }
    if (log && data.logtail !== null && log.textContent !== data.logtail) {
      var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
      log.textContent = data.logtail;
      if (atBottom) { log.scrollTop = log.scrollHeight; }
    }
    setText("status", data.status);
    setText("build-status", data.build_status);
    setText("builder", data.builder);
  }

  function poll() {
    fetch(url, { cache: "no-store", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        update(data);
        if (data.live) {
          window.setTimeout(poll, POLL_MS);
        } else {
          window.location.reload();
        }
      })
      .catch(function () { window.setTimeout(poll, POLL_MS * 3); });
  }

  window.setTimeout(poll, POLL_MS);
})();
