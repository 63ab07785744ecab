/*
 * Frontdesk's pages work without JavaScript; this only adds two comforts:
 * - a question before a form does what cannot be undone (its data-confirm
 *   holds the question);
 * - a textarea marked data-draft keeps what was typed in it, for this tab,
 *   while another form of the page is sent (a ticket's reply while a note is
 *   added), and when its own form is refused as a whole (an expired session,
 *   another organization chosen in another tab); it is let go once its form
 *   was accepted: the page it led to shows the textarea empty and unflagged.
 * Kept plain for build.rs's simple minifier: no modules, no regex literals, no
 * template literals, explicit semicolons.
 */
(function () {
  'use strict';

  var SENT = 'frontdesk:draft-sent';

  // By the form's target, so the page that re-shows a refused form shares it.
  function draftKey(area) {
    var action = area.form ? area.form.getAttribute('action') : null;
    return 'frontdesk:draft:' + (action || location.pathname) + ':' + area.name;
  }

  function load(key) {
    try {
      return sessionStorage.getItem(key);
    } catch (e) {
      return null;
    }
  }

  function store(key, value) {
    try {
      if (value) {
        sessionStorage.setItem(key, value);
      } else {
        sessionStorage.removeItem(key);
      }
    } catch (e) {
      // Storage refused (private mode, quota): the draft is just not kept.
    }
  }

  document.addEventListener('submit', function (event) {
    var form = event.target;
    var question = form && form.getAttribute ? form.getAttribute('data-confirm') : null;
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    // Not forgotten yet: the answer may be an error page that cannot give it
    // back. The next page decides.
    var sent = form && form.querySelector ? form.querySelector('textarea[data-draft]') : null;
    if (sent) {
      store(draftKey(sent), sent.value);
      store(SENT, draftKey(sent));
    }
  });

  document.addEventListener('input', function (event) {
    var area = event.target;
    if (area && area.hasAttribute && area.hasAttribute('data-draft')) {
      store(draftKey(area), area.value);
    }
  });

  document.addEventListener('DOMContentLoaded', function () {
    var sent = load(SENT);
    store(SENT, null);
    var areas = document.querySelectorAll('textarea[data-draft]');
    for (var i = 0; i < areas.length; i++) {
      var key = draftKey(areas[i]);
      var flagged = areas[i].getAttribute('aria-invalid') === 'true';
      if (key === sent && !areas[i].value && !flagged) {
        // Its form was sent and this page, offering it empty, is the answer:
        // accepted.
        store(key, null);
        continue;
      }
      var kept = load(key);
      // What the server sent back (a refused form) wins over a draft.
      if (kept && !areas[i].value) {
        areas[i].value = kept;
      }
    }
  });
})();
