// pdoflow dashboard: the throughput chart (uPlot) and the live feed's
// status. Everything else is htmx attributes in the server's HTML.
(function () {
  "use strict";

  var COLOURS = { enqueued: "#0550ae", succeeded: "#116329", failed: "#b3261e" };

  function chartWidth(element) {
    return Math.max(280, element.clientWidth || element.parentNode.clientWidth || 600);
  }

  function columns(series) {
    return [series.t || [], series.enqueued || [], series.succeeded || [], series.failed || []];
  }

  function startChart(element) {
    if (typeof uPlot === "undefined") {
      return;
    }
    var series;
    try {
      series = JSON.parse(element.getAttribute("data-series") || "{}");
    } catch (error) {
      series = {};
    }
    var line = function (label, colour) {
      return { label: label, stroke: colour, width: 2, points: { show: false } };
    };
    var plot = new uPlot(
      {
        width: chartWidth(element),
        height: 240,
        scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(5, Math.ceil(max * 1.15))]; } } },
        axes: [{}, { label: "jobs per minute", size: 60 }],
        series: [
          {},
          line("Enqueued", COLOURS.enqueued),
          line("Succeeded", COLOURS.succeeded),
          line("Failed", COLOURS.failed),
        ],
      },
      columns(series),
      element
    );
    // The live feed's `throughput` events carry new data: take it instead
    // of letting htmx swap the JSON into the page.
    element.addEventListener("htmx:sseBeforeMessage", function (event) {
      event.preventDefault();
      try {
        plot.setData(columns(JSON.parse(event.detail.data)));
      } catch (error) {
        // A malformed event leaves the chart as it was.
      }
    });
    window.addEventListener("resize", function () {
      plot.setSize({ width: chartWidth(element), height: 240 });
    });
  }

  function showLiveStatus() {
    var status = document.getElementById("live-status");
    if (!status) {
      return;
    }
    document.body.addEventListener("htmx:sseOpen", function () {
      status.textContent = "live";
      status.className = "live-status live";
    });
    document.body.addEventListener("htmx:sseError", function () {
      status.textContent = "reconnecting…";
      status.className = "live-status lost";
    });
  }

  function start() {
    var chart = document.getElementById("throughput");
    if (chart) {
      startChart(chart);
    }
    showLiveStatus();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
