/* ponder's trace viewer (ponder/view): draws each panel's trace as a tidy tree.
 *
 * The page holds its data in <script id="ponder-data" type="application/json">:
 *   {panels: [{label, question, gold, correct, right: {node id: bool}, trace}], status, live}
 * A trace is `Trace.to_dict()`: {scheme, nodes: [{id, parent, text, score, ...}], chosen, meta}.
 * Chains (self-consistency) are several roots, trees link children to parents: every panel
 * hangs its roots under one virtual root (the question), so one layout serves both.
 * Layout: d3-hierarchy's tidy tree (Reingold-Tilford), vendored. Pan and zoom are written here
 * (wheel and drag on one transform): d3-zoom would bring six more modules for ~40 lines.
 * Model text is untrusted: it only ever reaches the DOM as textContent, never as markup.
 */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const W = 164, H = 36;                 // a node's box
  const DX = H + 10, DY = W + 44;        // row pitch, column pitch
  const data = JSON.parse(document.getElementById("ponder-data").textContent);
  const statusEl = document.getElementById("status");
  const main = document.getElementById("panels");

  const el = (tag, attrs, text) => {
    const e = tag.startsWith("svg:") ? document.createElementNS(NS, tag.slice(4))
      : document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const fmt = (x, digits) => (typeof x === "number" && isFinite(x) ? x.toFixed(digits || 3)
    : String(x));
  const clip = (s, n) => (s.length <= n ? s : s.slice(0, n - 1) + "…");
  const oneLine = (s) => s.replace(/\s+/g, " ").trim();

  class Panel {
    constructor(spec, index) {
      this.spec = spec;
      this.collapsed = new Set();
      this.selected = null;
      this.query = "";
      this.t = { x: 20, y: 20, k: 1 };
      this.autoFit = true;
      this.root = el("section", { class: "panel", "data-panel": index });
      this.head = el("header");
      this.canvas = el("div", { class: "canvas" });
      this.svg = el("svg:svg");
      this.vp = el("svg:g", { class: "viewport" });
      this.svg.appendChild(this.vp);
      this.canvas.appendChild(this.svg);
      this.details = el("div", { class: "details" });
      this.root.append(this.head, this.canvas, this.details);
      main.appendChild(this.root);
      this.listen();
      this.setTrace(spec.trace);
      this.showDetails();
    }

    setTrace(trace) {
      this.trace = trace;
      this.byId = new Map();
      for (const n of trace.nodes) this.byId.set(n.id, { n: n, kids: [] });
      this.roots = [];
      for (const n of trace.nodes) {
        const p = n.parent;
        const item = this.byId.get(n.id);
        if (p !== null && p !== undefined && p !== n.id && this.byId.has(p)) {
          this.byId.get(p).kids.push(item);
        } else {
          this.roots.push(item);
        }
      }
      this.chosen = new Set(trace.chosen || []);
      this.lower = new Map();
    }

    // -- drawing -------------------------------------------------------------------------
    draw() {
      const tree = d3.hierarchy({ n: null, kids: this.roots },
        (d) => (d.n && this.collapsed.has(d.n.id) ? null : d.kids));
      d3.tree().nodeSize([DX, DY]).separation((a, b) => (a.parent === b.parent ? 1 : 1.25))(tree);
      this.layout = tree;
      const links = el("svg:g", { class: "links" });
      const nodes = el("svg:g", { class: "nodes" });
      const at = new Map();
      this.elements = new Map();
      const matches = this.matches();
      const firstChosen = (this.trace.chosen || [])[0];
      tree.each((d) => {
        if (!d.data.n) {
          const g = el("svg:g", { class: "vroot", transform: `translate(0,${d.x})` });
          g.append(el("svg:circle", { r: 8 }), el("svg:text", { x: -12, y: -12 }, "question"));
          nodes.appendChild(g);
          return;
        }
        const n = d.data.n;
        at.set(n.id, d);
        const p = d.parent;
        const x0 = p.data.n ? p.y + W : p.y + 8;
        const mid = (x0 + d.y) / 2;
        const onPath = this.chosen.has(n.id) && (p.data.n ? this.chosen.has(p.data.n.id)
          : n.id === firstChosen);
        links.appendChild(el("svg:path", {
          class: onPath ? "link chosen" : "link",
          d: `M${x0},${p.x}C${mid},${p.x} ${mid},${d.x} ${d.y},${d.x}`,
        }));
        nodes.appendChild(this.box(n, d, matches));
      });
      for (const [id, d] of at) {  // graph merges (aggregate): a dashed link from each source
        const sources = d.data.n.meta && d.data.n.meta.sources;
        if (!Array.isArray(sources)) continue;
        for (const s of sources) {
          const from = at.get(s);
          if (from && s !== id) {
            links.appendChild(el("svg:path", { class: "link merge",
              d: `M${from.y + W},${from.x}L${d.y},${d.x}` }));
          }
        }
      }
      this.vp.replaceChildren(links, nodes);
      this.apply();
      this.drawHead(matches);
    }

    box(n, d, matches) {
      const cls = ["node"];
      if (this.chosen.has(n.id)) cls.push("chosen");
      const right = this.spec.right ? this.spec.right[n.id] : undefined;
      if (right === true) cls.push("right");
      if (right === false) cls.push("wrong");
      if (n.terminal) cls.push("terminal");
      if (this.query) cls.push(matches.has(n.id) ? "match" : "dim");
      if (this.selected === n.id) cls.push("selected");
      const g = el("svg:g", { class: cls.join(" "), "data-id": n.id,
        transform: `translate(${d.y},${d.x - H / 2})` });
      g.appendChild(el("svg:rect", { width: W, height: H }));
      const stats = [`#${n.id}`];
      if (n.score !== null && n.score !== undefined) stats.push(`s ${fmt(n.score, 2)}`);
      if (n.visits) stats.push(`n ${n.visits}`);
      if (n.value) stats.push(`v ${fmt(n.value, 2)}`);
      g.appendChild(el("svg:text", { x: 6, y: 14 }, clip(stats.join(" · "), 27)));
      const line = n.answer !== null && n.answer !== undefined
        ? el("svg:text", { x: 6, y: 29, class: "ans" },
          clip("→ " + oneLine(n.answer) + (right === true ? " ✓" : right === false ? " ✗" : ""), 27))
        : el("svg:text", { x: 6, y: 29, class: "sub" }, clip(oneLine(n.text) || "(empty)", 27));
      g.appendChild(line);
      const kids = this.byId.get(n.id).kids.length;
      if (kids) {
        const shut = this.collapsed.has(n.id);
        const t = el("svg:g", { class: "toggle", "data-toggle": n.id,
          transform: `translate(${W + 9},${H / 2})` });
        t.append(el("svg:circle", { r: 8 }), el("svg:text", { y: 3.5 }, shut ? `+${kids}` : "−"));
        g.appendChild(t);
      }
      this.elements.set(n.id, g);
      return g;
    }

    drawHead(matches) {
      const s = this.spec, nodes = this.trace.nodes;
      const last = this.byId.get((this.trace.chosen || []).slice(-1)[0]);
      const facts = [this.trace.scheme || "(unnamed scheme)",
        `${nodes.length} node${nodes.length === 1 ? "" : "s"}`];
      if (last && last.n.answer != null) facts.push(`answer ${clip(oneLine(last.n.answer), 30)}`);
      if (s.gold != null) facts.push(`gold ${clip(oneLine(String(s.gold)), 30)}`);
      const h2 = el("h2", {}, s.label || this.trace.scheme || "trace");
      const p = el("div", { class: "facts" }, facts.join(" · "));
      if (s.correct === true || s.correct === false) {
        p.append(" ", el("span", { class: s.correct ? "ok" : "bad" },
          s.correct ? "✓ right" : "✗ wrong"));
      }
      if (this.query) p.append(` · ${matches.size} match${matches.size === 1 ? "" : "es"}`);
      this.head.replaceChildren(h2, p);
    }

    // -- search, collapse, selection -----------------------------------------------------
    matches() {
      const found = new Set();
      if (!this.query) return found;
      const byIdQuery = /^#(\d+)$/.exec(this.query);
      for (const n of this.trace.nodes) {
        if (byIdQuery) {
          if (n.id === Number(byIdQuery[1])) found.add(n.id);
          continue;
        }
        let low = this.lower.get(n.id);
        if (low === undefined) {
          low = (n.text + "\n" + (n.answer || "")).toLowerCase();
          this.lower.set(n.id, low);
        }
        if (low.includes(this.query)) found.add(n.id);
      }
      return found;
    }

    search(query) {
      this.query = query.trim().toLowerCase();
      for (const id of this.matches()) this.reveal(id);
      this.draw();
    }

    reveal(id) {  // open every collapsed ancestor of node `id`
      let item = this.byId.get(id);
      while (item && item.n.parent !== null && item.n.parent !== item.n.id) {
        this.collapsed.delete(item.n.parent);
        item = this.byId.get(item.n.parent);
      }
    }

    nextMatch() {
      const list = [...this.matches()];
      if (!list.length) return;
      const at = list.indexOf(this.selected);
      this.select(list[(at + 1) % list.length], true);
    }

    select(id, center) {
      const before = this.elements.get(this.selected);
      if (before) before.classList.remove("selected");
      this.selected = id;
      const now = this.elements.get(id);
      if (now) now.classList.add("selected");
      this.showDetails();
      const d = this.layout && this.layout.descendants().find((x) => x.data.n && x.data.n.id === id);
      if (center && d) {
        this.t.x = this.svg.clientWidth / 2 - (d.y + W / 2) * this.t.k;
        this.t.y = this.svg.clientHeight / 2 - d.x * this.t.k;
        this.autoFit = false;
        this.apply();
      }
    }

    showDetails() {
      const box = this.details;
      const item = this.byId.get(this.selected);
      if (!item) {
        const parts = [el("div", { class: "hint" }, "Click a node for its text; drag to pan, " +
          "wheel to zoom, ± to collapse; search finds step text (#12 finds node 12).")];
        if (this.spec.question) parts.push(el("pre", {}, this.spec.question));
        const meta = this.trace.meta || {};
        if (Object.keys(meta).length) parts.push(el("pre", { class: "note" }, JSON.stringify(meta)));
        box.replaceChildren(...parts);
        return;
      }
      const n = item.n;
      const rows = [["tokens", n.tokens], ["score", n.score == null ? "—" : fmt(n.score)],
        ["value", fmt(n.value || 0)], ["visits", n.visits || 0], ["depth", n.depth],
        ["role", n.role], ["finish", n.finish_reason || "—"], ["terminal", n.terminal ? "yes" : "no"]];
      const right = this.spec.right ? this.spec.right[n.id] : undefined;
      if (n.answer != null) {
        rows.unshift(["answer", n.answer + (right === true ? "  ✓ right" : right === false ? "  ✗ wrong" : "")]);
      }
      if (n.meta && Object.keys(n.meta).length) rows.push(["meta", JSON.stringify(n.meta)]);
      const table = el("table");
      for (const [k, v] of rows) {
        const tr = el("tr");
        tr.append(el("td", {}, k), el("td", {}, String(v)));
        table.appendChild(tr);
      }
      const path = el("div", { class: "path" }, "path: ");
      const ids = [];
      for (let at = item; at; at = at.n.parent === at.n.id ? null : this.byId.get(at.n.parent)) {
        ids.unshift(at.n.id);
        if (ids.length > 10000) break;
      }
      for (const id of ids) {
        const a = el("a", {}, `#${id}`);
        a.addEventListener("click", () => this.select(id, true));
        path.appendChild(a);
      }
      box.replaceChildren(el("b", {}, `#${n.id}` + (this.chosen.has(n.id) ? " (chosen path)" : "")),
        table, path, this.textOf(n));
    }

    textOf(n) {  // the text, with what ponder inserted (forced spans) marked
      const pre = el("pre");
      const spans = n.forced || [];
      if (!spans.length) {
        pre.textContent = n.text || "(empty)";
        return pre;
      }
      const chars = Array.from(n.text);  // spans count code points, as Python does
      let at = 0;
      for (const [a, b] of spans.slice().sort((x, y) => x[0] - y[0])) {
        if (a > at) pre.append(chars.slice(at, a).join(""));
        pre.appendChild(el("mark", { class: "forced", title: "inserted by ponder" },
          chars.slice(Math.max(a, at), b).join("")));
        at = Math.max(at, b);
      }
      pre.append(chars.slice(at).join(""));
      return pre;
    }

    // -- pan and zoom --------------------------------------------------------------------
    apply() {
      if (this.autoFit) this.fit();
      this.vp.setAttribute("transform", `translate(${this.t.x},${this.t.y}) scale(${this.t.k})`);
    }

    fit() {
      const all = this.layout.descendants();
      let x0 = Infinity, x1 = -Infinity, y1 = 0;
      for (const d of all) {
        x0 = Math.min(x0, d.x - H / 2); x1 = Math.max(x1, d.x + H / 2); y1 = Math.max(y1, d.y);
      }
      const w = y1 + W + 60, h = x1 - x0 + 40;
      const cw = this.svg.clientWidth || 800, ch = this.svg.clientHeight || 600;
      const k = Math.max(0.15, Math.min(1, cw / w, ch / h));
      this.t = { k: k, x: 30 * k, y: h * k <= ch ? (ch - h * k) / 2 - (x0 - 20) * k : ch / 2 };
    }

    listen() {
      this.svg.addEventListener("click", (e) => {
        const toggle = e.target.closest("[data-toggle]");
        if (toggle) {
          const id = Number(toggle.getAttribute("data-toggle"));
          if (!this.collapsed.delete(id)) this.collapsed.add(id);
          this.draw();
          return;
        }
        const node = e.target.closest("g.node");
        if (node) this.select(Number(node.getAttribute("data-id")), false);
        else if (e.target.closest("g.vroot")) this.select(null, false);
      });
      this.svg.addEventListener("wheel", (e) => {
        e.preventDefault();
        const r = this.svg.getBoundingClientRect(), px = e.clientX - r.left, py = e.clientY - r.top;
        const k = Math.min(4, Math.max(0.05, this.t.k * Math.exp(-e.deltaY * 0.002)));
        this.t = { k: k, x: px - (px - this.t.x) * k / this.t.k, y: py - (py - this.t.y) * k / this.t.k };
        this.autoFit = false;
        this.apply();
      }, { passive: false });
      let drag = null;
      this.svg.addEventListener("pointerdown", (e) => {
        if (e.button !== 0 || e.target.closest("g.node, [data-toggle]")) return;
        drag = { x: e.clientX, y: e.clientY };
        this.svg.setPointerCapture(e.pointerId);
        this.canvas.classList.add("dragging");
      });
      this.svg.addEventListener("pointermove", (e) => {
        if (!drag) return;
        this.t.x += e.clientX - drag.x; this.t.y += e.clientY - drag.y;
        drag = { x: e.clientX, y: e.clientY };
        this.autoFit = false;
        this.apply();
      });
      const end = () => { drag = null; this.canvas.classList.remove("dragging"); };
      this.svg.addEventListener("pointerup", end);
      this.svg.addEventListener("pointercancel", end);
    }
  }

  // -- the page ------------------------------------------------------------------------------
  const panels = data.panels.map((spec, i) => new Panel(spec, i));
  const setStatus = (text) => { if (statusEl) statusEl.textContent = text; };
  const total = () => panels.reduce((sum, p) => sum + p.trace.nodes.length, 0);
  for (const p of panels) p.draw();
  window.ponderRendered = { ms: performance.now(), nodes: document.querySelectorAll("g.node").length };
  document.documentElement.setAttribute("data-rendered-ms", window.ponderRendered.ms.toFixed(1));
  if (!panels.length) main.appendChild(el("p", { class: "note" }, "No traces to show."));

  const search = document.getElementById("search");
  let pending = null;
  search.addEventListener("input", () => {
    clearTimeout(pending);
    pending = setTimeout(() => panels.forEach((p) => p.search(search.value)), 120);
  });
  search.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { panels.forEach((p) => p.search(search.value)); panels.forEach((p) => p.nextMatch()); }
    if (e.key === "Escape") { search.value = ""; panels.forEach((p) => p.search("")); }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "/" && document.activeElement !== search) { e.preventDefault(); search.focus(); }
  });
  document.getElementById("fit").addEventListener("click", () => {
    for (const p of panels) { p.autoFit = true; p.apply(); }
  });
  window.addEventListener("resize", () => panels.forEach((p) => p.autoFit && p.apply()));

  // -- live: a search still running on `ponder serve --keep-traces` --------------------------
  const live = data.live;
  if (live && data.status === "running") {
    const key = new URLSearchParams(location.search).get("key");
    const headers = key ? { Authorization: "Bearer " + key } : {};
    let seen = "";
    const poll = async () => {
      let wait = live.every_ms;
      try {
        const r = await fetch(live.url, { headers: headers, cache: "no-store" });
        if (!r.ok) { setStatus(`stopped following: HTTP ${r.status}`); return; }
        const text = await r.text();
        const kept = JSON.parse(text);
        if (text !== seen) {
          seen = text;
          kept.traces.forEach((trace, i) => {
            const p = panels[i] || (panels[i] = new Panel({ label: `choice ${i}`, trace: trace }, i));
            p.setTrace(trace);
            p.draw();
            if (p.selected !== null) p.showDetails();
          });
        }
        if (kept.status !== "running") { setStatus(`${kept.status} · ${total()} nodes`); return; }
        setStatus(`searching… ${total()} nodes`);
      } catch (err) {
        setStatus("connection lost; retrying");
        wait = live.every_ms * 4;
      }
      setTimeout(poll, wait);
    };
    setStatus(`searching… ${total()} nodes`);
    setTimeout(poll, live.every_ms);
  } else if (data.status) {
    setStatus(`${data.status} · ${total()} nodes`);
  }
})();
