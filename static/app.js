/*
 * Frontdesk's pages work without JavaScript; this only adds a question before
 * a form does what cannot be undone (its data-confirm holds the question).
 * Kept plain for build.rs's simple minifier: no modules, no regex literals, no
 * template literals, explicit semicolons.
 */
(function () {
  'use strict';
  document.addEventListener('submit', function (event) {
    var form = event.target;
    var question = form && form.getAttribute ? form.getAttribute('data-confirm') : null;
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });
})();
