// PeekAPI dashboard: draws the charts (uPlot) from each page's JSON twin, the sparklines, and the live stream.
// Everything that came over the wire is set with textContent, never as HTML.
(function () {
  "use strict";

  var NUM = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

  function fmtBytes(n) {
    var units = ["B", "KB", "MB", "GB"];
    var i = 0;
    while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(1)) + " " + units[i];
  }
  function fmtMs(v) { return v === null || v === undefined ? "-" : NUM.format(v); }
  function pct(v) { return (v * 100).toFixed(2) + "%"; }

  function setText(root, selector, value, raw) {
    var el = root.querySelector(selector);
    if (!el) return;
    el.textContent = value;
    if (raw !== undefined) el.dataset.value = JSON.stringify(raw);
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } }).then(function (r) {
      if (r.status === 401) {
        location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
        throw new Error("logged out");
      }
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    });
  }

  function showError(root, err) {
    var p = document.createElement("p");
    p.className = "error";
    p.textContent = "Could not load the figures: " + err.message;
    root.prepend(p);
  }

  // Selects that submit their form when changed (the project switcher).
  document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
    s.addEventListener("change", function () { s.form.submit(); });
  });

  // ---- charts --------------------------------------------------------------------------------------------
  function zoomTo(u) {
    var sel = u.select;
    if (!sel || sel.width < 4) return;
    var from = Math.floor(u.posToVal(sel.left, "x"));
    var to = Math.ceil(u.posToVal(sel.left + sel.width, "x"));
    if (!(to > from)) return;
    var params = new URLSearchParams(location.search);
    params.delete("range");
    params.set("from", String(from));
    params.set("to", String(to));
    location.assign(location.pathname + "?" + params.toString());
  }

  // Indices of values with no value on either side: drawn as points, since a line needs two.
  function isolated(u, seriesIdx) {
    var ys = u.data[seriesIdx], out = [];
    for (var i = 0; i < ys.length; i++) {
      if (ys[i] != null && (i === 0 || ys[i - 1] == null) && (i === ys.length - 1 || ys[i + 1] == null)) out.push(i);
    }
    return out.length ? out : null;
  }

  var COUNTS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 1e6, 1e7, 1e8, 1e9];

  // the y axis as wide as its longest label ("1,000 ms", "400.0 KB"), measured on uPlot's second pass
  function axisSize(u, values) {
    if (!values) return 60;
    var longest = values.reduce(function (m, v) { return Math.max(m, String(v).length); }, 0);
    return Math.max(40, longest * 7 + 24);
  }

  function drawChart(root, name, xs, series, yValue, opts2) {
    opts2 = opts2 || {};
    var el = root.querySelector('[data-chart="' + name + '"]');
    if (!el) return;
    var opts = {
      width: Math.max(el.clientWidth, 280),
      height: 200,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      cursor: { drag: { x: true, y: false, setScale: false } },
      select: { show: true },
      scales: { x: { time: true } },
      axes: [{}, { values: function (u, vals) { return vals.map(yValue); }, size: axisSize, incrs: opts2.incrs }],
      series: [{ label: "Time (UTC)" }].concat(series.map(function (s) {
        // points shown where a series has values between gaps (a lone minute would draw no line)
        return { label: s.label, stroke: s.color, width: 2, dash: s.dash, fill: s.fill, spanGaps: false,
                 points: opts2.points ? { show: false, size: 6, fill: s.color, filter: isolated } : undefined,
                 value: function (u, v) { return v === null || v === undefined ? "-" : yValue(v); } };
      })),
      hooks: { setSelect: [zoomTo] },
    };
    var data = [xs].concat(series.map(function (s) { return s.values; }));
    var u = new uPlot(opts, data, el);
    el.dataset.points = String(xs.length);
    el.dataset.sums = JSON.stringify(series.map(function (s) {
      return s.values.reduce(function (a, v) { return a + (v || 0); }, 0);
    }));
    el.dataset.drawn = "true";
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        var w = Math.max(el.clientWidth, 280);
        if (Math.abs(w - u.width) > 4) u.setSize({ width: w, height: 200 });
      }).observe(el);
    }
  }

  function delta(now, before) {
    if (before === null || before === undefined || now === null || now === undefined) return "";
    if (before === 0) return now === 0 ? "same as before" : "new (nothing before)";
    var d = ((now - before) / before) * 100;
    return (d >= 0 ? "+" : "") + d.toFixed(0) + "% vs previous";
  }

  function drawOverview(root, data) {
    var cur = data.current, prev = data.previous, t = cur.totals, pt = prev.totals;
    setText(root, '[data-total="requests"]', NUM.format(t.requests), t.requests);
    setText(root, '[data-total="errors_4xx"]', NUM.format(t.errors_4xx), t.errors_4xx);
    setText(root, '[data-total="errors_5xx"]', NUM.format(t.errors_5xx), t.errors_5xx);
    setText(root, '[data-total="error_rate"]', pct(t.error_rate), t.error_rate);
    setText(root, '[data-total="latency"]', fmtMs(t.p50_ms) + " / " + fmtMs(t.p95_ms) + " / " + fmtMs(t.p99_ms) + " ms",
            [t.p50_ms, t.p95_ms, t.p99_ms]);
    setText(root, '[data-total="bytes"]', fmtBytes(t.bytes_in) + " / " + fmtBytes(t.bytes_out), [t.bytes_in, t.bytes_out]);
    ["requests", "errors_4xx", "errors_5xx", "error_rate", "p95_ms", "bytes_out"].forEach(function (k) {
      setText(root, '[data-delta="' + k + '"]', delta(t[k], pt[k]));
    });
    var xs = cur.series.map(function (p) { return p.t; });
    function col(series, key) { return series.map(function (p) { return p[key]; }); }
    var prevReq = xs.map(function (_, i) { return prev.series[i] ? prev.series[i].requests : null; });
    function rate(key) {
      return cur.series.map(function (p) { return p.requests ? (p[key] / p.requests) * 100 : null; });
    }
    drawChart(root, "requests", xs, [
      { label: "Requests", values: col(cur.series, "requests"), color: "#2563eb", fill: "rgba(37,99,235,0.12)" },
      { label: "Previous period", values: prevReq, color: "#9ca3af", dash: [6, 4] },
    ], function (v) { return NUM.format(v); }, { incrs: COUNTS });
    drawChart(root, "errors", xs, [
      { label: "4xx %", values: rate("errors_4xx"), color: "#d97706" },
      { label: "5xx %", values: rate("errors_5xx"), color: "#dc2626" },
    ], function (v) { return v.toFixed(1) + "%"; }, { points: true });
    drawChart(root, "latency", xs, [
      { label: "p50", values: col(cur.series, "p50_ms"), color: "#16a34a" },
      { label: "p95", values: col(cur.series, "p95_ms"), color: "#d97706" },
      { label: "p99", values: col(cur.series, "p99_ms"), color: "#dc2626" },
    ], function (v) { return NUM.format(v) + " ms"; }, { points: true });
    drawChart(root, "bytes", xs, [
      { label: "In", values: col(cur.series, "bytes_in"), color: "#7c3aed" },
      { label: "Out", values: col(cur.series, "bytes_out"), color: "#0891b2" },
    ], fmtBytes);
    root.dataset.loaded = "true";
  }

  var charts = document.getElementById("charts");
  if (charts && window.uPlot) {
    getJSON(charts.dataset.src).then(function (data) { drawOverview(charts, data); })
      .catch(function (err) { showError(charts, err); });
  }

  // ---- sparklines ----------------------------------------------------------------------------------------
  var SVG = "http://www.w3.org/2000/svg";
  function sparkline(cell, values) {
    var w = 120, h = 28, max = Math.max.apply(null, values.concat([1]));
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("width", String(w));
    svg.setAttribute("height", String(h));
    svg.setAttribute("class", "sparkline");
    var line = document.createElementNS(SVG, "polyline");
    var step = values.length > 1 ? w / (values.length - 1) : w;
    line.setAttribute("points", values.map(function (v, i) {
      return (i * step).toFixed(1) + "," + (h - 2 - (v / max) * (h - 4)).toFixed(1);
    }).join(" "));
    svg.appendChild(line);
    cell.appendChild(svg);
    cell.dataset.sum = String(values.reduce(function (a, v) { return a + v; }, 0));
  }
  var table = document.querySelector("table.sortable[data-src]");
  if (table) {
    getJSON(table.dataset.src).then(function (data) {
      data.sparklines.forEach(function (values, i) {
        var cell = table.querySelector('[data-spark="' + i + '"]');
        if (cell && values.length) sparkline(cell, values);
      });
      table.dataset.loaded = "true";
    }).catch(function (err) { showError(table.parentNode, err); });
  }

  // ---- live ----------------------------------------------------------------------------------------------
  var live = document.getElementById("live-table");
  if (live && window.EventSource) {
    var rows = document.getElementById("live-rows");
    var status = document.getElementById("live-status");
    var pauseButton = document.getElementById("live-pause");
    var paused = false, missed = 0, shown = 0, MAX_ROWS = 500;
    pauseButton.addEventListener("click", function () {
      paused = !paused;
      pauseButton.textContent = paused ? "Resume" : "Pause";
      pauseButton.setAttribute("aria-pressed", String(paused));
      if (!paused) missed = 0;
      status.textContent = paused ? "paused" : "live";
    });
    function cell(tr, value, cls, inner) {
      var td = document.createElement("td");
      var target = td;
      if (inner) {
        target = document.createElement("span");
        target.className = inner;
        td.appendChild(target);
      }
      target.textContent = value === null || value === undefined ? "" : String(value);
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    var source = new EventSource(live.dataset.stream);
    source.onopen = function () { if (!paused) status.textContent = "live"; };
    source.onerror = function () { status.textContent = "reconnecting…"; };
    source.onmessage = function (msg) {
      var e = JSON.parse(msg.data);
      if (paused) { missed++; status.textContent = "paused (" + missed + " new)"; return; }
      var tr = document.createElement("tr");
      tr.dataset.id = String(e.id);
      cell(tr, new Date(e.ts_ms).toISOString().replace("T", " ").slice(0, 19), "time");
      cell(tr, e.method, "", "method");
      cell(tr, e.path, "path");
      cell(tr, e.route, "route");
      cell(tr, e.status_code, "num status s" + String(e.status_code).charAt(0));
      cell(tr, fmtMs(e.response_time_ms), "num");
      cell(tr, fmtBytes(e.response_size), "num");
      cell(tr, e.consumer_id, "consumer");
      rows.prepend(tr);
      shown++;
      while (rows.children.length > MAX_ROWS) rows.removeChild(rows.lastChild);
      live.dataset.count = String(shown);
    };
    window.addEventListener("pagehide", function () { source.close(); });
  }
})();
