// OptiInfra dashboard: hover read-out for the server-drawn SVG charts. Served from our own origin (the CSP allows
// 'self' only); the charts work without it (every point also carries an SVG <title>).
"use strict";
(function () {
  function attach(svg) {
    var points = Array.prototype.slice.call(svg.querySelectorAll("circle.point"));
    if (!points.length) return;
    var tip = document.createElement("div");
    tip.className = "chart-tip";
    tip.setAttribute("role", "status");
    tip.hidden = true;
    svg.parentNode.insertBefore(tip, svg.nextSibling);
    var ns = "http://www.w3.org/2000/svg";
    var cross = document.createElementNS(ns, "line");
    cross.setAttribute("class", "crosshair");
    cross.setAttribute("visibility", "hidden");
    svg.appendChild(cross);
    var xs = points.map(function (p) { return parseFloat(p.getAttribute("cx")); });
    svg.addEventListener("mousemove", function (event) {
      var matrix = svg.getScreenCTM();
      if (!matrix) return;
      var x = (event.clientX - matrix.e) / matrix.a;
      var best = 0;
      for (var i = 1; i < xs.length; i++) {
        if (Math.abs(xs[i] - x) < Math.abs(xs[best] - x)) best = i;
      }
      var point = points[best];
      var box = svg.viewBox.baseVal;
      cross.setAttribute("x1", xs[best]);
      cross.setAttribute("x2", xs[best]);
      cross.setAttribute("y1", 0);
      cross.setAttribute("y2", box.height);
      cross.setAttribute("visibility", "visible");
      points.forEach(function (p) { p.classList.remove("hover"); });
      point.classList.add("hover");
      tip.textContent = point.getAttribute("data-at") + " UTC: " + point.getAttribute("data-value");
      tip.hidden = false;
      var rect = svg.getBoundingClientRect();
      var left = xs[best] * matrix.a + matrix.e - rect.left;
      tip.style.left = Math.min(Math.max(left + 12, 0), rect.width - 220) + "px";
      tip.style.top = (parseFloat(point.getAttribute("cy")) * matrix.d + 8) + "px";
    });
    svg.addEventListener("mouseleave", function () {
      tip.hidden = true;
      cross.setAttribute("visibility", "hidden");
      points.forEach(function (p) { p.classList.remove("hover"); });
    });
  }
  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("svg.chart"), attach);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
