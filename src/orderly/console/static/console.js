// orderly console: small progressive enhancements (the pages work without them).
// Served from 'self' under a Content-Security-Policy that forbids inline script.
(function () {
  "use strict";
  function showRangeValues(root) {
    root.querySelectorAll('input[type="range"]').forEach(function (input) {
      var output = input.id ? root.querySelector('output[for="' + input.id + '"]') : null;
      if (!output || input.dataset.bound) { return; }
      input.dataset.bound = "1";
      input.addEventListener("input", function () { output.value = input.value + " %"; });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { showRangeValues(document); });
  document.addEventListener("htmx:afterSwap", function (event) { showRangeValues(event.target); });
})();
