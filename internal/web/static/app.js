// Gatehouse console: small progressive enhancements. Every page works without this file.
"use strict";

(function () {
  // Copy buttons: <button data-copy="#element-id">.
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest("button[data-copy]");
    if (!btn) return;
    var el = document.querySelector(btn.getAttribute("data-copy"));
    if (!el) return;
    var text = el.textContent;
    var done = function () {
      var old = btn.textContent;
      btn.textContent = "Copied";
      setTimeout(function () { btn.textContent = old; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectText(el); });
    } else {
      selectText(el);
    }
  });

  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  // Confirmation modal. <form data-confirm="message"> asks before submitting; a submit button with
  // data-confirm-checkbox asks only when that checkbox is ticked and then sets data-confirm-field.
  var dialog = document.getElementById("confirm-dialog");
  function ask(message, onOK) {
    if (!dialog || typeof dialog.showModal !== "function") {
      if (window.confirm(message)) onOK();
      return;
    }
    document.getElementById("confirm-message").textContent = message;
    dialog.returnValue = "";
    dialog.showModal();
    document.getElementById("confirm-ok").focus();
    dialog.addEventListener("close", function handler() {
      dialog.removeEventListener("close", handler);
      if (dialog.returnValue === "ok") onOK();
    });
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var submitter = ev.submitter;
    if (form.dataset.confirm && form.dataset.confirmed !== "yes") {
      ev.preventDefault();
      ask(form.dataset.confirm, function () { form.dataset.confirmed = "yes"; form.submit(); });
      return;
    }
    if (submitter && submitter.dataset.confirmCheckbox) {
      var box = document.getElementById(submitter.dataset.confirmCheckbox);
      var field = document.getElementById(submitter.dataset.confirmField);
      if (box && box.checked && field && field.value !== "yes") {
        ev.preventDefault();
        ask(submitter.dataset.confirmText, function () { field.value = "yes"; form.submit(); });
      }
    }
  });

  // Register Repository User: show only the chosen secret source's fields.
  var source = document.getElementById("f-secret-source");
  if (source) {
    var sync = function () {
      document.querySelectorAll("fieldset[data-source]").forEach(function (fs) {
        var on = fs.dataset.source === source.value;
        fs.hidden = !on;
        fs.disabled = !on;
      });
    };
    source.addEventListener("change", sync);
    sync();
  }

  // New Access Token: the custom expiry field only when "Custom" is chosen.
  var ttl = document.getElementById("f-ttl");
  var custom = document.getElementById("f-ttl_custom");
  if (ttl && custom) {
    var wrap = custom.closest(".field");
    var syncTTL = function () { wrap.hidden = ttl.value !== "custom"; };
    ttl.addEventListener("change", syncTTL);
    syncTTL();
  }

  // Sidecar Instances: live status.
  var table = document.querySelector("table[data-live]");
  if (table) {
    var url = table.getAttribute("data-live");
    var tbody = table.querySelector("tbody");
    var fmt = function (s) {
      if (!s || s.indexOf("0001-") === 0) return "—";
      var d = new Date(s);
      return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
    };
    var cell = function (tr, text, cls) {
      var td = document.createElement("td");
      if (cls) {
        var span = document.createElement("span");
        span.className = "status " + cls;
        span.textContent = text;
        td.appendChild(span);
      } else {
        td.textContent = text;
      }
      tr.appendChild(td);
    };
    var refresh = function () {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (list) {
          var rows = document.createDocumentFragment();
          if (!list.length) {
            var tr = document.createElement("tr");
            tr.className = "none";
            var td = document.createElement("td");
            td.colSpan = 8;
            td.textContent = "No instance has connected yet.";
            tr.appendChild(td);
            rows.appendChild(tr);
          }
          list.forEach(function (i) {
            var tr = document.createElement("tr");
            cell(tr, i.status, i.status);
            var id = document.createElement("td");
            var code = document.createElement("code");
            code.textContent = i.instance_id;
            id.appendChild(code);
            tr.appendChild(id);
            cell(tr, i.hostname);
            cell(tr, i.version);
            cell(tr, (i.ports || []).join(", "));
            cell(tr, String(i.config_version));
            cell(tr, fmt(i.last_seen));
            cell(tr, (i.errors || []).join("; "));
            rows.appendChild(tr);
          });
          tbody.replaceChildren(rows);
          table.dataset.refreshed = String(Date.now());
        })
        .catch(function () { /* keep the last table; the next refresh tries again */ });
    };
    setInterval(refresh, 3000);
  }
})();
