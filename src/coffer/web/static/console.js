// The console's own script: draws the overview's charts from the JSON the page embeds.
// No inline handlers and no eval anywhere (the pages' CSP allows neither).
(function () {
  "use strict";

  var PALETTE = ["#2f6fde", "#1f9d74", "#d9822b", "#8f5bd6", "#c23c5a"];

  function volumeOption(data) {
    var series = Object.keys(data.volume).map(function (currency, i) {
      return {
        name: currency,
        type: "bar",
        stack: "volume",
        itemStyle: { color: PALETTE[i % PALETTE.length] },
        // Minor units to major ones for the axis (the tiles show exact figures).
        data: data.volume[currency].map(function (v) { return v / 100; })
      };
    });
    if (series.length === 0) {
      series = [{ name: "volume", type: "bar", data: data.days.map(function () { return 0; }) }];
    }
    return {
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 56, right: 16, top: 32, bottom: 28 },
      xAxis: { type: "category", data: data.days.map(function (d) { return d.slice(5); }) },
      yAxis: { type: "value", name: "volume" },
      series: series
    };
  }

  function successOption(data) {
    return {
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 40, right: 48, top: 32, bottom: 28 },
      xAxis: { type: "category", data: data.days.map(function (d) { return d.slice(5); }) },
      yAxis: [
        { type: "value", name: "orders", minInterval: 1 },
        { type: "value", name: "success", min: 0, max: 100, axisLabel: { formatter: "{value} %" } }
      ],
      series: [
        { name: "succeeded", type: "bar", stack: "orders", itemStyle: { color: "#1f9d74" }, data: data.succeeded },
        { name: "failed", type: "bar", stack: "orders", itemStyle: { color: "#c23c5a" }, data: data.failed },
        {
          name: "success rate", type: "line", yAxisIndex: 1, connectNulls: true,
          itemStyle: { color: "#2f6fde" },
          data: data.success_rate.map(function (r) { return r === null ? null : Math.round(r * 1000) / 10; })
        }
      ]
    };
  }

  var OPTIONS = { volume: volumeOption, success: successOption };

  function drawCharts(root) {
    if (typeof window.echarts === "undefined") { return; }
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var source = document.getElementById(el.dataset.source);
      var build = OPTIONS[el.dataset.chart];
      if (!source || !build) { return; }
      var chart = window.echarts.getInstanceByDom(el) || window.echarts.init(el, null, { renderer: "canvas" });
      chart.setOption(build(JSON.parse(source.textContent)));
    });
  }

  window.addEventListener("resize", function () {
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var chart = window.echarts && window.echarts.getInstanceByDom(el);
      if (chart) { chart.resize(); }
    });
  });
  // Live tiles: the console's event stream says "changed" when events are committed anywhere;
  // the tiles are then re-read through htmx, at most once every THROTTLE_MS, and always once
  // after the last change (a change inside the window is read at its end, never dropped).
  var THROTTLE_MS = 5000;
  function followLive() {
    var tiles = document.getElementById("tiles");
    if (!tiles || !tiles.dataset.live || typeof window.EventSource === "undefined") { return; }
    var source = new EventSource(tiles.dataset.live);
    var last = 0;
    var pending = null;
    function refresh() {
      pending = null;
      last = Date.now();
      if (window.htmx && document.getElementById("tiles")) { window.htmx.trigger("#tiles", "refresh"); }
    }
    source.addEventListener("changed", function () {
      if (pending !== null) { return; }
      pending = window.setTimeout(refresh, Math.max(250, last + THROTTLE_MS - Date.now()));
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawCharts(document); followLive(); });
  document.addEventListener("htmx:afterSwap", function (event) { drawCharts(event.target); });
})();
