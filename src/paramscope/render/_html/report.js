/* paramscope HTML report: a zoomable, squarified treemap of the module tree, sized by parameters.
   No dependency and no network. The data is the JSON in the report's script.ps-data (see render/html.py). */
(function (root) {
  "use strict";
  if (!root || root.getAttribute("data-ready")) return;
  root.setAttribute("data-ready", "1");

  var data = JSON.parse(root.querySelector("script.ps-data").textContent);
  var M = data.modules;
  var count = M.params.length;
  var params = M.params;
  var parent = M.parent;
  var svg = root.querySelector(".ps-svg");
  var NS = svg.namespaceURI; // the SVG namespace, as the HTML parser gave it
  var canvas = root.querySelector(".ps-canvas");
  var tip = root.querySelector(".ps-tip");
  var crumbs = root.querySelector(".ps-crumbs");
  var upButton = root.querySelector(".ps-up");
  var colourSelect = root.querySelector(".ps-colour");
  var levelsSelect = root.querySelector(".ps-levels");
  var legend = root.querySelector(".ps-legend");
  var empty = root.querySelector(".ps-empty");
  root.querySelector(".ps-map").hidden = false;

  // A rectangle smaller than this (in px²) is not drawn alone: its small siblings share one "N smaller modules"
  // rectangle, and a module whose children would all be smaller is drawn whole. MAX_CELLS bounds the SVG.
  var MIN_AREA = 48;
  var MAX_CELLS = 3000;

  // ---- names as shown -------------------------------------------------------------------------------------------
  // Names come from files and model code and may hold anything. They are set as text, never markup, and shown as the
  // tables show them (paramscope._errors.printable): each character Python does not call printable (controls, format
  // characters such as the bidi overrides U+202A-U+202E, separators other than the space, lone surrogates,
  // unassigned code points) as its escape, \x1b, \u202e, \U000e0001, so no name reorders or garbles a label.
  // Escaped here, as they are drawn, and not in the page's data: the script matches the real names (a table row's
  // path, a cell's data-path, the dtype chips), and the data stays exact for anything that reads it back.
  var UNPRINTABLE = /[\p{C}\p{Z}]/gu;
  var SHORT = { "\t": "\\t", "\n": "\\n", "\r": "\\r", " ": " " }; // as ascii() writes them; a space is printable
  function printable(text) {
    return String(text).replace(UNPRINTABLE, function (char) {
      if (SHORT.hasOwnProperty(char)) return SHORT[char];
      var code = char.codePointAt(0);
      var form = code < 0x100 ? ["\\x", 2] : code < 0x10000 ? ["\\u", 4] : ["\\U", 8];
      return form[0] + ("0000000" + code.toString(16)).slice(-form[1]);
    });
  }

  // ---- the tree -------------------------------------------------------------------------------------------------
  var kids = new Array(count);
  var i;
  for (i = 0; i < count; i++) kids[i] = [];
  for (i = 0; i < count; i++) if (parent[i] >= 0) kids[parent[i]].push(i);
  var paths = new Array(count);
  for (i = 0; i < count; i++) {
    var fixed = data.paths[i];
    if (fixed !== undefined) paths[i] = fixed;
    else if (parent[i] < 0) paths[i] = M.name[i];
    else paths[i] = paths[parent[i]] ? paths[parent[i]] + "." + M.name[i] : M.name[i];
  }
  var indexOfPath = null;
  function lookup(path) {
    if (!indexOfPath) {
      indexOfPath = new Map();
      for (var j = 0; j < count; j++) if (!indexOfPath.has(paths[j])) indexOfPath.set(paths[j], j);
    }
    return indexOfPath.has(path) ? indexOfPath.get(path) : -1;
  }
  function typeName(index) { return M.type[index] >= 0 ? printable(data.types[M.type[index]]) : ""; }
  function label(index) { return parent[index] < 0 ? "(model)" : printable(M.name[index]); }
  function shownPath(index) { return paths[index] ? printable(paths[index]) : "(model)"; }
  function info(index) { return data.info[index] || {}; }

  // What one rectangle stands for: a module, the tensors a module holds itself beside its children, or a group of
  // small siblings.
  function moduleItem(index) { return { kind: "module", index: index, value: params[index] }; }
  function childItems(index) {
    var list = [];
    var children = kids[index];
    for (var j = 0; j < children.length; j++) if (params[children[j]] > 0) list.push(moduleItem(children[j]));
    if (list.length && M.own[index] > 0) list.push({ kind: "own", index: index, value: M.own[index] });
    list.sort(function (a, b) { return b.value - a.value; });
    return list;
  }
  function zoomable(index) { return childItems(index).length > 0; }

  // Items sorted largest first; the tail that would be drawn smaller than MIN_AREA becomes one group. At the top of
  // the view at least half the area is drawn module by module, so the view is never one grey group.
  function grouped(items, area, index, top) {
    var total = 0;
    var j;
    for (j = 0; j < items.length; j++) total += items[j].value;
    if (!total) return [];
    var scale = area / total;
    var keep = items.length;
    while (keep > 0 && items[keep - 1].value * scale < MIN_AREA) keep--;
    if (top) {
      var shown = 0;
      for (j = 0; j < keep; j++) shown += items[j].value;
      while (keep < items.length && keep < MAX_CELLS - 1 && shown < total / 2) shown += items[keep++].value;
    }
    if (items.length - keep < 2) return items;
    var members = items.slice(keep);
    var sum = 0;
    for (j = 0; j < members.length; j++) sum += members[j].value;
    return items.slice(0, keep).concat([{ kind: "group", index: index, members: members, value: sum }]);
  }

  // ---- squarified layout (Bruls, Huizing, van Wijk 2000) --------------------------------------------------------
  // Rows of rectangles are laid along the shorter side, each row grown while that keeps its worst aspect ratio down.
  // Areas are exact (no padding, no rounding), so every rectangle's area is its share of the parameters.
  function worst(sum, min, max, side) {
    var s2 = side * side;
    var t2 = sum * sum;
    return Math.max((s2 * max) / t2, t2 / (s2 * min));
  }
  function squarify(values, x, y, w, h) {
    var total = 0;
    var j;
    for (j = 0; j < values.length; j++) total += values[j];
    var scale = (w * h) / total;
    var rects = [];
    var start = 0;
    while (start < values.length) {
      var side = Math.min(w, h);
      var first = values[start] * scale;
      var sum = first;
      var min = first;
      var max = first;
      var end = start + 1;
      var ratio = worst(sum, min, max, side);
      while (end < values.length) {
        var area = values[end] * scale;
        var next = worst(sum + area, Math.min(min, area), Math.max(max, area), side);
        if (next > ratio) break;
        sum += area;
        min = Math.min(min, area);
        max = Math.max(max, area);
        ratio = next;
        end++;
      }
      var last = end === values.length;
      if (w >= h) { // a column on the left
        var cw = last ? w : sum / h;
        var cy = y;
        for (j = start; j < end; j++) {
          var rh = j === end - 1 ? y + h - cy : (values[j] * scale) / cw;
          rects.push([x, cy, cw, rh]);
          cy += rh;
        }
        x += cw;
        w -= cw;
      } else { // a row on top
        var rowH = last ? h : sum / w;
        var cx = x;
        for (j = start; j < end; j++) {
          var rw = j === end - 1 ? x + w - cx : (values[j] * scale) / rowH;
          rects.push([cx, y, rw, rowH]);
          cx += rw;
        }
        y += rowH;
        h -= rowH;
      }
      start = end;
    }
    return rects;
  }

  // ---- state ----------------------------------------------------------------------------------------------------
  var state = { node: 0, group: null, colour: "type", levels: 0 };
  var cells = [];
  var width = 0;

  // Breadth first, so the budget of rectangles goes to the largest modules before their grandchildren.
  function layout(W, H) {
    var top = state.group ? state.group.members.slice() : childItems(state.node);
    if (!top.length && params[state.node] > 0) top = [moduleItem(state.node)];
    var out = { cells: [], frames: [] };
    if (!top.length) return out;
    var queue = [{ item: null, x: 0, y: 0, w: W, h: H, level: 0, top: null }];
    var drawn = 1;
    for (var head = 0; head < queue.length; head++) {
      var entry = queue[head];
      var items;
      if (entry.level === 0) items = grouped(top, W * H, state.node, true);
      else if (entry.item.kind !== "module" || (state.levels && entry.level >= state.levels)) items = [];
      else items = grouped(childItems(entry.item.index), entry.w * entry.h, entry.item.index, false);
      var expand = items.length > 1 || (items.length === 1 && items[0].kind !== "group");
      if (entry.level > 0 && (!expand || drawn + items.length - 1 > MAX_CELLS)) {
        out.cells.push(entry);
        continue;
      }
      drawn += items.length - 1;
      if (entry.level > 0) out.frames.push(entry);
      var rects = squarify(items.map(function (item) { return item.value; }), entry.x, entry.y, entry.w, entry.h);
      for (var j = 0; j < items.length; j++) {
        var r = rects[j];
        queue.push({
          item: items[j], x: r[0], y: r[1], w: r[2], h: r[3], level: entry.level + 1,
          top: entry.level === 0 ? items[j] : entry.top, up: entry.level === 0 ? null : entry,
        });
      }
    }
    return out;
  }

  // ---- colours --------------------------------------------------------------------------------------------------
  var PALETTE = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#a0cbe8",
    "#ffbe7d", "#8cd17d", "#ff9d9a", "#86bcb6", "#f1ce63", "#d4a6c8", "#d7b5a6", "#79706e", "#bab0ac", "#499894",
  ];
  var GREY = "#c8ccd2";
  var TRAINABLE = { trainable: "#59a14f", frozen: "#7f8fa6", mixed: "#edc948", unknown: GREY };

  function dtypeOf(item) {
    if (item.kind === "own") {
      var own = data.ownDtype[item.index];
      return own === undefined ? M.dtype[item.index] : own;
    }
    return M.dtype[item.index];
  }
  function categoryOf(item) {
    var index = item.index;
    var type = state.colour === "name" ? "" : typeName(index);
    if (type) return type;
    // By name, and for checkpoints (no classes): a module's name (q_proj, norm) stands for its kind; a number
    // (a block of a list) for its parent's name.
    var name = M.name[index];
    while (/^\d+$/.test(name) && parent[index] > 0) name = M.name[(index = parent[index])];
    return name || "(model)";
  }
  function trainableOf(item) {
    if (!M.trainable) return null;
    if (item.kind === "module") return M.trainable[item.index];
    if (item.kind === "own") {
      var t = M.trainable[item.index];
      var children = kids[item.index];
      for (var j = 0; j < children.length; j++) t -= M.trainable[children[j]];
      return t;
    }
    var sum = 0;
    for (var k = 0; k < item.members.length; k++) {
      var member = trainableOf(item.members[k]);
      if (member === null) return null;
      sum += member;
    }
    return sum;
  }
  function trainableClass(item) {
    var t = trainableOf(item);
    if (t === null || t === undefined) return "unknown";
    return t >= item.value ? "trainable" : t <= 0 ? "frozen" : "mixed";
  }

  // Categories of the cells in view, largest first: the first PALETTE.length get a colour each, the rest grey.
  function colourScheme(list) {
    var mode = state.colour;
    var sums = new Map();
    function add(key, value) { sums.set(key, (sums.get(key) || 0) + value); }
    for (var j = 0; j < list.length; j++) {
      var item = list[j].item;
      if (item.kind === "group") add("smaller modules", item.value);
      else if (mode === "dtype") add(data.dtypes[dtypeOf(item)] || "?", item.value);
      else if (mode === "trainable") add(trainableClass(item), item.value);
      else add(categoryOf(item), item.value);
    }
    var keys = Array.from(sums.keys()).sort(function (a, b) { return sums.get(b) - sums.get(a); });
    var colours = new Map();
    var next = 0;
    keys.forEach(function (key) {
      if (key === "smaller modules") colours.set(key, GREY);
      else if (mode === "trainable") colours.set(key, TRAINABLE[key]);
      else if (mode === "dtype") colours.set(key, PALETTE[data.dtypes.indexOf(key) % PALETTE.length] || GREY);
      else colours.set(key, next < PALETTE.length ? PALETTE[next++] : GREY);
    });
    return { keys: keys, sums: sums, colours: colours };
  }
  function keyOf(item) {
    if (item.kind === "group") return "smaller modules";
    if (state.colour === "dtype") return data.dtypes[dtypeOf(item)] || "?";
    if (state.colour === "trainable") return trainableClass(item);
    return categoryOf(item);
  }

  // ---- formatting -----------------------------------------------------------------------------------------------
  function fmtCount(n) { return n.toLocaleString("en-US"); }
  // as the tables beside the drawing write them (paramscope._units): two decimals rounded half to even, as Python's
  // format does an exact half (3.125 KiB is 3.12 KiB), and the next unit up where the value would round to the base
  function rounded(x, digits) {
    var scale = Math.pow(10, digits), times = Math.abs(x) * scale, whole = Math.floor(times);
    var nearest = times - whole === 0.5 ? whole + (whole % 2) : Math.round(times);
    return (x < 0 && nearest ? "-" : "") + (nearest / scale).toFixed(digits);
  }
  function inUnit(n, steps, base) {
    if (Math.abs(n) < base) return null;
    for (var power = 1; power < steps.length; power++) {
      var value = n / Math.pow(base, power);
      if (Number(rounded(Math.abs(value), 2)) < base || power === steps.length - 1) return [value, steps[power]];
    }
    return null;
  }
  function humanCount(n) {
    var found = inUnit(n, ["", "K", "M", "B", "T"], 1000);
    return found ? rounded(found[0], 2) + found[1] : String(n);
  }
  function fmtBytes(n) {
    var si = data.units === "si";
    var found = inUnit(n, si ? ["B", "kB", "MB", "GB", "TB", "PB"] : ["B", "KiB", "MiB", "GiB", "TiB", "PiB"],
                       si ? 1000 : 1024);
    return found ? rounded(found[0], 2) + " " + found[1] : n + " B";
  }
  function percent(part, whole) { // format_share's: one decimal, and a part that is not nothing, or not all, says so
    if (!whole) return "—";
    var share = rounded((100 * part) / whole, 1);
    var shown = share.replace(/^(-?\d+)/, function (digits) { return Number(digits).toLocaleString("en-US"); });
    if (share === "0.0" && part) return "< 0.1 %";
    if (share === "100.0" && part !== whole) return part < whole ? "> 99.9 %" : "> 100.0 %";
    return shown + " %";
  }
  function fits(text, room) {
    var chars = Math.floor(room / 6.4);
    if (chars < 2) return "";
    return text.length <= chars ? text : text.slice(0, Math.max(1, chars - 1)) + "…";
  }

  function light(hex) { // whether dark text reads better on this colour (relative luminance, WCAG)
    var rgb = [1, 3, 5].map(function (at) {
      var c = parseInt(hex.substr(at, 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2] > 0.3;
  }

  // ---- drawing --------------------------------------------------------------------------------------------------
  function el(name, attributes, parentNode) {
    var node = document.createElementNS(NS, name);
    for (var key in attributes) node.setAttribute(key, attributes[key]);
    if (parentNode) parentNode.appendChild(node);
    return node;
  }
  function itemName(item) {
    if (item.kind === "group") return item.members.length + " smaller modules";
    if (item.kind === "own") return "(own tensors)";
    return label(item.index);
  }
  function itemPath(item) { return paths[item.index]; }
  function same(a, b) {
    return Math.abs(a.x - b.x) < 0.5 && Math.abs(a.y - b.y) < 0.5 && Math.abs(a.w - b.w) < 0.5 && Math.abs(a.h - b.h) < 0.5;
  }

  function draw() {
    width = canvas.clientWidth || 800;
    var height = Math.round(Math.max(320, Math.min(640, width * 0.56)));
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var result = layout(width, height);
    cells = result.cells;
    empty.hidden = cells.length > 0;
    svg.style.display = cells.length ? "" : "none";
    var scheme = colourScheme(cells);
    var cellLayer = el("g", { class: "ps-cells" }, svg);
    var frameLayer = el("g", { class: "ps-frames" }, svg);
    var labelLayer = el("g", { class: "ps-labels" }, svg);
    // Each expanded module gets a tab with its name at its top-left corner; modules that share a corner with
    // their parent share its tab ("transformer › h › 0").
    result.frames.forEach(function (frame) {
      el("rect", {
        class: "ps-frame", x: frame.x, y: frame.y, width: frame.w, height: frame.h,
        "stroke-width": frame.level === 1 ? 2.5 : frame.level === 2 ? 1.5 : 1,
      }, frameLayer);
      var up = frame.up;
      var name = itemName(frame.item);
      if (up && up.tab && Math.abs(up.x - frame.x) < 0.5 && Math.abs(up.y - frame.y) < 0.5) {
        up.tab.parts.push(name);
        up.tab.room = Math.min(up.tab.room, frame.w - 10);
        frame.tab = up.tab;
      } else if (frame.w >= 48 && frame.h >= 36) {
        frame.tab = { x: frame.x, y: frame.y, frame: frame, parts: [name], room: Math.min(frame.w - 10, 360) };
      }
    });
    result.frames.forEach(function (frame) {
      var tab = frame.tab;
      if (!tab || tab.frame !== frame) return;
      // The innermost names matter most: the type goes first, then the outer names, when the tab is too narrow.
      var type = frame.level === 1 ? typeName(frame.item.index) : "";
      var text = [tab.parts[0] + (type ? " · " + type : "")].concat(tab.parts.slice(1)).join(" › ");
      var parts = tab.parts.slice();
      if (text.length * 6.4 > tab.room) text = parts.join(" › ");
      while (parts.length > 1 && text.length * 6.4 > tab.room) {
        parts.shift();
        text = "… " + parts.join(" › ");
      }
      text = fits(text, tab.room);
      if (!text) { frame.tab = null; return; }
      tab.w = Math.min(frame.w - 2, text.length * 6.6 + 10) + 1;
      tab.h = 17;
      el("rect", { class: "ps-tab", x: frame.x + 1, y: frame.y + 1, width: tab.w - 1, height: 16, rx: 2 }, labelLayer);
      el("text", { class: "ps-tabtext", x: frame.x + 6, y: frame.y + 13 }, labelLayer).textContent = text;
    });
    cells.forEach(function (cell, n) {
      var item = cell.item;
      var fill = scheme.colours.get(keyOf(item)) || GREY;
      var rect = el("rect", {
        class: "ps-cell", x: cell.x, y: cell.y, width: cell.w, height: cell.h,
        fill: fill, "data-n": n, "data-kind": item.kind, "data-path": itemPath(item), "data-value": item.value,
      }, cellLayer);
      if (item.kind === "own") rect.setAttribute("fill-opacity", "0.7");
      if (clickTarget(cell)) rect.classList.add("ps-zoomable");
      // The label goes below the tabs of the modules around it where they would overlap.
      var top = cell.y;
      for (var up = cell.up; up; up = up.up) {
        var tab = up.tab;
        if (tab && tab.h && cell.x < tab.x + tab.w && top < tab.y + tab.h) top = tab.y + tab.h;
      }
      var room = cell.y + cell.h - top;
      // A module with one child fills the same rectangle: "0 › layers" says whose it is.
      var chain = itemName(item);
      for (var outer = cell.up; outer && !outer.tab && same(outer, cell); outer = outer.up) {
        chain = itemName(outer.item) + " › " + chain;
      }
      var name = fits(chain, cell.w - 6);
      if (!name || room < 14) return;
      var ink = item.kind === "own" || light(fill) ? "#14181f" : "#ffffff";
      var text = el("text", { x: cell.x + 3, y: top + 12, fill: ink }, labelLayer);
      text.textContent = name;
      if (room >= 28 && cell.w >= 46) {
        var sub = el("tspan", { x: cell.x + 3, dy: 13, class: "ps-small", fill: ink }, text);
        sub.textContent = fits(humanCount(item.value) + " · " + percent(item.value, data.total), cell.w - 6);
      }
    });
    drawLegend(scheme);
    drawCrumbs();
  }

  function drawLegend(scheme) {
    while (legend.firstChild) legend.removeChild(legend.firstChild);
    var total = 0;
    scheme.sums.forEach(function (value) { total += value; });
    var shown = 0;
    scheme.keys.forEach(function (key) {
      if (shown++ >= 12) return;
      var li = document.createElement("li");
      var swatch = document.createElement("span");
      swatch.className = "ps-swatch";
      swatch.style.background = scheme.colours.get(key);
      li.appendChild(swatch);
      li.appendChild(document.createTextNode(printable(key) + " " + percent(scheme.sums.get(key), total)));
      legend.appendChild(li);
    });
    if (scheme.keys.length > 12) {
      var more = document.createElement("li");
      more.textContent = "+ " + (scheme.keys.length - 12) + " more";
      legend.appendChild(more);
    }
  }

  function ancestors(index) {
    var chain = [];
    for (var j = index; j >= 0; j = parent[j]) chain.unshift(j);
    return chain;
  }
  function drawCrumbs() {
    while (crumbs.firstChild) crumbs.removeChild(crumbs.firstChild);
    var chain = ancestors(state.node);
    chain.forEach(function (index, n) {
      if (n) {
        var sep = document.createElement("span");
        sep.className = "ps-sep";
        sep.textContent = "›";
        crumbs.appendChild(sep);
      }
      var here = n === chain.length - 1 && !state.group;
      var part = document.createElement(here ? "span" : "button");
      part.textContent = label(index);
      if (here) part.className = "ps-here";
      else {
        part.type = "button";
        part.addEventListener("click", function () { zoom(index, null); });
      }
      crumbs.appendChild(part);
    });
    if (state.group) {
      var sep = document.createElement("span");
      sep.className = "ps-sep";
      sep.textContent = "›";
      crumbs.appendChild(sep);
      var last = document.createElement("span");
      last.className = "ps-here";
      last.textContent = state.group.members.length + " smaller modules";
      crumbs.appendChild(last);
    }
    upButton.disabled = state.node === 0 && !state.group;
  }

  // A click zooms into the top-level rectangle that holds the cell: a module with children, or a group.
  function clickTarget(cell) {
    var top = cell.top;
    if (!top) return null;
    if (top.kind === "group") return { node: top.index, group: top };
    if (top.kind === "module" && top.index !== state.node && zoomable(top.index)) return { node: top.index, group: null };
    return null;
  }
  function zoom(node, group) {
    state.node = node;
    state.group = group;
    hideTip();
    draw();
  }
  function up() {
    if (state.group) zoom(state.node, null);
    else if (parent[state.node] >= 0) zoom(parent[state.node], null);
  }

  // ---- tooltip --------------------------------------------------------------------------------------------------
  function row(table, name, value) {
    var tr = document.createElement("tr");
    var th = document.createElement("th");
    th.textContent = name;
    var td = document.createElement("td");
    td.textContent = printable(value); // names: tied, shared, dtypes
    tr.appendChild(th);
    tr.appendChild(td);
    table.appendChild(tr);
  }
  function fillTip(cell) {
    var item = cell.item;
    var index = item.index;
    var extra = info(index);
    var bound = extra.incomplete ? "≥ " : "";
    while (tip.firstChild) tip.removeChild(tip.firstChild);
    var title = document.createElement("div");
    title.className = "ps-tip-path";
    var kind = document.createElement("div");
    kind.className = "ps-tip-type";
    var table = document.createElement("table");
    var value = item.value;
    var bytes;
    if (item.kind === "group") {
      title.textContent = item.members.length + " smaller modules in " + shownPath(index);
      kind.textContent = "grouped: each too small to draw alone";
      bytes = 0;
      item.members.forEach(function (member) { bytes += member.kind === "own" ? M.ownBytes[member.index] : M.bytes[member.index]; });
      var largest = item.members[0];
      row(table, "Largest", itemName(largest) + " (" + fmtCount(largest.value) + ")");
      // Tied tensors owned inside the group: their other names, as the owners' own tooltips would show them.
      var tied = [];
      var visit = function (module, deep) {
        (data.ties[module] || []).forEach(function (tie) {
          tied.push((paths[module] ? paths[module] + "." : "") + tie[0] + " is also " + tie[1].join(", "));
        });
        if (deep) kids[module].forEach(function (child) { visit(child, true); });
      };
      item.members.forEach(function (member) { visit(member.index, member.kind !== "own"); });
      tied.slice(0, 3).forEach(function (text) { row(table, "Tied", text); });
      if (tied.length > 3) row(table, "Tied", "… and " + (tied.length - 3) + " more");
    } else if (item.kind === "own") {
      title.textContent = shownPath(index);
      kind.textContent = "tensors held by " + (typeName(index) || "this module") + " itself, beside its children";
      bytes = M.ownBytes[index];
    } else {
      title.textContent = shownPath(index);
      kind.textContent = typeName(index) || "module";
      bytes = M.bytes[index];
    }
    row(table, "Parameters", bound + fmtCount(value) + " (" + humanCount(value) + ")");
    row(table, "Share", percent(value, data.total) + " of the model" +
      (parent[index] >= 0 && item.kind === "module" ? ", " + percent(value, params[parent[index]]) + " of " + label(parent[index]) : ""));
    row(table, "Size", bound + fmtBytes(bytes));
    var t = trainableOf(item);
    if (t !== null && t !== undefined) row(table, "Trainable", fmtCount(t) + (t < value ? " (frozen " + fmtCount(value - t) + ")" : ""));
    if (item.kind === "module") {
      var mix = data.mixed[index];
      if (mix) {
        row(table, "Dtypes", mix.map(function (pair) { return data.dtypes[pair[0]] + " " + percent(pair[1], value); }).join(", "));
      } else if (M.dtype[index] >= 0) {
        row(table, "Dtype", data.dtypes[M.dtype[index]]);
      }
      if (M.buffers[index]) row(table, "Buffers", fmtCount(M.buffers[index]) + " elements" + (extra.bufferBytes ? ", " + fmtBytes(extra.bufferBytes) : ""));
      var children = kids[index].length;
      if (children) row(table, "Children", children + (children === 1 ? " module" : " modules"));
      if (extra.active !== undefined) row(table, "Active", fmtCount(extra.active) + " per token");
      if (extra.formula) row(table, "Formula", extra.formula);
    }
    if (item.kind !== "group") {
      // Tied tensors are counted once, here: their other names.
      var ties = data.ties[index];
      if (ties) ties.forEach(function (tie) { row(table, "Tied", tie[0] + " is also " + tie[1].join(", ")); });
      if (extra.shared) row(table, "Shares", extra.shared.join(", ") + " (counted there)");
      if (extra.sameAs !== undefined) row(table, "Same as", extra.sameAs || "(model)");
    }
    tip.appendChild(title);
    tip.appendChild(kind);
    tip.appendChild(table);
    var target = clickTarget(cell);
    if (target) {
      var hint = document.createElement("div");
      hint.className = "ps-tip-hint";
      hint.textContent = "click to zoom into " + (target.group ? target.group.members.length + " smaller modules" : label(target.node));
      tip.appendChild(hint);
    }
  }
  function placeTip(event) {
    var pad = 14;
    var box = tip.getBoundingClientRect();
    var x = event.clientX + pad;
    var y = event.clientY + pad;
    if (x + box.width > window.innerWidth - 4) x = Math.max(4, event.clientX - pad - box.width);
    if (y + box.height > window.innerHeight - 4) y = Math.max(4, event.clientY - pad - box.height);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  var tipCell = -1;
  function hideTip() { tip.hidden = true; tipCell = -1; }

  svg.addEventListener("mousemove", function (event) {
    var target = event.target.closest ? event.target.closest(".ps-cell") : null;
    if (!target) { hideTip(); return; }
    var n = Number(target.getAttribute("data-n"));
    if (n !== tipCell) { fillTip(cells[n]); tipCell = n; }
    tip.hidden = false;
    placeTip(event);
  });
  svg.addEventListener("mouseleave", hideTip);
  svg.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target.closest(".ps-cell") : null;
    if (!target) return;
    var goal = clickTarget(cells[Number(target.getAttribute("data-n"))]);
    if (goal) zoom(goal.node, goal.group);
  });
  upButton.addEventListener("click", up);
  canvas.addEventListener("keydown", function (event) {
    if (event.key === "Escape" || event.key === "Backspace") { up(); event.preventDefault(); }
  });
  colourSelect.addEventListener("change", function () { state.colour = colourSelect.value; draw(); });
  levelsSelect.addEventListener("change", function () { state.levels = Number(levelsSelect.value); draw(); });

  // Rows of the module tables zoom the treemap to their module (or to its parent, with the module outlined).
  root.querySelectorAll(".ps-tables table[data-linked] tbody tr").forEach(function (tr) {
    tr.addEventListener("click", function () {
      var path = tr.getAttribute("data-path"); // the module's path where the row shows it with escapes
      var text = path === null ? tr.cells[0].textContent.trim() : JSON.parse(path);
      var index = lookup(text === "(model)" ? "" : text);
      if (index < 0) return;
      while (index > 0 && !(params[index] > 0)) index = parent[index]; // no area: its nearest ancestor with some
      var show = zoomable(index) ? index : Math.max(0, parent[index]);
      zoom(show, null);
      var mark = svg.querySelector('.ps-cell[data-kind="module"][data-path="' + cssEscape(paths[index]) + '"]');
      if (mark) mark.classList.add("ps-hl");
      canvas.scrollIntoView({ block: "nearest", behavior: "smooth" });
    });
  });
  function cssEscape(text) { return window.CSS && CSS.escape ? CSS.escape(text) : text.replace(/["\\]/g, "\\$&"); }

  // The dtype chips in the header take the colours the treemap gives each dtype.
  root.querySelectorAll(".ps-dtypes .ps-swatch").forEach(function (swatch) {
    var at = data.dtypes.indexOf(swatch.getAttribute("data-dtype"));
    if (at >= 0) swatch.style.background = PALETTE[at % PALETTE.length];
  });

  draw();
  var pending = false;
  function redraw() {
    if (pending) return;
    pending = true;
    window.requestAnimationFrame(function () {
      pending = false;
      if (canvas.clientWidth && canvas.clientWidth !== width) draw();
    });
  }
  if (window.ResizeObserver) new ResizeObserver(redraw).observe(canvas);
  else window.addEventListener("resize", redraw);
})(document.getElementById("__PARAMSCOPE_ROOT__"));
