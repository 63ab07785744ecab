/*
 * Frontdesk's pages work without JavaScript; this only adds five comforts:
 * - a question before a form does what cannot be undone (its data-confirm
 *   holds the question);
 * - a textarea marked data-draft keeps what was typed in it, for this tab,
 *   while another form of the page is sent (a ticket's reply while a note is
 *   added), and when its own form is refused as a whole (an expired session,
 *   another organization chosen in another tab); it is let go once its form
 *   was accepted: the page it led to shows the textarea empty and unflagged;
 * - a button marked data-copy="ID" (hidden until this script shows it)
 *   copies the element with that id (an input's value, else its text): a new
 *   API key, the widget's embed snippet;
 * - an element marked data-live="URL" (with an id) is replaced every few
 *   seconds by the same element of the page at URL, until that one is no
 *   longer live: a knowledge base being indexed shows its progress while the
 *   forms around it keep what is being typed (a reload would wipe them, and
 *   after a refused form would ask for a page that only takes POST);
 * - the phone menu (a <details>) closes with Escape, and its button's label
 *   says what pressing it does (open or close).
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

  // The fallback for browsers without the asynchronous clipboard (or outside a
  // secure context, e.g. a server reached over plain HTTP by its LAN address).
  function copyBySelection(source) {
    var selection = window.getSelection();
    if (typeof source.select === 'function') {
      source.select();
    } else if (selection) {
      var range = document.createRange();
      range.selectNodeContents(source);
      selection.removeAllRanges();
      selection.addRange(range);
    }
    try {
      return document.execCommand('copy');
    } catch (e) {
      return false;
    }
  }

  function copied(button, ok) {
    var label = button.getAttribute('data-label') || button.textContent;
    button.setAttribute('data-label', label);
    // Left selected when copying failed, so the reader can press Ctrl+C.
    button.textContent = ok ? 'Copied' : 'Press Ctrl+C to copy';
    window.clearTimeout(Number(button.getAttribute('data-timer')) || 0);
    button.setAttribute('data-timer', String(window.setTimeout(function () {
      button.textContent = label;
    }, 2000)));
  }

  document.addEventListener('click', function (event) {
    var button = event.target && event.target.closest ? event.target.closest('button[data-copy]') : null;
    var source = button ? document.getElementById(button.getAttribute('data-copy')) : null;
    if (!source) {
      return;
    }
    var text = 'value' in source ? source.value : source.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () {
        copied(button, true);
      }, function () {
        copied(button, copyBySelection(source));
      });
    } else {
      copied(button, copyBySelection(source));
    }
  });

  var LIVE_EVERY_MS = 3000;

  function followLive(node) {
    var source = node.getAttribute('data-live');
    window.setTimeout(function () {
      // Not while the tab is hidden, nor under the reader's keyboard focus
      // (a button inside would lose it): asked again a moment later.
      if (document.hidden || node.contains(document.activeElement)) {
        followLive(node);
        return;
      }
      fetch(source, { credentials: 'same-origin', headers: { Accept: 'text/html' } }).then(function (res) {
        // Signed out meanwhile (a redirect to sign in) or gone: the list
        // stays as it was, its status line saying to reload.
        if (res.redirected || (!res.ok && res.status < 500)) {
          return null;
        }
        if (!res.ok) {
          followLive(node); // the server is briefly unwell: try again
          return null;
        }
        return res.text().then(function (html) {
          var fresh = new DOMParser().parseFromString(html, 'text/html').getElementById(node.id);
          if (!fresh) {
            return;
          }
          var next = document.importNode(fresh, true);
          node.replaceWith(next);
          if (next.hasAttribute('data-live')) {
            followLive(next);
          }
        });
      }).catch(function () {
        followLive(node); // offline for a moment: try again
      });
    }, LIVE_EVERY_MS);
  }

  document.addEventListener('DOMContentLoaded', function () {
    var live = document.querySelectorAll('[data-live][id]');
    for (var l = 0; l < live.length; l++) {
      followLive(live[l]);
    }
    var copiers = document.querySelectorAll('button[data-copy]');
    for (var c = 0; c < copiers.length; c++) {
      copiers[c].hidden = false;
    }
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

  document.addEventListener('keydown', function (event) {
    if (event.key !== 'Escape') {
      return;
    }
    var open = document.querySelectorAll('details.nav-mobile[open]');
    for (var i = 0; i < open.length; i++) {
      open[i].removeAttribute('open');
      var summary = open[i].querySelector('summary');
      if (summary) {
        summary.setAttribute('aria-label', 'Open menu');
        summary.focus();
      }
    }
  });

  // A details element's toggle does not bubble: caught on its way down.
  document.addEventListener('toggle', function (event) {
    var menu = event.target;
    if (!menu.classList || !menu.classList.contains('nav-mobile')) {
      return;
    }
    var summary = menu.querySelector('summary');
    if (summary) {
      summary.setAttribute('aria-label', menu.open ? 'Close menu' : 'Open menu');
    }
  }, true);
})();
