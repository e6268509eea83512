// genbench report site: sort a table by clicking a header, filter its rows, choose its column groups.
// No dependencies, nothing fetched.
"use strict";
(function () {
  function key(cell) {
    var s = cell.getAttribute("data-sort");
    if (s !== null && s !== "") {
      var v = Number(s);
      return isNaN(v) ? s.toLowerCase() : v;
    }
    var t = cell.textContent.trim().replace(/\u2212/g, "-");
    var m = t.match(/^[-+]?\d[\d,]*(\.\d+)?(e[-+]?\d+)?/i);
    if (m) return Number(m[0].replace(/,/g, ""));
    return t === "\u2014" || t === "" ? null : t.toLowerCase();
  }
  function compare(a, b) {
    if (a === null) return b === null ? 0 : 1;   // empty cells last in either direction
    if (b === null) return -1;
    if (typeof a === typeof b) return a < b ? -1 : a > b ? 1 : 0;
    return typeof a === "number" ? -1 : 1;       // numbers before text
  }
  function sortBy(table, index, th) {
    var body = table.tBodies[0];
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows).map(function (r, i) {
      return { row: r, key: key(r.cells[index]), i: i };
    });
    rows.sort(function (a, b) {
      if (a.key === null || b.key === null) return compare(a.key, b.key) || a.i - b.i;
      return dir * compare(a.key, b.key) || a.i - b.i;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.tabIndex = 0;
      th.classList.add("sorter");
      th.addEventListener("click", function () { sortBy(table, index, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(table, index, th); });
    });
  });
  document.querySelectorAll("input.filter").forEach(function (input) {
    input.addEventListener("input", function () {
      var table = document.getElementById(input.getAttribute("data-table"));
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var text = row.textContent.toLowerCase();
        row.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
      });
    });
  });
  document.querySelectorAll("details.chooser input[type=checkbox]").forEach(function (box) {
    box.addEventListener("change", function () {
      var table = document.getElementById(box.getAttribute("data-table"));
      table.querySelectorAll('[data-g="' + box.getAttribute("data-group") + '"]').forEach(function (cell) {
        cell.hidden = !box.checked;
      });
    });
  });
})();
