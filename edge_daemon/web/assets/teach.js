// The Teach view: samples per class (from the live frame or an event's snapshot),
// Train, the report (accuracy, confusion matrix), Use this model. Reads
// /api/teach every 3 s (every second while frames are added or training runs).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  let view = null;       // the last GET /api/teach
  let applying = false;  // "Use this model" pressed, the reload not seen yet
  let timer = null;
  let classesShown = "";  // the classes last drawn, as JSON

  const say = (message, bad) => {
    const line = $("teach-message");
    line.textContent = message || "";
    line.dataset.bad = bad ? "yes" : "";
  };

  async function send(method, path, body) {
    const options = { method, cache: "no-store", headers: {} };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let answer = {};
    try { answer = await response.json(); } catch (err) { /* an empty body */ }
    if (!response.ok) throw new Error(answer.error || `${method} ${path}: ${response.status}`);
    return answer;
  }

  const percent = (v) => `${(Number(v) * 100).toFixed(1)}%`;

  function showClasses(classes) {
    $("teach-names").replaceChildren(...classes.map((c) => {
      const option = document.createElement("option");
      option.value = c.name;
      return option;
    }));
    $("teach-empty").hidden = classes.length > 0;
    $("teach-list").replaceChildren(...classes.map((c) => {
      const block = document.createElement("div");
      block.className = "teach-class";
      block.dataset.name = c.name;
      const head = document.createElement("h3");
      const name = document.createElement("span");
      name.className = "teach-class-name";
      name.textContent = c.name;
      const count = document.createElement("span");
      count.className = "teach-count";
      count.textContent = `${c.count} sample${c.count === 1 ? "" : "s"}`;
      const drop = document.createElement("button");
      drop.type = "button";
      drop.className = "teach-drop";
      drop.textContent = "remove class";
      drop.disabled = !view.can_write;
      drop.addEventListener("click", () => removeClass(c.name, c.count));
      head.append(name, count, drop);
      const strip = document.createElement("ul");
      strip.className = "teach-samples";
      strip.append(...c.samples.map((s) => {
        const li = document.createElement("li");
        const img = document.createElement("img");
        img.loading = "lazy";
        img.src = s.thumbnail;
        img.alt = `${c.name} sample`;
        img.title = `${s.source}, ${new Date(s.added).toLocaleString()}`;
        const del = document.createElement("button");
        del.type = "button";
        del.className = "teach-del";
        del.textContent = "×";
        del.title = "remove this sample";
        del.disabled = !view.can_write;
        del.addEventListener("click", () => removeSample(s.id));
        li.append(img, del);
        return li;
      }));
      if (c.count > c.samples.length) {
        const more = document.createElement("li");
        more.className = "teach-more";
        more.textContent = `+${c.count - c.samples.length}`;
        strip.appendChild(more);
      }
      block.append(head, strip);
      return block;
    }));
  }

  function showReport(report) {
    const box = $("teach-report");
    box.hidden = !report;
    if (!report) return;
    const classes = report.classes || [];
    const perClass = report.per_class || {};
    const parts = [];
    if (typeof report.accuracy === "number") {
      const folds = report.folds ? ` (${report.folds}-fold)` : "";
      parts.push(`Cross-validated accuracy${folds} ${percent(report.accuracy)}`);
    }
    const each = classes.filter((c) => typeof perClass[c] === "number")
      .map((c) => `${c} ${percent(perClass[c])}`);
    if (each.length) parts.push(each.join(", "));
    if (report.samples) parts.push(`${report.samples} samples`);
    const when = report.date ? new Date(report.date) : null;
    if (when && !isNaN(when)) parts.push(`trained ${when.toLocaleString()}`);
    $("teach-accuracy").textContent = parts.join(" · ");
    const table = $("teach-confusion");
    const matrix = report.confusion || [];
    if (!classes.length || matrix.length !== classes.length) {
      table.replaceChildren();
      return;
    }
    const cell = (tag, content, cls) => {
      const c = document.createElement(tag);
      c.textContent = content;
      if (cls) c.className = cls;
      return c;
    };
    const caption = document.createElement("caption");
    caption.textContent = "rows: the class of the sample; columns: what it was taken for";
    const head = document.createElement("tr");
    head.append(cell("th", ""), ...classes.map((c) => cell("th", c)));
    const rows = matrix.map((row, i) => {
      const tr = document.createElement("tr");
      tr.append(cell("th", classes[i]),
        ...row.map((n, j) => cell("td", String(n), i === j ? "hit" : (n ? "miss" : ""))));
      return tr;
    });
    table.replaceChildren(caption, head, ...rows);
  }

  function showTraining(training, model) {
    const line = $("teach-training");
    if (training.state === "running") {
      line.textContent = `training… ${training.progress || ""}`;
    } else if (training.state === "failed") {
      line.textContent = `training failed: ${training.error}`;
    } else if (model.in_use) {
      line.textContent = "the taught model is in use";
    } else if (model.exists) {
      line.textContent = training.state === "done" ? "trained: press Use this model" : "";
    } else {
      line.textContent = "";
    }
    line.dataset.state = training.state;
    $("teach-train").disabled = !view.can_write || training.state === "running";
    $("teach-use").disabled = !view.can_write || training.state === "running" ||
      !model.exists || model.in_use;
  }

  let captureSaid = ""; // what the page last said of the frames being added
  function showCapture(capture) {
    if (!capture) return;
    let line = `adding frames to ${capture.class}: ${capture.done} of ${capture.of}`;
    if (capture.finished) {
      line = capture.error || `added ${capture.done} frames to ${capture.class}`;
    }
    if (line === captureSaid) return; // said once: later messages are not overwritten
    captureSaid = line;
    say(line, Boolean(capture.error));
  }

  async function refresh() {
    schedule(5000); // kept when this read fails: the view tries again
    try {
      const response = await fetch("/api/teach", { cache: "no-store" });
      if (!response.ok) return;
      view = await response.json();
    } catch (err) { return; /* the status poll reports an unreachable daemon */ }
    const note = $("teach-note");
    note.hidden = view.can_write;
    note.textContent = view.can_write ? "" :
      "Teaching from this page needs http.auth (token or basic) in the config, as reload " +
      "does; until then use edge-daemon teach on the Pi.";
    for (const id of ["teach-add-button", "teach-class", "teach-what"]) {
      $(id).disabled = !view.can_write;
    }
    const shown = JSON.stringify([view.classes, view.can_write]);
    if (shown !== classesShown) { // thumbnails are rebuilt only when something changed
      classesShown = shown;
      showClasses(view.classes);
    }
    showReport(view.report);
    showTraining(view.training, view.model);
    showCapture(view.capture);
    const apply = view.apply;
    if (applying && apply && apply.state !== "pending") {
      applying = false;
      if (apply.state === "done") {
        const names = (view.report && view.report.classes) || [];
        say(`now classifying with the taught model (${names.join(", ")})`);
      } else {
        say(apply.error, true);
      }
    }
    const busy = applying || view.training.state === "running" ||
      (view.capture && !view.capture.finished);
    schedule(busy ? 1000 : 3000);
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(refresh, ms);
  }

  async function act(work) {
    try {
      await work();
    } catch (err) {
      say(err.message, true);
    }
    schedule(0);
  }

  $("teach-add").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("teach-class").value.trim();
    const what = $("teach-what").value;
    act(async () => {
      if (what.startsWith("event:")) {
        const id = Number(what.slice(6));
        await send("POST", "/api/teach/samples", { class: name, event: id });
        say(`added event ${id}'s snapshot to ${name}`);
        return;
      }
      const frames = Number(what);
      const answer = await send("POST", "/api/teach/samples", { class: name, frames });
      if (answer.added) say(`added this frame to ${name}`);
      else say(`adding ${frames} frames to ${name}…`);
    });
  });

  $("teach-train").addEventListener("click", () => act(async () => {
    await send("POST", "/api/teach/train");
    say("training started");
  }));

  $("teach-use").addEventListener("click", () => act(async () => {
    const answer = await send("POST", "/api/teach/apply");
    if (answer.apply !== "requested") {
      say("the taught model is in use already");
      return;
    }
    applying = true;
    say("loading the taught model…");
  }));

  function removeSample(id) {
    act(async () => {
      await send("DELETE", `/api/teach/samples/${encodeURIComponent(id)}`);
      say("sample removed");
    });
  }

  function removeClass(name, count) {
    if (!window.confirm(`Remove the class ${name} and its ${count} samples?`)) return;
    act(async () => {
      await send("DELETE", `/api/teach/classes/${encodeURIComponent(name)}`);
      say(`class ${name} removed`);
    });
  }

  // app.js calls this for each event with a snapshot in the events list.
  window.teachEvent = (li, e) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "teach-event";
    button.textContent = "add to a class…";
    button.dataset.event = e.id;
    button.disabled = Boolean(view) && !view.can_write;
    button.addEventListener("click", () => {
      const select = $("teach-what");
      const value = `event:${e.id}`;
      let option = [...select.options].find((o) => o.value === value);
      if (!option) {
        option = document.createElement("option");
        option.value = value;
        option.textContent = `event ${e.id}'s snapshot (${String(e.label).split(",")[0]})`;
        select.appendChild(option);
      }
      select.value = value;
      $("teach").scrollIntoView({ behavior: "smooth", block: "start" });
      $("teach-class").focus();
      say(`choose the class for event ${e.id}'s snapshot, then Add`);
    });
    li.appendChild(button);
  };

  refresh();
})();
