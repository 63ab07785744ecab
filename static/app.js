/*
 * Frontdesk's pages work without JavaScript; this only adds two comforts:
 * - a question before a form does what cannot be undone (its data-confirm
 *   holds the question);
 * - a textarea marked data-draft keeps what was typed in it, for this tab,
 *   while another form of the page is sent (a ticket's reply while a note is
 *   added), until its own form is sent.
 * Kept plain for build.rs's simple minifier: no modules, no regex literals, no
 * template literals, explicit semicolons.
 */
(function () {
  'use strict';

  function draftKey(area) {
    return 'frontdesk:draft:' + location.pathname + ':' + area.name;
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
    var sent = form && form.querySelectorAll ? form.querySelectorAll('textarea[data-draft]') : [];
    for (var i = 0; i < sent.length; i++) {
      store(draftKey(sent[i]), null);
    }
  });

  document.addEventListener('input', function (event) {
    var area = event.target;
    if (area && area.hasAttribute && area.hasAttribute('data-draft')) {
      store(draftKey(area), area.value);
    }
  });

  document.addEventListener('DOMContentLoaded', function () {
    var areas = document.querySelectorAll('textarea[data-draft]');
    for (var i = 0; i < areas.length; i++) {
      var kept = null;
      try {
        kept = sessionStorage.getItem(draftKey(areas[i]));
      } catch (e) {
        kept = null;
      }
      // What the server sent back (a refused form) wins over a draft.
      if (kept && !areas[i].value) {
        areas[i].value = kept;
      }
    }
  });
})();
