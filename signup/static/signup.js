// mailcow-signup: the page's behaviour. No third-party code; every request goes to this server.
(function () {
  "use strict";
  var root = document.documentElement;
  root.classList.add("js");

  // Theme: the toggle flips and remembers it (mailcow's key).
  var toggle = document.getElementById("theme-toggle");
  function showTheme() { if (toggle) toggle.setAttribute("aria-pressed", root.getAttribute("data-bs-theme") === "dark" ? "true" : "false"); }
  showTheme();
  if (toggle) toggle.addEventListener("click", function () {
    var t = root.getAttribute("data-bs-theme") === "dark" ? "light" : "dark";
    root.setAttribute("data-bs-theme", t);
    try { localStorage.setItem("mailcow_theme", t); } catch (e) {}
    showTheme();
  });

  // Language: switching submits the small form (it also works without JavaScript, with its button).
  var sel = document.querySelector("select[data-autosubmit]");
  if (sel) sel.addEventListener("change", function () { sel.form.submit(); });

  var form = document.getElementById("signup");
  if (!form) return;
  var base = form.getAttribute("data-base");
  function $(id) { return document.getElementById(id); }

  // Password: generated (show, copy, regenerate, "I saved it") or the user's own (typed twice).
  var own = $("own"), pw = $("password"), pwStatus = $("pw-status");
  function mode() {
    form.classList.toggle("own", own.checked);
    if (own.checked && pw.getAttribute("data-generated") === "1") { pw.value = ""; pw.removeAttribute("data-generated"); }
  }
  if (!own.checked) pw.setAttribute("data-generated", "1");
  own.addEventListener("change", mode);
  mode();
  $("pw-show").addEventListener("click", function () {
    var show = pw.type === "password";
    pw.type = show ? "text" : "password";
    this.textContent = form.getAttribute(show ? "data-hide" : "data-show");
    this.setAttribute("aria-pressed", show ? "true" : "false");
  });
  $("pw-copy").addEventListener("click", function () {
    var done = function () { pwStatus.textContent = form.getAttribute("data-copied"); };
    if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(pw.value).then(done, function () {}); }
    else { pw.type = "text"; pw.select(); try { document.execCommand("copy"); done(); } catch (e) {} }
  });
  $("pw-new").addEventListener("click", function () {
    fetch(base + "/password", { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (j) {
      if (j.password) { pw.value = j.password; pw.setAttribute("data-generated", "1"); $("saved").checked = false; }
    });
  });

  // Username: a debounced availability check, announced politely.
  var user = $("user"), userStatus = $("user-status"), timer = null, last = "";
  user.addEventListener("input", function () {
    clearTimeout(timer);
    var v = user.value.trim().toLowerCase();
    if (v.length < 3) { userStatus.textContent = ""; userStatus.className = "status"; return; }
    timer = setTimeout(function () {
      if (v === last) return;
      last = v;
      userStatus.className = "status";
      userStatus.textContent = form.getAttribute("data-checking");
      fetch(base + "/check?user=" + encodeURIComponent(v), { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (j) {
          if (user.value.trim().toLowerCase() !== v) return;
          userStatus.textContent = j.message || "";
          userStatus.className = "status " + (j.ok ? "ok" : "bad");
        }).catch(function () { userStatus.textContent = ""; });
    }, 450);
  });

  // Captcha: fetch a challenge and solve it in a worker; the box ticks itself when done.
  var box = $("captcha-box"), cStatus = $("captcha-status"), field = $("altcha"), solving = false;
  function solve() {
    if (solving || field.value) return;
    solving = true;
    box.checked = false;
    cStatus.className = "status";
    cStatus.textContent = form.getAttribute("data-working");
    fetch(base + "/challenge", { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (ch) {
      var w = new Worker(base + "/static/pow-worker.js");
      w.onmessage = function (e) {
        solving = false;
        w.terminate();
        if (e.data.number < 0) { cStatus.textContent = form.getAttribute("data-failed"); cStatus.className = "status bad"; return; }
        field.value = btoa(JSON.stringify({ algorithm: ch.algorithm, challenge: ch.challenge, number: e.data.number,
          salt: ch.salt, signature: ch.signature }));
        box.checked = true;
        box.setAttribute("data-took", String(e.data.took));
        cStatus.textContent = form.getAttribute("data-done");
        cStatus.className = "status ok";
      };
      w.postMessage({ salt: ch.salt, challenge: ch.challenge, max: ch.maxnumber });
    }).catch(function () { solving = false; cStatus.textContent = form.getAttribute("data-failed"); cStatus.className = "status bad"; });
  }
  box.addEventListener("change", function () { if (box.checked && !field.value) { solve(); } if (!field.value) box.checked = false; });
  // Start at once: by the time the form is filled in, the puzzle is solved.
  solve();
  form.addEventListener("submit", function (e) {
    if (!field.value) { e.preventDefault(); solve(); box.focus(); }
  });
})();
